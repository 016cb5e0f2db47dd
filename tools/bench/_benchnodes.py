"""Source nodes the analytics benchmarks feed graphs with (registered into a private registry, not the catalog)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from flowgraph.messages import Analytics
from flowgraph.node import Node
from flowgraph.nodes.vibrio.messages import Detection, Track, Tracks
from flowgraph.params import param
from flowgraph.ports import Output
from flowgraph.registry import Registry


class BenchTracks(Node):
    """vibrio-like Tracks at a fixed rate: ``people`` moving people with speeds."""

    tracks = Output(Tracks)

    @dataclass
    class Params:
        fps: float = param(30.0, "frames per second", exclusiveMinimum=0)
        people: int = param(1, "tracks per frame", minimum=0)
        stream_id: str = param("cam1", "stream id")

    async def run(self) -> None:
        p = self.params
        period = 1.0 / p.fps
        start = time.monotonic()
        n = 0
        while not self.stopping:
            t = n * period
            tracks = [Track(track_id=i + 1, bbox=(100.0 + 150 * i, 80.0, 180.0 + 150 * i, 400.0), score=0.91, age=n,
                            foot_px=(140.0 + 150 * i, 400.0), foot_world=(2.0 * t, float(i)), speed_mps=5.5 + i,
                            heading_deg=87.5, distance_m=5.5 * t, confidence=0.88) for i in range(p.people)]
            await self.tracks.send(Tracks(stream_id=p.stream_id, frame_id=n, pts=n * 3000, time_base=Fraction(1, 90000),
                                          tracks=tracks, detections=[Detection(bbox=x.bbox, score=0.91)
                                                                     for x in tracks]))
            n += 1
            delay = start + n * period - time.monotonic()
            if delay > 0 and await self.wait_stopping(delay):
                break


class BenchAnalytics(Node):
    """Ready-made Analytics: ``count`` messages as fast as the edge takes them (``hz`` = 0), or at ``hz``."""

    out = Output(Analytics)

    @dataclass
    class Params:
        count: int = param(0, "messages (0 = until stopped)", minimum=0)
        hz: float = param(0.0, "messages per second (0 = as fast as possible)", minimum=0)
        pad_bytes: int = param(0, "extra payload bytes", minimum=0)
        mix: bool = param(True, "fuse-like mix per frame: 1 detection + 3 speed (else speed only)")
        stream_id: str = param("cam1", "stream id")
        prebuilt: bool = param(False, "build every message in start() so sending costs only the edge")

    async def start(self) -> None:
        self.first_sent: float | None = None
        self.sent_count = 0
        p = self.params
        self._prebuilt = [make_message(n, p.stream_id, p.mix, p.pad_bytes) for n in range(p.count)] \
            if p.prebuilt else None

    async def run(self) -> None:
        p = self.params
        period = 1.0 / p.hz if p.hz > 0 else 0.0
        start = time.monotonic()
        n = 0
        while not self.stopping and (p.count == 0 or n < p.count):
            msg = self._prebuilt[n] if self._prebuilt is not None else make_message(n, p.stream_id, p.mix,
                                                                                     p.pad_bytes)
            if self.first_sent is None:
                self.first_sent = time.perf_counter()
            await self.out.send(msg)
            n += 1
            self.sent_count = n
            if period:
                delay = start + n * period - time.monotonic()
                if delay > 0 and await self.wait_stopping(delay):
                    break
            elif n % 256 == 0:
                await asyncio.sleep(0)


def make_message(n: int, stream_id: str = "cam1", mix: bool = True, pad_bytes: int = 0) -> Analytics:
    """The n-th message of a fuse-like output: frames of 1 detection (3 people) and 3 speed messages."""
    frame = n // 4 if mix else n
    now = time.time()
    meta: dict[str, Any] = {"stream_id": stream_id, "frame_id": frame, "pts": frame * 3000,
                            "pts_seconds": frame / 30, "t_capture": now, "timestamp": now}
    if mix and n % 4 == 0:
        tracks = [{"track_id": i, "bbox": [100.0 + i, 80.0, 180.0, 400.0], "score": 0.91, "age": frame,
                   "foot_px": [140.0, 400.0], "foot_world": [2.5, 1.0], "speed_mps": 5.5, "speed_kmh": 19.8,
                   "heading_deg": 87.5, "distance_m": 12.5, "confidence": 0.88} for i in range(3)]
        payload = {**meta, "tracks": tracks, "detections": [{"bbox": t["bbox"], "score": 0.91, "label": "person"}
                                                            for t in tracks], "width": 1280, "height": 720}
        kind = "detection"
    else:
        payload = {**meta, "track_id": n % 4, "speed_mps": 5.5, "speed_kmh": 19.8, "confidence": 0.88,
                   "heading_deg": 87.5, "distance_m": 12.5}
        kind = "speed"
    if pad_bytes:
        payload["pad"] = "x" * pad_bytes
    return Analytics(type=kind, payload=payload, stream_id=stream_id, frame_id=frame, pts=frame * 3000,
                     t_capture=now)


def registry() -> Registry:
    reg = Registry.default()
    reg.register("bench_tracks", BenchTracks)
    reg.register("bench_analytics", BenchAnalytics)
    return reg
