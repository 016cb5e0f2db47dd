"""Shared parts of the WebRTC benchmarks: a stamped 720p publisher, server launchers (flowgraph, the minimal
aiortc passthrough server, Janus), the browser case runner, and process CPU/memory sampling (the light
receive-only viewers are in ``_light_viewers.py``).

The publisher renders frames with the synth frame stamp (frame id + capture time in ms, drawn just before the
encoder), encodes them with libx264 zero-latency and pushes RTMP (flowgraph, minimal server) or RTP (Janus).
Run it alone with ``python tools/bench/_webrtc_common.py publish URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _net import free_port

if TYPE_CHECKING:
    from flowgraph.nodes.webrtc.browser import Chromium

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
FLOWGRAPH = str(Path(PY).with_name("flowgraph"))


# -- publisher ----------------------------------------------------------------------------------------------
def publish(url: str, *, width: int = 1280, height: int = 720, fps: float = 30, gop: int = 60,
            bitrate_kbps: int = 1600, seconds: float = 3600.0) -> None:
    """Push stamped frames to ``url`` (rtmp://… as FLV, rtp://… as RTP) in real time until ``seconds`` pass.

    Frames are drawn here and piped raw to one ffmpeg process (libx264 zero-latency) that publishes them, so
    every server gets the same encoder; the stamp's capture time is taken just before the frame enters the pipe.
    ``fps`` may be fractional (ffmpeg gets it as a fraction: 29.97 as 2997/100).
    """
    from fractions import Fraction

    rate = str(Fraction(fps).limit_denominator(1001))
    import numpy as np

    from flowgraph.nodes.synth.stamp import draw_stamp

    fmt = ["-f", "rtp", url + ("&" if "?" in url else "?") + "pkt_size=1200"] if url.startswith("rtp://") \
        else ["-f", "flv", url]
    encoder = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
         "-r", rate, "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
         "-profile:v", "baseline", "-b:v", f"{bitrate_kbps}k", "-maxrate", f"{bitrate_kbps}k",
         "-bufsize", f"{bitrate_kbps // 2}k", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
         "-x264-params", "repeat-headers=1", "-pix_fmt", "yuv420p", *fmt],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert encoder.stdin is not None
    rng = np.random.default_rng(1)
    background = (rng.random((height, width, 3)) * 40 + 90).astype(np.uint8)
    background[:, :, 1] += 40
    image = background.copy()
    start = time.monotonic()
    n = 0
    try:
        while time.monotonic() - start < seconds:
            image[:] = background
            x = (n * 8) % (width - 120)
            image[height // 2: height // 2 + 120, x: x + 120] = (230, 60, 60)
            draw_stamp(image, n, int(time.time() * 1000))
            encoder.stdin.write(image.tobytes())
            encoder.stdin.flush()
            n += 1
            delay = start + n / fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        with contextlib.suppress(Exception):
            encoder.stdin.close()
        encoder.terminate()
        encoder.wait(5)


class Proc:
    """A child process started (in its own session) and stopped by its pid."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, log: str | None = None) -> None:
        self.args = args
        out = open(log, "w") if log else subprocess.DEVNULL
        self.popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                                      env={**os.environ, **(env or {})}, start_new_session=True, cwd=ROOT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(8)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def start_publisher(url: str, **kwargs: Any) -> Proc:
    extra = [f"--{k}={v}" for k, v in kwargs.items()]
    return Proc([PY, str(Path(__file__)), "publish", url, *extra])


@contextlib.asynccontextmanager
async def publishing(url: str, **kwargs: Any) -> AsyncIterator[Proc]:
    """A publisher pushing to ``url`` for the length of the block (``async with``, beside a server's; see
    :func:`publish` for ``kwargs``)."""
    publisher = start_publisher(url, **kwargs)
    try:
        yield publisher
    finally:
        publisher.stop()


async def wait_http(url: str, timeout: float = 20.0) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout}s")
            await asyncio.sleep(0.2)


async def wait_stream(base: str, stream: str, timeout: float = 20.0) -> None:
    """Until the server lists ``stream`` with packets flowing (flowgraph's /api/webrtc/stats)."""
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, KeyError, ValueError):
                async with http.get(f"{base}/api/webrtc/stats") as resp:
                    stats = await resp.json()
                renditions = stats["streams"][stream]["renditions"]
                if any(r["frames"] > 30 for r in renditions.values()):
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"no packets for stream {stream!r} at {base} within {timeout}s")


# -- servers ------------------------------------------------------------------------------------------------
FLOWGRAPH_PASSTHROUGH = """
name: bench-passthrough
nodes:
  ingest:
    node: ingest
    params: {{url: "rtmp://127.0.0.1:{rtmp}/live/bench", stream_id: bench}}
    inputs: {{control: {{from: viewers/control, feedback: true}}}}
  viewers:
    node: webrtc_out
    params: {{streams: [bench], viewer_timeout_s: 60, workers: {workers}, join: {join}, max_viewers: 1000}}
    inputs: {{video: ingest/packets}}
"""

FLOWGRAPH_TRANSCODE = """
name: bench-transcode
nodes:
  ingest:
    node: ingest
    params: {{url: "rtmp://127.0.0.1:{rtmp}/live/bench", stream_id: bench}}
  decode:
    node: decode
    inputs: {{packets: ingest/packets}}
  encode:
    node: encode
    params: {{bitrate_kbps: 1600, gop: 60, preset: veryfast}}
    inputs: {{frames: decode/frames, control: {{from: viewers/control, feedback: true}}}}
  viewers:
    node: webrtc_out
    params: {{streams: [bench], viewer_timeout_s: 60, join: {join}}}
    inputs: {{video: encode/packets}}
"""

FLOWGRAPH_SFU = """
name: bench-sfu
nodes:
  ingest:
    node: ingest
    params: {{url: "rtmp://127.0.0.1:{rtmp}/live/bench", stream_id: bench}}
    inputs: {{control: {{from: viewers/control, feedback: true}}}}
  viewers:
    node: sfu_out
    params: {{spawn: 2, streams: [bench], max_viewers_per_instance: 100000}}
    inputs: {{video: ingest/packets}}
"""

#: graph template and start-up allowance (s) per kind; sfu_out starts two Janus processes first
FLOWGRAPH_KINDS = {"passthrough": (FLOWGRAPH_PASSTHROUGH, 20.0), "transcode": (FLOWGRAPH_TRANSCODE, 20.0),
                   "sfu": (FLOWGRAPH_SFU, 40.0)}


@contextlib.asynccontextmanager
async def flowgraph_server(kind: str = "passthrough", *, workers: int = 0, join: str = "gop",
                           tmp: Path) -> AsyncIterator[tuple[str, str, Proc]]:
    """A ``flowgraph run`` subprocess (``kind``: passthrough, transcode, or sfu: ``sfu_out`` with two spawned
    Janus instances); yields (http base url, rtmp publish url, process)."""
    template, startup_s = FLOWGRAPH_KINDS[kind]
    rtmp, http = free_port(), free_port()
    graph = tmp / f"{kind}.yaml"
    graph.write_text(template.format(rtmp=rtmp, workers=workers, join=join))
    proc = Proc([FLOWGRAPH, "run", str(graph), "--port", str(http)], log=str(tmp / f"{kind}.log"))
    try:
        base = f"http://127.0.0.1:{http}"
        await wait_http(base + "/api/webrtc/streams", timeout=startup_s)
        yield base, f"rtmp://127.0.0.1:{rtmp}/live/bench", proc
    finally:
        proc.stop()


@contextlib.asynccontextmanager
async def minimal_server(mode: str = "passthrough", *, tmp: Path) -> AsyncIterator[tuple[str, str, Proc]]:
    """The bench's minimal aiortc server (``webrtc_minimal_server.py``)."""
    rtmp, http = free_port(), free_port()
    proc = Proc([PY, str(Path(__file__).with_name("_webrtc_minimal_server.py")), "--http", str(http),
                 "--rtmp", str(rtmp), "--mode", mode], log=str(tmp / f"minimal-{mode}.log"))
    try:
        base = f"http://127.0.0.1:{http}"
        await wait_http(base + "/api/webrtc/config")
        yield base, f"rtmp://127.0.0.1:{rtmp}/live/bench", proc
    finally:
        proc.stop()


JANUS_CFG = """
general: {{ configs_folder = "{cfg}", plugins_folder = "/usr/lib/x86_64-linux-gnu/janus/plugins",
  transports_folder = "/usr/lib/x86_64-linux-gnu/janus/transports",
  events_folder = "/usr/lib/x86_64-linux-gnu/janus/events",
  loggers_folder = "/usr/lib/x86_64-linux-gnu/janus/loggers",
  debug_level = 3, admin_secret = "x", protected_folders = [], event_loops = {loops} }}
certificates: {{}}
media: {{ rtp_port_range = "{rtp_lo}-{rtp_hi}", min_nack_queue = 200 }}
nat: {{ nice_debug = false, ice_lite = true, ice_tcp = false, full_trickle = false }}
plugins: {{ disable = "{plugins_off}" }}
transports: {{ disable = "{transports_off}" }}
events: {{ broadcast = false }}
loggers: {{ disable = "libjanus_jsonlog.so" }}
"""
JANUS_PLUGINS_OFF = ",".join(f"libjanus_{name}.so" for name in (
    "audiobridge", "duktape", "lua", "nosip", "recordplay", "sip", "textroom", "videocall", "videoroom",
    "voicemail", "echotest"))
JANUS_TRANSPORTS_OFF = ",".join(f"libjanus_{name}.so" for name in ("mqtt", "nanomsg", "pfunix", "rabbitmq",
                                                                    "websockets"))
JANUS_HTTP = """
general: {{ json = "indented", base_path = "/janus", http = true, port = {port}, interface = "lo", https = false }}
admin: {{ admin_base_path = "/admin", admin_http = false }}
cors: {{ allow_origin = "*" }}
"""
JANUS_STREAMING = """
general: {{ }}
bench: {{ type = "rtp", id = 1, description = "bench", audio = false, video = true, videoport = {video},
  videopt = 96, videortpmap = "H264/90000", videofmtp = "profile-level-id=42e01f;packetization-mode=1",
  videobufferkf = true }}
"""


@contextlib.asynccontextmanager
async def janus_server(*, tmp: Path) -> AsyncIterator[tuple[str, str, Proc]]:
    """Janus (Debian package) with the streaming plugin listening for RTP; yields (api url, rtp url, process)."""
    if not shutil.which("janus"):
        raise RuntimeError("janus is not installed (apt-get install -y janus)")
    cfg = Path(tempfile.mkdtemp(prefix="janus-", dir=tmp))
    http, video = free_port(), free_port(socket.SOCK_DGRAM)
    # Every viewer holds one port per host interface: the earlier 100-port range ran out after ~50 viewers
    # (48 of 64 received, and 0 of 128). A realistic range, ICE-lite, keyframe buffering (instant joins) and one
    # event loop per core (Janus's default is a thread per viewer) make this the best-effort configuration.
    lo, hi = 20000, 40000
    (cfg / "janus.jcfg").write_text(JANUS_CFG.format(cfg=cfg, rtp_lo=lo, rtp_hi=hi, loops=os.cpu_count() or 2,
                                                        plugins_off=JANUS_PLUGINS_OFF,
                                                        transports_off=JANUS_TRANSPORTS_OFF))
    (cfg / "janus.transport.http.jcfg").write_text(JANUS_HTTP.format(port=http))
    (cfg / "janus.plugin.streaming.jcfg").write_text(JANUS_STREAMING.format(video=video))
    proc = Proc(["janus", "-C", str(cfg / "janus.jcfg"), "-F", str(cfg), "-N"], log=str(tmp / "janus.log"))
    try:
        base = f"http://127.0.0.1:{http}/janus"
        await wait_http(base + "/info")
        yield base, f"rtp://127.0.0.1:{video}", proc
    finally:
        proc.stop()


# -- running cases in one browser -----------------------------------------------------------------------------
async def run_browser_cases(cases: Iterable[str], run_case: Callable[[str, Chromium, Path], Awaitable[dict[str, Any]]],
                            *, log_tail: bool = False) -> list[dict[str, Any]]:
    """Each case in turn with one headless Chromium and one temporary folder; returns their results in order.

    A case that fails becomes ``{"case": name, "error": ...}`` and the others still run (with ``log_tail``, the
    end of the case's server log, ``<case>.log``, goes to stderr with the error).
    """
    from flowgraph.nodes.webrtc.browser import Chromium

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fg-bench-") as tmpdir:
        tmp = Path(tmpdir)
        async with Chromium() as browser:
            for case in cases:
                started = time.monotonic()
                try:
                    results.append(await run_case(case, browser, tmp))
                except Exception as exc:  # one failing case still leaves the others' numbers
                    log = tmp / f"{case}.log"
                    tail = ""
                    if log_tail:
                        tail = "\n" + (log.read_text()[-2000:] if log.exists() else "")
                    print(f"case {case} failed: {exc!r}{tail}", file=sys.stderr)
                    results.append({"case": case, "error": repr(exc)})
                print(f"[{case}: {time.monotonic() - started:.0f}s] {results[-1]}", file=sys.stderr)
    return results


# -- measuring processes ------------------------------------------------------------------------------------
def tree(pid: int) -> list[Any]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(procs: list[Any]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(Exception):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def rss_mib(procs: list[Any]) -> float:
    total = 0
    for p in procs:
        with contextlib.suppress(Exception):
            total += p.memory_info().rss
    return total / 2**20


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "publish":
        options = dict(arg[2:].split("=", 1) for arg in sys.argv[3:])
        typed: dict[str, Any] = {k: (float(v) if k in ("seconds", "fps") else int(v)) for k, v in options.items()}
        publish(sys.argv[2], **typed)
    else:
        print(__doc__)
