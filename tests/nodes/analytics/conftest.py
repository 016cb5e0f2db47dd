"""Fixtures of the analytics tests: synthetic analytics sources (test-only nodes, offered by the ``reg``
registry fixture), a real redis-server and a real PostgreSQL in temporary directories on free ports (started by
:mod:`flowgraph.testservers`, which the benchmarks use too)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowgraph.messages import Analytics, VideoFrame
from flowgraph.node import Node
from flowgraph.nodes.core.utility import paced
from flowgraph.nodes.moriarty.messages import Pose, Poses
from flowgraph.nodes.vibrio.messages import Detection, Track, Tracks
from flowgraph.params import param
from flowgraph.ports import Output
from flowgraph.registry import Registry
from flowgraph.testing import compile_text
from flowgraph.testservers import PostgresServer, RedisServer, free_port, postgres_bin, wait_port

__all__ = ["PostgresServer", "RedisServer", "free_port", "wait_port"]  # test modules import these from here


class _Image:
    """Stands in for a picture: only its shape is read (frame size in payloads)."""

    shape = (720, 1280, 3)


class SynthAnalytics(Node):
    """Emits Tracks and Poses for synthetic people: track i runs at ``speeds_kmh[i]`` (a ramp when
    ``ramp_kmh_per_s`` is set), its left knee bends to ``knee_deg``; poses can lag or skip frames."""

    tracks = Output(Tracks)
    poses = Output(Poses)

    @dataclass
    class Params:
        stream_id: str = param("cam1", "stream id")
        fps: float = param(30.0, "frames per second (0 = as fast as possible)", minimum=0)
        count: int = param(30, "frames to emit (0 = until stopped)", minimum=0)
        speeds_kmh: list[float] = param([10.0], "one entry per person")
        ramp_kmh_per_s: float = param(0.0, "speed grows by this much per second")
        knee_deg: float = param(170.0, "left knee angle of every pose")
        poses: bool = param(True, "emit poses")
        skip_pose_every: int = param(0, "no pose for every Nth frame (0 = none skipped)", minimum=0)
        pose_lag: int = param(0, "poses trail tracks by this many frames", minimum=0)
        drop_tail_poses: bool = param(False, "never send the lagging poses still held at the end")
        pts: bool = param(True, "stamp pts with a 1/90000 time base")

    def _tracks(self, n: int) -> Tracks:
        p = self.params
        from fractions import Fraction

        t = n / (p.fps or 30.0)
        people = []
        for i, base in enumerate(p.speeds_kmh):
            speed = (base + p.ramp_kmh_per_s * t) / 3.6
            x = 100.0 + 200 * i + 20 * t
            people.append(Track(track_id=i + 1, bbox=(x, 100.0, x + 80, 400.0), score=0.9, age=n,
                                foot_px=(x + 40, 400.0), foot_world=(speed * t, float(i)), speed_mps=speed,
                                heading_deg=90.0, distance_m=speed * t, confidence=0.9))
        frame = VideoFrame(image=_Image(), stream_id=p.stream_id, frame_id=n)
        return Tracks(stream_id=p.stream_id, frame_id=n, pts=n * 3000 if p.pts else None,
                      time_base=Fraction(1, 90000) if p.pts else None, t_capture=time.time(), tracks=people,
                      detections=[Detection(bbox=tr.bbox, score=0.9) for tr in people], frame=frame)

    def _poses(self, tracks: Tracks) -> Poses:
        keypoints: list[tuple[float, float, float] | None] = [(10.0 * k, 5.0 * k, 0.9) for k in range(33)]
        keypoints[3] = None
        poses = [Pose(track_id=tr.track_id, keypoints=keypoints, bbox=tr.bbox,
                      joint_angles={"left_knee": self.params.knee_deg, "right_knee": 175.0, "trunk_lean": None},
                      metrics={"cadence_spm": 170.0})
                 for tr in tracks.tracks]
        return Poses(poses=poses).like(tracks)

    async def run(self) -> None:
        p = self.params
        held: list[Poses] = []
        async for n in paced(self, p.fps, p.count):
            tracks = self._tracks(n)
            await self.tracks.send(tracks)
            if p.poses and not (p.skip_pose_every and n % p.skip_pose_every == p.skip_pose_every - 1):
                held.append(self._poses(tracks))
            while held and held[0].frame_id <= n - p.pose_lag:
                await self.poses.send(held.pop(0))
        if not p.drop_tail_poses:
            for poses in held:
                await self.poses.send(poses)


class AnalyticsTicker(Node):
    """Emits ready-made Analytics messages (``speed`` by default) — for ws_out and store without fuse."""

    out = Output(Analytics)

    @dataclass
    class Params:
        stream_id: str = param("cam1", "stream id")
        hz: float = param(100.0, "messages per second (0 = as fast as possible)", minimum=0)
        count: int = param(100, "messages (0 = until stopped)", minimum=0)
        type: str = param("speed", "analytics type")
        pad_bytes: int = param(0, "extra payload bytes (a 'pad' string)", minimum=0)

    async def run(self) -> None:
        p = self.params
        pad = "x" * p.pad_bytes
        async for n in paced(self, p.hz, p.count):
            now = time.time()
            payload: dict[str, Any] = {"stream_id": p.stream_id, "frame_id": n, "pts": n, "pts_seconds": n / 30,
                                       "t_capture": now, "timestamp": now, "track_id": n % 5,
                                       "speed_mps": 3.0, "speed_kmh": 10.8, "confidence": 0.9,
                                       "heading_deg": 90.0, "distance_m": float(n)}
            if pad:
                payload["pad"] = pad
            await self.out.send(Analytics(type=p.type, payload=payload, stream_id=p.stream_id, frame_id=n, pts=n,
                                          t_capture=now))


@pytest.fixture
def reg() -> Registry:
    """The built-in node types plus the synthetic analytics sources."""
    registry = Registry.default()
    registry.register("synth_analytics", SynthAnalytics)
    registry.register("analytics_ticker", AnalyticsTicker)
    return registry


@pytest.fixture
def compile_graph(reg: Registry) -> Any:
    def build(text: str) -> Any:
        return compile_text(text, registry=reg)

    return build


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (Debian package redis-server)")
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def postgres_cluster() -> Iterator[PostgresServer]:
    if postgres_bin() is None:
        pytest.fail("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no pg_ctl on PATH)")
    directory = Path(tempfile.mkdtemp(prefix="fg-pg-"))
    server = PostgresServer(directory)
    server.init()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres(postgres_cluster: PostgresServer) -> Iterator[PostgresServer]:
    """The module's cluster, running, with an empty ``analytics`` table."""
    if postgres_cluster.pid() is None:
        postgres_cluster.start()
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(postgres_cluster.port), "-U", "postgres", "-c",
                    "DROP TABLE IF EXISTS analytics"], check=True, capture_output=True)
    yield postgres_cluster
    if postgres_cluster.pid() is None:
        postgres_cluster.start()


async def _eventually(predicate: Any, timeout: float = 20.0, step: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes (generous: a loaded 2-core CI box); returns its
    last value."""
    for _ in range(max(1, int(timeout / step))):
        if predicate():
            return True
        await asyncio.sleep(step)
    return bool(predicate())


@pytest.fixture
def eventually() -> Any:
    return _eventually


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on: bound for the whole test (so nobody else can take it), never listening,
    so a connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Any]:
    """``mount(kib)`` → a fresh directory on a tmpfs of that size (a disk that fills up); unmounted afterwards.
    Needs root (the test machines run the suite as root)."""
    mounts: list[Path] = []

    def mount(kib: int) -> Path:
        path = tmp_path / f"tmpfs{len(mounts)}"
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k,mode=0777", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs at {path} (tests need root): {done.stderr.strip()}")
        mounts.append(path)
        return path

    yield mount
    for path in reversed(mounts):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
