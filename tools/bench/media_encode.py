"""Encoder CPU: one shared 720p30 ``encode`` node, and a 1080p/720p/360p ladder, beside bare loops in this run.

Pictures are pre-rendered moving-pattern frames (so rendering costs nothing) fed at 30 fps in real time. CPU is
the process's CPU time over the wall time (100 % = one core) minus the cost of the same graph without encoders.
Baselines measured here: a bare PyAV libx264 loop with the same settings, and aiortc's own per-viewer H.264
encoder — what each viewer would cost without a shared encoder (the field notes measured ≈ 77 % of a core).

    python tools/bench/media_encode.py [--quick] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from flowgraph.messages import VideoFrame
from flowgraph.node import Node
from flowgraph.params import param
from flowgraph.ports import Output
from flowgraph.registry import Registry
from flowgraph.testing import compile_text, run_to_end

LADDER = ((1920, 1080, 4500), (1280, 720, 2500), (640, 360, 800))


def pattern_pool(width: int, height: int, count: int = 60) -> list[np.ndarray]:
    from flowgraph.nodes.media.testsrc import PatternRenderer

    renderer = PatternRenderer(width, height, 30.0)
    return [renderer.render(i) for i in range(count)]


class PooledFrames(Node):
    """Cycles pre-rendered pictures at 30 fps for a fixed number of frames."""

    frames = Output(VideoFrame)

    @dataclass
    class Params:
        width: int = param(1280, "")
        height: int = param(720, "")
        count: int = param(300, "")

    async def start(self) -> None:
        self.pool = pattern_pool(self.params.width, self.params.height)

    async def run(self) -> None:
        start = time.monotonic()
        for i in range(self.params.count):
            delay = start + i / 30 - time.monotonic()
            if delay > 0 and await self.wait_stopping(delay):
                return
            await self.frames.send(VideoFrame(image=self.pool[i % len(self.pool)], frame_id=i, pts=i * 3000,
                                              time_base=Fraction(1, 90_000)))


async def graph_cpu(encoders: list[tuple[int, int, int]], source: tuple[int, int], frames: int) -> tuple[float, int]:
    """(% of one core, packets out) for ``frames`` pictures through the given encode nodes."""
    registry = Registry.default()
    registry.register("pooled_frames", PooledFrames)
    nodes = [f"  src: {{node: pooled_frames, params: {{width: {source[0]}, height: {source[1]}, count: {frames}}}}}"]
    for i, (w, h, kbps) in enumerate(encoders):
        nodes.append(f"  enc{i}: {{node: encode, inputs: {{frames: src/frames}}, params: {{width: {w}, height: {h}, "
                     f"bitrate_kbps: {kbps}, gop: 60}}}}")
        nodes.append(f"  out{i}: {{node: collect, inputs: {{inp: enc{i}/packets}}, params: {{keep: 0}}}}")
    if not encoders:
        nodes.append("  out: {node: collect, inputs: {inp: src/frames}, params: {keep: 0}}")
    plan = compile_text("name: encode-bench\ndefaults: {policy: block}\nnodes:\n" + "\n".join(nodes) + "\n",
                        registry=registry)
    cpu0, wall0 = time.process_time(), time.monotonic()
    rt = await run_to_end(plan, timeout=600)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    packets = sum(getattr(r.node, "count", 0) for name, r in rt.runners.items() if name.startswith("out"))
    return 100 * cpu / wall, packets


def bare_loop_cpu(encoders: list[tuple[int, int, int]], source: tuple[int, int], frames: int) -> float:
    """The same encodes in one plain loop (PyAV, same settings), paced at 30 fps."""
    from flowgraph.nodes.media.encoder import EncoderConfig, H264Encoder

    pool = pattern_pool(*source)
    coders = [H264Encoder(EncoderConfig(width=w, height=h, bitrate_kbps=kbps, gop=60)) for w, h, kbps in encoders]
    cpu0, wall0 = time.process_time(), time.monotonic()
    for i in range(frames):
        delay = wall0 + i / 30 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for coder in coders:
            coder.encode(pool[i % len(pool)], i * 3000)
    return 100 * (time.process_time() - cpu0) / (time.monotonic() - wall0)


def aiortc_viewer_cpu(frames: int) -> float:
    """aiortc's H264Encoder (what one viewer costs when every RTCRtpSender encodes for itself), 720p30."""
    import av
    from aiortc.codecs.h264 import H264Encoder as AiortcEncoder

    pool = pattern_pool(1280, 720)
    encoder = AiortcEncoder()
    pictures = []
    for image in pool:
        picture = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        pictures.append(picture)
    cpu0, wall0 = time.process_time(), time.monotonic()
    for i in range(frames):
        delay = wall0 + i / 30 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        picture = pictures[i % len(pictures)]
        picture.pts, picture.time_base = i * 3000, Fraction(1, 90_000)
        encoder.encode(picture)
    return 100 * (time.process_time() - cpu0) / (time.monotonic() - wall0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="5 s per measurement")
    args = ap.parse_args()
    frames = int((5.0 if args.quick else args.seconds) * 30)
    print(f"encoder CPU, {frames} frames at 30 fps per row; % of one core ({os.cpu_count()} cores shared with other "
          f"work, load {os.getloadavg()[0]:.1f})\n")
    rows: list[tuple[str, Any, Any]] = []
    idle720, _ = asyncio.run(graph_cpu([], (1280, 720), frames))
    enc720, packets = asyncio.run(graph_cpu([(1280, 720, 2500)], (1280, 720), frames))
    rows.append(("flowgraph encode node 720p 2.5M (minus source)", enc720 - idle720, packets))
    rows.append(("bare PyAV libx264 loop 720p 2.5M", bare_loop_cpu([(1280, 720, 2500)], (1280, 720), frames), "-"))
    viewer = aiortc_viewer_cpu(frames)
    rows.append(("aiortc per-viewer encoder 720p (one viewer)", viewer, "-"))
    idle1080, _ = asyncio.run(graph_cpu([], (1920, 1080), frames))
    ladder, packets = asyncio.run(graph_cpu(list(LADDER), (1920, 1080), frames))
    rows.append(("flowgraph ladder 1080p+720p+360p (minus source)", ladder - idle1080, packets))
    rows.append(("bare PyAV loop, same ladder", bare_loop_cpu(list(LADDER), (1920, 1080), frames), "-"))
    print(f"{'encoder(s)':<50} {'CPU %':>7} {'packets':>8}")
    for name, cpu, out in rows:
        print(f"{name:<50} {cpu:>7.0f} {out!s:>8}")
    shared = enc720 - idle720
    print(f"\nsource alone: 720p {idle720:.0f} %, 1080p {idle1080:.0f} %.")
    print(f"one shared 720p encoder serves any number of viewers at ≈ {shared:.0f} %; encoding per viewer with aiortc "
          f"costs ≈ {viewer:.0f} % each (10 viewers ≈ {10 * viewer:.0f} %).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
