"""Many streams through one graph (issue 19): real ffmpeg publishers join and leave at random while WebRTC viewers
watch some streams and WebSocket clients follow others. Each viewer sees only its stream, analytics never cross
streams, an ended stream's state is freed, a publisher over the limit is refused; and memory stays flat across 200
join/leave cycles of in-process publishers."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
from typing import Any

import aiohttp

from flowgraph.nodes.media.rtmp_publish import PublishRefused, RtmpPublisher, encode_clip
from flowgraph.testing import compile_text, running

from .conftest import AiortcViewer, registry

KEYS = [f"k{i}" for i in range(9)]


def graph(port: int, max_streams: int = 8) -> str:
    return f"""
name: many-streams
nodes:
  src:
    node: ingest
    params: {{url: "rtmp://127.0.0.1:{port}/live", keys: "{','.join(f'{k}=s{k[1:]}' for k in KEYS)}",
             max_streams: {max_streams}, timeout_s: 3}}
    inputs: {{control: {{from: out/control, feedback: true}}}}
  ana: {{node: analyticsgen, inputs: {{packets: {{from: src/packets, policy: drop_oldest, queue: 64}}}}}}
  out:
    node: webrtc_out
    inputs: {{video: src/packets, analytics: {{from: ana/analytics, policy: drop_oldest, queue: 64}}}}
  ws: {{node: ws_out, inputs: {{analytics: {{from: ana/analytics, policy: drop_oldest, queue: 256}}}}}}
"""


def ffmpeg(port: int, key: str, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-f", "lavfi", "-i",
         f"testsrc2=size=160x96:rate=15:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast", "-tune",
         "zerolatency", "-g", "15", "-pix_fmt", "yuv420p", "-f", "flv", f"rtmp://127.0.0.1:{port}/live/{key}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def until(predicate: Any, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def watch(url: str, stream: str) -> AiortcViewer:
    viewer = AiortcViewer()
    async with aiohttp.ClientSession() as http, http.post(
            f"{url}/api/stream/connect", json={"offer": await viewer.offer(), "stream_id": stream}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    await viewer.accept(body["answer"])
    return viewer


async def follow(http: aiohttp.ClientSession, url: str, stream: str, into: list[dict[str, Any]]) -> None:
    async with http.ws_connect(f"{url.replace('http', 'ws')}/stream/{stream}/analytics") as ws:
        async for message in ws:
            into.append(json.loads(message.data))


async def test_publishers_join_and_leave_at_random_with_viewers_and_ws_clients(free_port: int) -> None:
    rng = random.Random(19)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    viewers: dict[str, AiortcViewer] = {}
    followed: dict[str, list[dict[str, Any]]] = {"s3": [], "s4": []}
    tasks: list[asyncio.Task[None]] = []
    async with running(compile_text(graph(free_port), registry=registry()), port=0) as rt, \
            aiohttp.ClientSession() as http:
        registry_ = rt.scope.streams
        hub = rt.runners["out"].node._backend.hub  # type: ignore[attr-defined]
        try:
            for key in KEYS[:8]:  # eight publishers join at random moments
                await asyncio.sleep(rng.uniform(0, 0.4))
                procs[key] = ffmpeg(free_port, key, 60)
            await until(lambda: len(hub.fanouts) == 8, 90, "eight live streams")
            ninth = RtmpPublisher("127.0.0.1", free_port, "live", "k8")
            refusal = ""
            try:
                await ninth.connect()
            except PublishRefused as exc:
                refusal = str(exc)
            finally:
                await ninth.close(unpublish=False)
            for stream in ("s1", "s2", "s5"):
                viewers[stream] = await watch(rt.server.url, stream)
            tasks = [asyncio.create_task(follow(http, rt.server.url, s, into)) for s, into in followed.items()]
            await until(lambda: all(len(v.messages) >= 3 and v.frames >= 5 for v in viewers.values())
                        and all(len(m) >= 3 for m in followed.values()), 90, "viewers and ws clients served")
            # churn: five publishers leave at random (killed, or unpublishing), three come back
            leaving = rng.sample(["k0", "k2", "k4", "k5", "k6", "k7"], 5)
            for key in leaving:
                os.kill(procs[key].pid, rng.choice([signal.SIGKILL, signal.SIGTERM]))
                procs[key].wait(10)
                await asyncio.sleep(rng.uniform(0, 0.3))
            gone = {f"s{k[1:]}" for k in leaving}
            await until(lambda: not gone & set(hub.fanouts), 60, "ended streams freed")
            await until(lambda: all(any(m["type"] == "stream_end" for m in followed[s]) for s in gone & set(followed)),
                        60, "WS clients of ended streams told")
            ended_ids = set(registry_.ids())
            watchers_of_gone = sum(hub.viewers_of(s) for s in gone)
            returning = rng.sample(leaving, 3)
            for key in returning:
                procs[key] = ffmpeg(free_port, key, 60)
            back = {f"s{k[1:]}" for k in returning}
            await until(lambda: back <= set(hub.fanouts), 90, "returning streams live")
            live_now = set(hub.fanouts)
            counters = rt.snapshot()["nodes"]["src"]["counters"]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for viewer in viewers.values():
                await viewer.close()
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                proc.wait(10)
    assert "stream limit reached" in refusal
    assert counters["admission"]["refused"].get("stream_limit") == 1
    # each viewer and WS client saw its own stream's analytics only
    for stream, viewer in viewers.items():
        assert {m["payload"]["stream_id"] for m in viewer.messages} == {stream}
    for stream, messages in followed.items():
        data = [m for m in messages if m["type"] != "stream_end"]
        assert data and {m["payload"]["stream_id"] for m in data} == {stream}
        ended = [m for m in messages if m["type"] == "stream_end"]
        assert bool(ended) == (stream in gone)
    # ended streams left nothing behind: not listed, no fan-out, no GOP cache; the others went on
    assert not gone & ended_ids
    assert live_now == ({f"s{i}" for i in range(8)} - gone) | back
    assert counters["streams_live"] == len(live_now)
    assert watchers_of_gone == 0  # a viewer of an ended stream is closed with it (s5 may be among them)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


async def test_memory_and_state_flat_across_200_join_leave_cycles(free_port: int) -> None:
    clip = encode_clip(160, 96, fps=30, frames=10, gop=10)
    text = graph(free_port, max_streams=4).replace(
        '  ws: {node: ws_out', '  dec: {node: decode, inputs: {packets: {from: src/packets, policy: drop_oldest, '
        'queue: 32}}}\n  ws: {node: ws_out')
    samples: list[float] = []
    async with running(compile_text(text, registry=registry()), port=0) as rt:
        hub = rt.runners["out"].node._backend.hub  # type: ignore[attr-defined]
        decoders = rt.runners["dec"].node._decoders  # type: ignore[attr-defined]

        async def cycle(key: str) -> None:
            publisher = RtmpPublisher("127.0.0.1", free_port, "live", key)
            for _ in range(200):  # the previous run of this key may still be ending
                try:
                    await publisher.connect()
                    break
                except PublishRefused:
                    await publisher.close(unpublish=False)
                    publisher = RtmpPublisher("127.0.0.1", free_port, "live", key)
                    await asyncio.sleep(0.05)
            await publisher.play(clip, len(clip.frames) / clip.fps, realtime=False)
            await publisher.close()

        for round_ in range(50):  # 4 publishers at a time, 200 cycles
            await asyncio.gather(*(cycle(KEYS[(round_ + i) % 8]) for i in range(4)))
            if round_ in (10, 49):
                await until(lambda: not hub.fanouts and not decoders and not rt.scope.streams.ids(), 60,
                            "every stream ended and freed")
                samples.append(rss_mb())
        counters = rt.snapshot()["nodes"]["src"]["counters"]
    assert counters["streams_ended"] == 200 and counters["streams_live"] == 0
    assert samples[1] - samples[0] < 25, f"RSS grew {samples[1] - samples[0]:.1f} MB over 156 cycles"
