"""One viewer behind a bad link, another on a clean one: the clean viewer keeps its frame rate and delay, the bad
one costs only itself (bounded backlog, drops counted), recovers when its link does, and the server lives on.

The test builds its own network: two network namespaces, each joined to this one by a veth pair (10.X.1.0/24 the
impaired viewer's, 10.X.2.0/24 the clean viewer's); the graph's server listens on this side of the impaired
pair (``server.open``: the address exists only on that veth). Each viewer is a real aiortc peer in its own process
inside its namespace (``netns_viewer.py``). The impairment is a token bucket (``tc qdisc … tbf``) on the impaired
veth's egress here — the server → viewer direction: a link slower than the stream, so its packets queue (delay, up
to ``latency``) and the excess is dropped (loss). This kernel has no ``netem`` (CONFIG_NET_SCH_NETEM is off), so
delay and loss come from the rate limit rather than from a netem delay/loss line. Needs root (``ip netns``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from flowgraph.testing import compile_text, running

from .conftest import registry

VIEWER = Path(__file__).with_name("netns_viewer.py")
FPS = 30
HEALTHY_S = 6.0     # both links clean: the clean viewer's own baseline, measured in the same run
IMPAIRED_S = 14.0   # the impaired phase
RECOVERY_S = 10.0   # after the link is mended
#: The impaired link: 300 kbit/s for a ≈ 1.5 Mbit/s stream, packets queue up to 300 ms, the rest is dropped.
TBF = ["rate", "300kbit", "burst", "8kbit", "latency", "300ms"]
#: A real-sized stream, read from a file made once (no encoder in the test's process, and no forced keyframes: a
#: publisher's passthrough stream cannot make them either): ffmpeg's testsrc2 at 1.5 Mbit/s is several RTP packets
#: a frame — aiortc's receiver holds a lost packet's place for 512 packets, so a trickle of one packet a frame
#: would take 17 s to get past a hole after the link is mended.
GRAPH = """
name: impaired-viewer
server: {{host: {host}, open: true}}
nodes:
  src:
    node: ingest
    params: {{url: "{clip}", stream_id: cam, realtime: true, loop: true}}
  ana: {{node: analyticsgen, inputs: {{packets: src/packets}}}}
  out:
    node: webrtc_out
    params: {{streams: [cam]}}
    inputs: {{video: src/packets, analytics: ana/analytics}}
"""


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("impaired") / "clip.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=640x360:rate={FPS}:duration=12", "-c:v", "libx264", "-preset", "veryfast",
                    "-tune", "zerolatency", "-b:v", "1500k", "-maxrate", "1500k", "-bufsize", "750k", "-g", "60",
                    "-pix_fmt", "yuv420p", str(path)], check=True, timeout=120)
    return path


def sh(*args: str) -> None:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Net:
    """The namespaces and links of one test (names and subnet from this process's PID: tests beside us differ)."""

    tag: str
    octet: int
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    def ns(self, which: str) -> str:
        return f"fgi{self.tag}{which}"

    def here(self, which: str) -> str:
        return f"fgi{self.tag}{which}r"

    def server_ip(self, which: str) -> str:
        return f"10.{self.octet}.{1 if which == 'a' else 2}.1"

    def add(self, which: str) -> None:
        ns, here, there = self.ns(which), self.here(which), f"fgi{self.tag}{which}v"
        subnet = 1 if which == "a" else 2
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "link", "add", here, "type", "veth", "peer", "name", there)
        self.links.append(here)
        sh("ip", "link", "set", there, "netns", ns)
        sh("ip", "addr", "add", f"10.{self.octet}.{subnet}.1/24", "dev", here)
        sh("ip", "link", "set", here, "up")
        sh("ip", "-n", ns, "addr", "add", f"10.{self.octet}.{subnet}.2/24", "dev", there)
        sh("ip", "-n", ns, "link", "set", there, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", f"10.{self.octet}.{subnet}.1")

    def impair(self, which: str) -> None:
        sh("tc", "qdisc", "add", "dev", self.here(which), "root", "tbf", *TBF)

    def mend(self, which: str) -> None:
        sh("tc", "qdisc", "del", "dev", self.here(which), "root")

    def remove(self) -> None:
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=30)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@pytest.fixture
def net() -> Iterator[Net]:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
        pytest.fail("this test needs root and iproute2 (ip netns, tc): the test machines run the suite as root")
    pid = os.getpid()
    net = Net(tag=str(pid % 100_000), octet=100 + pid % 150)
    try:
        net.add("a")
        net.add("b")
        yield net
    finally:
        net.remove()


class Viewer:
    """``netns_viewer.py`` in a namespace: its per-second JSON lines, read as they come."""

    def __init__(self, ns: str, base: str, seconds: float) -> None:
        self.lines: list[dict[str, Any]] = []
        self.viewer_id: str | None = None
        self.error: str | None = None
        self.args = ["ip", "netns", "exec", ns, sys.executable, str(VIEWER), base, "cam", str(seconds)]
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(*self.args, stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.DEVNULL)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if "viewer_id" in line:
                    self.viewer_id = line["viewer_id"]
                elif "error" in line:
                    self.error = line["error"]
                else:
                    line["at"] = time.monotonic()
                    self.lines.append(line)

    def frames_between(self, start: float, end: float) -> int:
        inside = [ln for ln in self.lines if start <= ln["at"] <= end]
        return 0 if len(inside) < 2 else inside[-1]["frames"] - inside[0]["frames"]

    def lags_between(self, start: float, end: float) -> list[float]:
        return sorted(ln["lag_ms"] for ln in self.lines if start <= ln["at"] <= end and ln["lag_ms"] is not None)

    def fps_between(self, start: float, end: float) -> float:
        inside = [ln for ln in self.lines if start <= ln["at"] <= end]
        if len(inside) < 2:
            return 0.0
        return (inside[-1]["frames"] - inside[0]["frames"]) / (inside[-1]["at"] - inside[0]["at"])

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()  # the process this test started, by its handle
            await self.proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


async def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return bool(predicate())


def p95(values: list[float]) -> float:
    return values[min(len(values) - 1, int(len(values) * 0.95))] if values else float("inf")


async def test_one_impaired_viewer_costs_only_itself_and_recovers(net: Net, clip: Path) -> None:
    host = net.server_ip("a")  # reachable from both namespaces (their default routes lead here)
    plan = compile_text(GRAPH.format(host=host, clip=clip), registry=registry())
    seconds = IMPAIRED_S + RECOVERY_S + 60  # the viewers outlive the test's phases; killed at the end
    async with running(plan, port=0) as rt:
        base = str(rt.server.url)
        assert host in base
        impaired, clean = Viewer(net.ns("a"), base, seconds), Viewer(net.ns("b"), base, seconds)
        try:
            await impaired.start()
            await clean.start()
            assert await wait_until(lambda: min(len(impaired.lines), len(clean.lines)) >= 3
                                    and impaired.lines[-1]["frames"] > 30 and clean.lines[-1]["frames"] > 30, 60), \
                f"viewers did not start: {impaired.error or clean.error or (impaired.lines[-1:], clean.lines[-1:])}"
            healthy_at = time.monotonic()
            await asyncio.sleep(HEALTHY_S)
            net.impair("a")
            impaired_at = time.monotonic()
            await asyncio.sleep(IMPAIRED_S)
            mended_at = time.monotonic()
            async with aiohttp.ClientSession() as http, http.get(base + "/api/webrtc/stats") as response:
                during = await response.json()
            net.mend("a")
            await asyncio.sleep(RECOVERY_S)
            end = time.monotonic()
            async with aiohttp.ClientSession() as http, http.get(base + "/api/webrtc/stats") as response:
                after = await response.json()
            states = {name: runner.stats.state for name, runner in rt.runners.items()}
        finally:
            await impaired.stop()
            await clean.stop()
    viewers = {v["viewer_id"]: v for v in during["viewers"]}
    bad, good = viewers[impaired.viewer_id], viewers[clean.viewer_id]
    # measured only after the link settled (its queue fills in the first seconds)
    window = (impaired_at + 4.0, mended_at)
    clean_fps, bad_fps = clean.fps_between(*window), impaired.fps_between(*window)
    clean_lag, bad_lag = p95(clean.lags_between(*window)), p95(impaired.lags_between(*window))
    healthy = (healthy_at + 1.0, impaired_at)
    clean_healthy_fps, clean_healthy_lag = clean.fps_between(*healthy), p95(clean.lags_between(*healthy))
    recovered_fps = impaired.fps_between(mended_at + 5.0, end)
    report = (f"clean {clean_fps:.1f} fps (before: {clean_healthy_fps:.1f}), p95 extra delay {clean_lag:.0f} ms "
              f"(before: {clean_healthy_lag:.0f} ms); "
              f"impaired {bad_fps:.1f} fps, p95 {bad_lag:.0f} ms, after mending {recovered_fps:.1f} fps; "
              f"impaired server side {bad['video']} {bad['analytics']}; load {os.getloadavg()}")
    print(report)
    # the impairment bit: that viewer got fewer frames or got them late
    assert bad_fps < 0.8 * clean_fps or bad_lag > clean_lag + 150, report
    # the clean viewer kept its frame rate and its delay
    assert clean_fps >= 0.8 * FPS and clean_fps >= 0.85 * clean_healthy_fps, report
    assert clean_lag < clean_healthy_lag + 300, report
    assert good["analytics"]["dropped"] == 0 and good["video"]["overflows"] == 0, report
    # the impaired viewer's backlog stayed bounded (analytics: the oldest dropped and counted past its limit)
    assert bad["analytics"]["queued"] <= 64 and bad["video"]["queue"] <= 400, report
    # it recovered once its link did, and nothing in the graph failed
    assert recovered_fps >= 0.6 * FPS, report
    assert set(states.values()) == {"running"}, states
    assert {v["viewer_id"] for v in after["viewers"]} >= {impaired.viewer_id, clean.viewer_id}
