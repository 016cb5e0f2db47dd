"""The HTTP contract: /api/stream/connect, WHEP, and what bad requests get back."""

from __future__ import annotations

import asyncio
import gc
import logging

import aiohttp
import pytest

from flowgraph.nodes.webrtc import aiortc_adapter

from .conftest import AiortcViewer, graph


async def test_connect_contract_video_and_analytics_arrive() -> None:
    async with graph("{streams: [cam]}") as rt:
        viewer = AiortcViewer()
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{rt.server.url}/api/stream/connect",
                                     json={"offer": await viewer.offer(), "stream_id": "cam"}) as resp:
                    assert resp.status == 200, await resp.text()
                    body = await resp.json()
            assert body["answer"].startswith("v=0")
            assert "H264" in body["answer"]
            assert body["stream_id"] == "cam"
            await viewer.accept(body["answer"])
            frame = await asyncio.wait_for(viewer.first_frame, 10)
            assert (frame.width, frame.height) == (320, 180)
            for _ in range(100):
                if viewer.messages:
                    break
                await asyncio.sleep(0.05)
            assert "analytics" in [c.label for c in viewer.channels]
            assert viewer.messages[0]["type"] == "detection"
            assert viewer.messages[0]["payload"]["stream_id"] == "cam"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{rt.server.url}/api/webrtc/stats") as resp:
                    stats = await resp.json()
            assert stats["streams"]["cam"]["viewers"] == 1
            assert stats["streams"]["cam"]["abr"]["adaptive"] is False
            assert "cannot adapt" in stats["streams"]["cam"]["abr"]["why"]
            assert stats["viewers"][0]["video"]["frames_sent"] > 0
        finally:
            await viewer.close()


async def test_whep_create_and_delete() -> None:
    async with graph("{streams: [cam]}", analytics=False) as rt:
        viewer = AiortcViewer(data_channel=False)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{rt.server.url}/whep/cam", data=await viewer.offer(),
                                     headers={"Content-Type": "application/sdp"}) as resp:
                    assert resp.status == 201, await resp.text()
                    assert resp.content_type == "application/sdp"
                    location = resp.headers["Location"]
                    answer = await resp.text()
                assert location.startswith("/whep/cam/")
                assert resp.headers["Access-Control-Expose-Headers"] == "Location"
                async with http.options(f"{rt.server.url}/whep/cam") as preflight:
                    assert preflight.status == 204
                    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
                await viewer.accept(answer)
                await asyncio.wait_for(viewer.first_frame, 10)
                node = rt.runners["out"].node
                assert len(node._backend.hub.sessions) == 1
                async with http.delete(f"{rt.server.url}{location}") as resp:
                    assert resp.status == 200
                assert len(node._backend.hub.sessions) == 0
                async with http.delete(f"{rt.server.url}{location}") as resp:
                    assert resp.status == 404
        finally:
            await viewer.close()


async def test_bad_requests_are_clear_errors() -> None:
    async with graph("{streams: [cam], max_sdp_bytes: 4096, max_viewers: 1}", analytics=False) as rt:
        url = rt.server.url
        viewer = AiortcViewer()
        offer = await viewer.offer()
        async with aiohttp.ClientSession() as http:
            async def connect(body: object) -> tuple[int, dict[str, str]]:
                async with http.post(f"{url}/api/stream/connect", json=body) as resp:
                    return resp.status, await resp.json()

            status, body = await connect({"offer": offer, "stream_id": "nope"})
            assert status == 404 and "unknown stream 'nope'" in body["error"] and "cam" in body["error"]
            status, body = await connect({"offer": "hello"})
            assert status == 400 and "not SDP" in body["error"]
            status, body = await connect({})
            assert status == 400 and "missing offer" in body["error"]
            status, body = await connect({"offer": "v=0\r\n" + "a=x\r\n" * 2000 + "m=video 9 x\r\n"})
            assert status == 400 and "limit is 4096" in body["error"]
            status, body = await connect({"offer": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=video 9 UDP 96\r\n"})
            assert status == 400 and body["error"]
            audio_only = offer.replace("m=video", "m=audio")
            status, body = await connect({"offer": audio_only})
            assert status == 400 and "video" in body["error"]
            async with http.post(f"{url}/api/stream/connect", data=b"{not json") as resp:
                assert resp.status == 400
                assert "JSON" in (await resp.json())["error"]
            async with http.post(f"{url}/whep/cam", data=offer) as resp:
                assert resp.status == 415
            # the first viewer fills the stream (max_viewers: 1), the second is refused
            status, body = await connect({"offer": offer, "stream_id": "cam"})
            assert status == 200
            other = AiortcViewer()
            status, body = await connect({"offer": await other.offer(), "stream_id": "cam"})
            assert status == 503 and "max_viewers" in body["error"]
            await other.close()
            # the server is still healthy
            async with http.get(f"{url}/api/webrtc/stats") as resp:
                assert resp.status == 200
        await viewer.close()


def without_fingerprint(sdp: str) -> str:
    """An offer aiortc accepts but cannot connect with: its DTLS start asserts on the missing fingerprint."""
    return "\r\n".join(line for line in sdp.splitlines() if not line.startswith("a=fingerprint")) + "\r\n"


def task_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    gc.collect()  # an unretrieved task exception is logged when the task is collected: collect now
    return [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()
            or (r.levelno >= logging.ERROR and r.name == "asyncio")]


async def test_an_offer_that_cannot_connect_closes_its_viewer_and_leaks_no_task_error(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with graph("{streams: [cam]}", analytics=False) as rt:
        hub = rt.runners["out"].node._backend.hub
        viewer = AiortcViewer(data_channel=False)
        failures = aiortc_adapter.connect_failures
        try:
            offer = without_fingerprint(await viewer.offer())
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{rt.server.url}/api/stream/connect",
                                     json={"offer": offer, "stream_id": "cam"}) as resp:
                    status = resp.status
            for _ in range(400):  # the connect task fails after the answer went out; the viewer is closed
                if aiortc_adapter.connect_failures > failures and not hub.sessions:
                    break
                await asyncio.sleep(0.05)
            left = len(hub.sessions)
        finally:
            await viewer.close()
        await asyncio.sleep(0.1)
        errors = task_errors(caplog)
        good = AiortcViewer(data_channel=False)  # the server still serves a good viewer
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{rt.server.url}/whep/cam", data=await good.offer(),
                                     headers={"Content-Type": "application/sdp"}) as resp:
                    assert resp.status == 201, await resp.text()
                    await good.accept(await resp.text())
            await asyncio.wait_for(good.first_frame, 20)
        finally:
            await good.close()
    assert status == 200  # aiortc took the offer; only connecting fails
    assert aiortc_adapter.connect_failures > failures and left == 0
    assert errors == []
    assert any("failed to connect (AssertionError" in r.getMessage() for r in caplog.records)
