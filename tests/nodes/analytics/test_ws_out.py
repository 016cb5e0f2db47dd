"""ws_out over real sockets: contract messages, filters, client ops, resume without gaps, refusals, bad frames
with clear close codes, and stalled clients whose socket buffers really fill."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from typing import Any

import aiohttp
import pytest

from flowgraph.nodes.analytics.schemas import problems
from flowgraph.testing import running

FUSED = """name: ws
nodes:
  src: {{node: synth_analytics, params: {{fps: {fps}, count: 0, speeds_kmh: [12, 26]}}}}
  fuse:
    node: fuse
    inputs: {{tracks: src/tracks, poses: src/poses}}
    params: {{buffer_frames: {frames}, rules: [{{id: sprint, metric: speed_kmh, above: 20, cooldown_s: 0.2,
               max_gap_s: 0.01}}]}}
  ws: {{node: ws_out, inputs: {{analytics: fuse/analytics}}, params: {{{ws}}}}}
"""


def fused(fps: float = 60, frames: int = 900, ws: str = "") -> str:
    return FUSED.format(fps=fps, frames=frames, ws=ws)


async def receive_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    msg = await ws.receive(timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    body: dict[str, Any] = json.loads(msg.data)
    return body


async def take(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[dict[str, Any]]:
    return [await receive_json(ws) for _ in range(n)]


async def test_clients_get_contract_messages_and_can_filter(compile_graph: Any) -> None:
    async with running(compile_graph(fused())) as rt, aiohttp.ClientSession() as http:
        base = rt.server.url.replace("http", "ws")
        async with http.ws_connect(f"{base}/stream/cam1/analytics") as everything, \
                http.ws_connect(f"{base}/stream/cam1/analytics?types=speed,betting_opportunity") as some:
            got = await take(everything, 40)
            filtered = await take(some, 20)
        assert {m["type"] for m in got} >= {"detection", "pose", "speed", "betting_opportunity"}
        for message in got + filtered:
            assert problems(message) == [], message
            assert message["payload"]["stream_id"] == "cam1"
        seqs = [m["seq"] for m in got]
        assert seqs == list(range(seqs[0], seqs[0] + 40))  # live, in order, nothing skipped
        assert {m["type"] for m in filtered} <= {"speed", "betting_opportunity"}
        streams = await (await http.get(f"{rt.server.url}/api/streams")).json()
        assert streams["streams"][0]["stream_id"] == "cam1"


async def test_subscribe_and_ping_ops(compile_graph: Any) -> None:
    async with running(compile_graph(fused())) as rt, aiohttp.ClientSession() as http:
        url = rt.server.url.replace("http", "ws") + "/stream/cam1/analytics?types=detection"
        async with http.ws_connect(url) as ws:
            assert (await receive_json(ws))["type"] == "detection"
            await ws.send_json({"op": "subscribe", "types": ["pose"]})
            kinds = [m["type"] for m in await take(ws, 12)]
            assert kinds[-1] == "pose" and set(kinds[-4:]) == {"pose"}
            await ws.send_json({"op": "ping"})
            for _ in range(50):
                message = await receive_json(ws)
                if message["type"] == "pong":
                    break
            assert message["type"] == "pong" and message["payload"]["seq"] > 0


async def test_a_reconnecting_client_resumes_without_gap_or_duplicate(compile_graph: Any) -> None:
    async with running(compile_graph(fused())) as rt, aiohttp.ClientSession() as http:
        url = rt.server.url.replace("http", "ws") + "/stream/cam1/analytics"
        async with http.ws_connect(url) as ws:
            first = await take(ws, 30)
        last = first[-1]["seq"]
        await asyncio.sleep(0.3)  # messages flow while the client is away
        async with http.ws_connect(f"{url}?since={last}") as ws:
            resumed = await take(ws, 120)
        seqs = [m["seq"] for m in resumed]
        assert seqs == list(range(last + 1, last + 121))
        assert resumed[-1]["payload"]["timestamp"] > first[-1]["payload"]["timestamp"] + 0.25  # reached live
        # a filtered resume replays only the wanted types, still in order
        async with http.ws_connect(f"{url}?since={last}&types=detection") as ws:
            detections = await take(ws, 10)
        assert [m["type"] for m in detections] == ["detection"] * 10
        frames = [m["payload"]["frame_id"] for m in detections]
        assert frames == list(range(frames[0], frames[0] + 10))


async def test_resume_tells_the_client_what_is_gone(compile_graph: Any) -> None:
    async with running(compile_graph(fused(frames=5))) as rt, aiohttp.ClientSession() as http:
        url = rt.server.url.replace("http", "ws") + "/stream/cam1/analytics"
        await asyncio.sleep(0.5)  # far more than 5 frames
        async with http.ws_connect(f"{url}?since=1") as ws:
            gap = await receive_json(ws)
            after = await receive_json(ws)
        assert gap["type"] == "gap" and gap["payload"]["reason"] == "evicted" and gap["payload"]["from_seq"] == 2
        assert after["seq"] == gap["payload"]["to_seq"] + 1
        async with http.ws_connect(f"{url}?since=99999999") as ws:
            notice = await receive_json(ws)
            live = await receive_json(ws)
        assert notice["type"] == "gap" and notice["payload"]["reason"] == "unknown_seq"
        assert live["seq"] > notice["payload"]["last_seq"]


async def test_refusals_before_the_upgrade(compile_graph: Any) -> None:
    text = fused(ws='token: s3cret, allowed_origins: ["https://morphine.example"], max_clients_per_stream: 2')
    async with running(compile_graph(text)) as rt, aiohttp.ClientSession() as http:
        base = rt.server.url.replace("http", "ws")
        url = f"{base}/stream/cam1/analytics"
        auth = {"Authorization": "Bearer s3cret"}
        cases = [
            (f"{base}/stream/nope/analytics?token=s3cret", {}, 404, "unknown stream"),
            (url, {}, 401, "token"),
            (url, {"Authorization": "Bearer wrong"}, 401, "token"),
            (f"{url}?types=speed,color", auth, 400, "unknown analytics type 'color'"),
            (f"{url}?since=-3", auth, 400, "since"),
            (f"{url}?sinse=3", auth, 400, "unknown query parameter 'sinse'"),
            (url, {**auth, "Origin": "https://evil.example"}, 403, "origin"),
        ]
        for target, headers, status, words in cases:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(target, headers=headers)
            assert info.value.status == status, (target, info.value)
            response = await http.get(target.replace("ws", "http", 1), headers={**headers, "Connection": "Upgrade",
                                                                                 "Upgrade": "websocket"})
            assert response.status == status and words in (await response.json())["error"]
        ok1 = await http.ws_connect(url, headers={**auth, "Origin": "https://morphine.example"})
        ok2 = await http.ws_connect(f"{url}?token=s3cret")
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(url, headers=auth)
        assert info.value.status == 503
        assert (await receive_json(ok1))["payload"]["stream_id"] == "cam1"
        await ok1.close()
        await ok2.close()
        assert rt.runners["ws"].node.hub.refused == 1


@pytest.mark.parametrize(("frame", "code"), [
    ("binary", 1003), ("not json", 1007), ("[1, 2]", 1007), ('{"op": "dance"}', 1008),
    ('{"op": "subscribe", "types": ["colour"]}', 1008), ("big", 1009),
])
async def test_bad_client_frames_close_with_a_clear_code(compile_graph: Any, frame: str, code: int) -> None:
    async with running(compile_graph(fused(fps=10))) as rt, aiohttp.ClientSession() as http:
        url = rt.server.url.replace("http", "ws") + "/stream/cam1/analytics"
        async with http.ws_connect(url) as ws:
            if frame == "binary":
                await ws.send_bytes(b"\x00\x01")
            elif frame == "big":
                await ws.send_str(json.dumps({"op": "ping", "pad": "x" * 5000}))
            else:
                await ws.send_str(frame)
            for _ in range(100):
                msg = await ws.receive(5)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == code, msg
        async with http.ws_connect(url) as again:  # the server is fine and serves the next client
            assert (await receive_json(again))["payload"]["stream_id"] == "cam1"
        assert rt.snapshot()["nodes"]["ws"]["state"] == "running"


async def test_clients_are_closed_going_away_at_shutdown(compile_graph: Any) -> None:
    async with aiohttp.ClientSession() as http:
        async with running(compile_graph(fused(fps=10))) as rt:
            ws = await http.ws_connect(rt.server.url.replace("http", "ws") + "/stream/cam1/analytics")
            await receive_json(ws)
        for _ in range(100):
            msg = await ws.receive(5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001 and msg.extra == "server shutting down"


def stalled_client(port: int, path: str) -> socket.socket:
    """A client that completes the WebSocket handshake and then never reads again (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_stalled_clients_fill_their_buffers_and_nobody_else_notices(compile_graph: Any) -> None:
    # ~16 KB messages at ~400/s: a stalled socket's kernel buffers (a few MB) fill within seconds
    text = """name: flood
nodes:
  tick: {node: analytics_ticker, params: {hz: 400, count: 0, pad_bytes: 16000}}
  ws: {node: ws_out, inputs: {analytics: tick/out}, params: {queue_size: 64, high_water_kb: 128}}
"""
    async with running(compile_graph(text)) as rt, aiohttp.ClientSession() as http:
        hub = rt.runners["ws"].node.hub
        port = rt.server.port
        healthy = await http.ws_connect(f"ws://127.0.0.1:{port}/stream/cam1/analytics", max_msg_size=1 << 20)
        stalled = [await asyncio.to_thread(stalled_client, port, "/stream/cam1/analytics") for _ in range(3)]
        seqs: list[int] = []

        def overflowing() -> list[Any]:
            return [c for c in hub.clients("cam1") if c.sent < len(seqs) // 2 and c.dropped > 0]

        # read until 1,200 messages (~19 MB, far beyond a stalled socket's kernel buffers) have reached the healthy
        # client and every stalled client's queue has overflowed: counted, not timed (a loaded box is slow)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120.0
        while (len(seqs) < 1200 or len(overflowing()) < 3) and loop.time() < deadline:
            seqs.append((await receive_json(healthy, timeout=30))["seq"])
        assert len(seqs) >= 1200, f"only {len(seqs)} messages in 120 s"
        slow = [c for c in hub.clients("cam1") if c.sent < len(seqs) // 2]
        assert len(slow) == 3
        for client in slow:
            assert client.dropped > 0  # its queue overflowed: the kernel would take no more
            assert client.transport.get_write_buffer_size() <= 128 * 1024 + 20_000
            assert len(client.queue) <= 64
        (fast,) = [c for c in hub.clients("cam1") if c not in slow]
        assert fast.dropped == 0 and fast.sent >= len(seqs)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # the healthy client lost nothing
        assert hub.dropped == sum(c.dropped for c in slow)
        await healthy.close()
        for sock in stalled:
            sock.close()


async def test_a_client_stalled_too_long_is_disconnected(compile_graph: Any, eventually: Any) -> None:
    text = """name: kick
nodes:
  tick: {node: analytics_ticker, params: {hz: 400, count: 0, pad_bytes: 16000}}
  ws: {node: ws_out, inputs: {analytics: tick/out}, params: {queue_size: 16, high_water_kb: 64, stall_timeout_s: 1}}
"""
    async with running(compile_graph(text)) as rt:
        hub = rt.runners["ws"].node.hub
        sock = await asyncio.to_thread(stalled_client, rt.server.port, "/stream/cam1/analytics")
        try:
            assert await eventually(lambda: hub.kicked == 1, timeout=20)
            assert await eventually(lambda: hub.count("cam1") == 0)
        finally:
            sock.close()


async def test_ping_pong_keeps_live_clients_and_drops_silent_ones(compile_graph: Any, eventually: Any) -> None:
    # a ping every 2 s, 1 s to answer: generous for a loaded box, still far shorter than the test
    async with running(compile_graph(fused(fps=5, ws="ping_interval_s: 2"))) as rt, aiohttp.ClientSession() as http:
        hub = rt.runners["ws"].node.hub
        url = rt.server.url.replace("http", "ws") + "/stream/cam1/analytics"
        live = await http.ws_connect(url, autoping=False)  # answers each ping itself, so the test can count them
        received: list[dict[str, Any]] = []
        pings: list[float] = []

        async def read() -> None:
            async for msg in live:
                if msg.type == aiohttp.WSMsgType.PING:
                    await live.pong(msg.data)
                    pings.append(asyncio.get_running_loop().time())
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    received.append(json.loads(msg.data))

        reader = asyncio.create_task(read())
        silent = await asyncio.to_thread(stalled_client, rt.server.port, "/stream/cam1/analytics")  # never pongs
        try:
            assert await eventually(lambda: hub.count("cam1") == 2, timeout=10)  # both were served
            assert await eventually(lambda: hub.count("cam1") == 1, timeout=30)  # the silent one timed out
            assert await eventually(lambda: len(pings) >= 3, timeout=60), pings  # several pings, each answered
            assert hub.count("cam1") == 1 and not live.closed
            count = len(received)
            assert await eventually(lambda: len(received) > count)
            assert received[-1]["payload"]["stream_id"] == "cam1"
        finally:
            await live.close()
            await reader
            silent.close()
