"""Decode throughput, 720p30 H.264: the flowgraph ``ingest → decode`` graph beside a bare PyAV loop and GStreamer.

All decode the same file as fast as they can and hand out RGB pictures (flowgraph's ``decode`` and the PyAV loop
convert with swscale; GStreamer is run both without conversion and with ``videoconvert`` to RGB). Each figure is
the best of ``--repeat`` runs, all measured in this run on this (shared, noisy) machine.

    python tools/bench/media_decode.py [--quick] [--seconds 10] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from _report import record, unavailable_row


def make_clip(path: Path, seconds: float) -> int:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=1280x720:rate=30:duration={seconds}", "-c:v", "libx264", "-preset", "veryfast",
                    "-g", "60", "-b:v", "2500k", "-pix_fmt", "yuv420p", str(path)], check=True, timeout=300)
    return int(seconds * 30)


def bare_pyav(path: Path, thread_type: str, rgb: bool = True) -> tuple[int, float]:
    import av

    started = time.perf_counter()
    frames = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = thread_type
        for packet in container.demux(stream):
            for frame in packet.decode():
                if rgb:
                    frame.to_ndarray(format="rgb24")
                frames += 1
    return frames, time.perf_counter() - started


async def flowgraph_graph(path: Path, thread_type: str) -> tuple[int, float]:
    """Frames and seconds from the graph being ready (compiled, nodes started) until it has finished."""
    from flowgraph.runtime import Runtime
    from flowgraph.testing import compile_text

    text = f"""
name: decode-bench
defaults: {{policy: block}}
nodes:
  src: {{node: ingest, params: {{url: "{path}", realtime: false}}}}
  dec: {{node: decode, inputs: {{packets: src/packets}}, params: {{thread_type: {thread_type}}}}}
  sink: {{node: collect, inputs: {{inp: dec/frames}}, params: {{keep: 0}}}}
"""
    runtime = Runtime(compile_text(text), port=0)
    task = asyncio.ensure_future(runtime.run(install_signals=False))
    await runtime.ready.wait()
    started = time.perf_counter()
    await asyncio.wait_for(task, 600)
    elapsed = time.perf_counter() - started
    return runtime.runners["sink"].node.count, elapsed  # type: ignore[attr-defined]


def gstreamer(path: Path, rgb: bool) -> tuple[int, float] | str:
    """Frames counted at the sink and gst-launch's own PLAYING → EOS time ("Execution ended after"), so its
    process start-up and pipeline construction are left out as flowgraph's are; a reason when it cannot run."""
    if shutil.which("gst-launch-1.0") is None:
        return "gst-launch-1.0 not installed (Debian gstreamer1.0-tools)"
    # videoconvert converts on one thread unless told otherwise: n-threads=0 uses every core, as swscale may
    tail = ["!", "videoconvert", "n-threads=0", "!", "video/x-raw,format=RGB"] if rgb else []
    command = ["gst-launch-1.0", "-v", "filesrc", f"location={path}", "!", "qtdemux", "!", "h264parse", "!",
               "avdec_h264", *tail, "!", "fakesink", "silent=false", "sync=false"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    ended = re.search(r"Execution ended after (\d+):(\d+):(\d+\.\d+)", result.stdout)
    if result.returncode != 0 or ended is None:
        why = (result.stdout + result.stderr).strip().splitlines()
        return why[-1] if why else f"gst-launch exited {result.returncode}"
    frames = sum(1 for line in result.stdout.splitlines() if "last-message = chain" in line)
    hours, minutes, seconds = ended.groups()
    return frames, int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def best(runs: list[tuple[int, float]]) -> tuple[int, float]:
    return min(runs, key=lambda r: r[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="5 s clip, one run each")
    args = ap.parse_args()
    seconds, repeat = (5.0, 1) if args.quick else (args.seconds, args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip720p.mp4"
        total = make_clip(clip, seconds)
        print(f"decode {total} frames of 1280x720 H.264 (x264 veryfast, B-frames, GOP 60); best of {repeat}; "
              f"{os.cpu_count()} cores shared with other work (load {os.getloadavg()[0]:.1f})\n")
        variants: dict[str, Callable[[], tuple[int, float] | str]] = {}
        for thread_type in ("AUTO", "SLICE"):
            variants[f"bare PyAV loop → RGB ({thread_type})"] = partial(bare_pyav, clip, thread_type)
            variants[f"flowgraph ingest → decode → RGB ({thread_type})"] = partial(
                lambda t: asyncio.run(flowgraph_graph(clip, t)), thread_type)
        variants["bare PyAV loop, no RGB (AUTO)"] = partial(bare_pyav, clip, "AUTO", rgb=False)
        variants["gst-launch avdec_h264 ! fakesink"] = partial(gstreamer, clip, rgb=False)
        variants["gst-launch avdec_h264 ! videoconvert RGB"] = partial(gstreamer, clip, rgb=True)
        results: dict[str, list[tuple[int, float] | str]] = {name: [] for name in variants}
        for _ in range(repeat):  # interleaved, so every variant sees the same spells of load
            for name, run in variants.items():
                results[name].append(run())
        rows: list[tuple[str, tuple[int, float] | str]] = []
        for name, runs in results.items():
            failed = [r for r in runs if isinstance(r, str)]
            rows.append((name, failed[0] if failed else best([r for r in runs if not isinstance(r, str)])))
    fps = {name: (r[0] / r[1] if not isinstance(r, str) else None) for name, r in rows}
    record("media_decode", fps)
    print(f"{'pipeline':<46} {'frames':>7} {'seconds':>8} {'fps':>7}")
    for name, r in rows:
        if isinstance(r, str):
            print(unavailable_row(name, r, 47))
            continue
        print(f"{name:<46} {r[0]:>7} {r[1]:>8.2f} {r[0] / r[1]:>7.0f}")
    print()
    for thread_type in ("AUTO", "SLICE"):
        ours, bare = fps[f"flowgraph ingest → decode → RGB ({thread_type})"], fps[
            f"bare PyAV loop → RGB ({thread_type})"]
        if ours and bare:
            print(f"flowgraph / bare PyAV ({thread_type}): {ours / bare:.2f}x (goal ≥ 0.95x)")
    gst_rgb, gst_plain = fps["gst-launch avdec_h264 ! videoconvert RGB"], fps["gst-launch avdec_h264 ! fakesink"]
    ours = max(fps["flowgraph ingest → decode → RGB (AUTO)"] or 0, fps["flowgraph ingest → decode → RGB (SLICE)"] or 0)
    if gst_rgb and gst_plain and ours:
        print(f"flowgraph (best threading) / gst-launch: {ours / gst_rgb:.2f}x with RGB conversion on both sides, "
              f"{ours / gst_plain:.2f}x against GStreamer decoding without any conversion")
    print("fps = frames counted at each sink / seconds. GStreamer: gst-launch's PLAYING → EOS time (process start-up"
          " and pipeline construction excluded); flowgraph: graph ready (compiled, nodes started) → end, file open"
          " included as in the bare loop.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
