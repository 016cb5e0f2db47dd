"""Signalling limits and viewer control: a few offers that never do ICE cannot hold ``max_viewers``; the viewer
list needs ``server.token``; a viewer's session URL is what ends it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from flowgraph.testing import compile_text, running

from .conftest import AiortcViewer, graph_yaml, registry

TOKEN = "control-token-0123"


def plan(server: str, params: str = "{streams: [cam]}") -> object:
    text = graph_yaml(params, analytics=False).replace("name: webrtc-test\n", f"name: webrtc-test\nserver: {server}\n")
    return compile_text(text, registry=registry())


async def offer_from(url: str, address: str, viewer: AiortcViewer) -> tuple[int, dict]:
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(f"{url}/api/stream/connect", json={"offer": await viewer.offer(),
                                                                "stream_id": "cam"}) as response:
            return response.status, await response.json()


async def test_offers_that_never_do_ice_cannot_hold_max_viewers() -> None:
    limits = "{limits: {viewers_per_address: 2, exempt_loopback: false}}"
    async with running(plan(limits, "{streams: [cam], max_viewers: 3}"), port=0) as rt:
        url = rt.server.url
        idle = [AiortcViewer(data_channel=False) for _ in range(3)]
        held = [await offer_from(url, "127.0.0.1", v) for v in idle]  # answers never applied: no ICE ever
        assert [s for s, _ in held] == [200, 200, 429]
        assert "limits.viewers_per_address" in held[2][1]["error"]
        # someone else still gets in, and watches
        viewer = AiortcViewer()
        try:
            status, body = await offer_from(url, "127.0.0.2", viewer)
            assert status == 200, body
            await viewer.accept(body["answer"])
            await asyncio.wait_for(viewer.first_frame, 10)
        finally:
            await viewer.close()
            for v in idle:
                await v.pc.close()


async def test_viewer_list_needs_the_control_token_and_a_session_url_ends_its_viewer() -> None:
    async with running(plan(f"{{token: {TOKEN}}}"), port=0) as rt:
        url = rt.server.url
        viewer = AiortcViewer()
        try:
            status, body = await offer_from(url, "127.0.0.1", viewer)
            assert status == 200
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/api/webrtc/stats") as response:
                    assert response.status == 401  # on main: 200 with every viewer id
                async with http.get(f"{url}/api/webrtc/stats",
                                    headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                    stats = await response.json()
                    assert [v["viewer_id"] for v in stats["viewers"]] == [body["viewer_id"]]
                async with http.delete(f"{url}/whep/cam/0123456789abcdef") as response:
                    assert response.status == 404
                async with http.delete(f"{url}{body['location']}") as response:
                    assert response.status == 200
                assert not rt.runners["out"].node.has_viewer(body["viewer_id"])
        finally:
            await viewer.close()


async def test_bad_offers_and_bodies_are_a_400_not_a_500() -> None:
    async with running(plan("{}"), port=0) as rt:
        url = rt.server.url
        viewer = AiortcViewer()
        offer = await viewer.offer()
        await viewer.pc.close()
        async with aiohttp.ClientSession() as http:
            for sdp in (offer.replace("a=setup:actpass", "a=setup:bogus"),
                        offer.replace("a=rtpmap:", "a=rtpmap:x", 1)):
                async with http.post(f"{url}/api/stream/connect", json={"offer": sdp, "stream_id": "cam"}) as r:
                    assert r.status == 400, await r.text()
                    assert "offer" in (await r.json())["error"]
                async with http.post(f"{url}/whep/cam", data=sdp, headers={"Content-Type": "application/sdp"}) as r:
                    assert r.status == 400
            nested = '{"offer": ' + "[" * 5000 + "]" * 5000 + "}"
            async with http.post(f"{url}/api/stream/connect", data=nested,
                                 headers={"Content-Type": "application/json"}) as r:
                assert r.status == 400 and "nested too deeply" in (await r.json())["error"]


async def test_turn_credentials_stay_off_worker_command_lines() -> None:
    secret = "turn-secret-4f1d"
    params = ("{streams: [cam], workers: 1, ice_servers: [{urls: 'turn:turn.example:3478', username: u, "
              f"credential: {secret}}}]}}")
    async with running(plan("{}", params), port=0) as rt:
        pool = rt.runners["out"].node._backend
        (worker,) = pool.workers
        cmdline = await asyncio.to_thread(Path(f"/proc/{worker.process.pid}/cmdline").read_bytes)
        assert b"--fd" in cmdline and secret.encode() not in cmdline  # on main: the whole config was there
        viewer = AiortcViewer()
        try:
            status, body = await offer_from(rt.server.url, "127.0.0.1", viewer)
            assert status == 200, body  # the worker got its config all the same
        finally:
            await viewer.close()
