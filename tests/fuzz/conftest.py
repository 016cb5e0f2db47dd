"""Property-based fuzzing of every input a peer controls. Profiles: ``ci`` (derandomised, bounded example counts,
the default) and ``long`` (random, for ``tools/fuzz.py --minutes N``); example counts are printed at the end."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from flowgraph.node import Node
from flowgraph.nodes.core.utility import paced
from flowgraph.nodes.vibrio.messages import Track, Tracks
from flowgraph.params import param
from flowgraph.ports import Output
from flowgraph.registry import Registry

from .live import COUNTS, LiveGraph, write_counts

_COMMON = {"deadline": None, "database": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                     HealthCheck.function_scoped_fixture]}
settings.register_profile("ci", derandomize=True, **_COMMON)
settings.register_profile("long", derandomize=False, **_COMMON)
settings.load_profile(os.environ.get("FLOWGRAPH_FUZZ_PROFILE", "ci"))

WHIP_TOKEN = "fuzz-whip-token-0123"
RTMP_KEY = "fuzz-rtmp-key-0123"


class FuzzTracks(Node):
    """Tracks of two runners for stream ``cam`` at 10 Hz: enough for fuse to fire rules and fill the store."""

    tracks = Output(Tracks)

    @dataclass
    class Params:
        hz: float = param(10.0, "tracks per second", minimum=0)

    async def run(self) -> None:
        async for n in paced(self, self.params.hz, 0):
            people = [Track(track_id=i + 1, bbox=(10.0 * i, 0.0, 10.0 * i + 5, 20.0), speed_mps=6.0 + i,
                            distance_m=float(n), confidence=0.9) for i in range(2)]
            await self.tracks.send(Tracks(stream_id="cam", frame_id=n, pts=n * 9000, time_base=Fraction(1, 90000),
                                          t_capture=time.time(), tracks=people))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fuzz_graph(db: Path, rtmp_port: int) -> str:
    return f"""
name: fuzz
server: {{port: 0}}
nodes:
  pub: {{node: ingest, params: {{url: "whip://", stream_id: cam, token: {WHIP_TOKEN}}}}}
  rtmp: {{node: ingest, params: {{url: "rtmp://127.0.0.1:{rtmp_port}/live/{RTMP_KEY}", stream_id: rtmp}}}}
  viewers:
    node: webrtc_out
    params: {{streams: [cam, rtmp], max_viewers: 100000}}
    inputs: {{video: [pub/packets, rtmp/packets]}}
  src: {{node: fuzz_tracks}}
  fuse:
    node: fuse
    inputs: {{tracks: src/tracks}}
    params: {{rules: [{{id: sprint, metric: speed_kmh, above: 20, for_s: 0.1, cooldown_s: 0.5}}]}}
  ws: {{node: ws_out, inputs: {{analytics: fuse/analytics}}, params: {{streams: [cam]}}}}
  db:
    node: store
    params: {{url: "sqlite:///{db}", batch_size: 20, flush_interval_ms: 50}}
    inputs: {{analytics: fuse/analytics}}
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGraph]:
    """The platform's surfaces in one running graph, shared by a module's fuzz tests (stopped after them, so
    nothing keeps running beside the rest of the suite)."""
    registry = Registry.default()
    registry.register("fuzz_tracks", FuzzTracks)
    port = free_port()
    graph = LiveGraph(fuzz_graph(tmp_path_factory.mktemp("fuzz") / "fuzz.db", port), registry).start()
    graph.rtmp_port = port  # type: ignore[attr-defined]
    try:
        yield graph
    finally:
        graph.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if COUNTS:
        terminalreporter.write_line("fuzz examples per surface: " + ", ".join(f"{k} {v}" for k, v in
                                                                            sorted(COUNTS.items())))
        write_counts()
