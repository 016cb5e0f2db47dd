"""Viewers over real loopback WebRTC: joining, keyframe requests, renditions, limits, cleanup, memory."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from typing import Any

import aiohttp
import psutil

from flowgraph.nodes.webrtc.browser import Chromium
from flowgraph.nodes.webrtc.session import SessionConfig, ViewerSession

from .conftest import AiortcViewer, graph


async def watch(url: str, stream: str = "cam", *, data_channel: bool = True) -> tuple[AiortcViewer, dict[str, Any]]:
    viewer = AiortcViewer(data_channel=data_channel)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/stream/connect", json={"offer": await viewer.offer(),
                                                                "stream_id": stream}) as resp:
            body = await resp.json()
            assert resp.status == 200, body
    await viewer.accept(body["answer"])
    return viewer, body


async def test_gop_cache_serves_a_joining_viewer_without_a_keyframe_request() -> None:
    # a 10 s GOP: without the cache the viewer would wait up to 10 s
    async with graph("{streams: [cam], join: gop}", gop=300, analytics=False) as rt:
        await asyncio.sleep(0.5)
        viewer, _ = await watch(rt.server.url)
        try:
            await asyncio.wait_for(viewer.first_frame, 5)
            gen = rt.runners["src"].node
            assert gen.keyframes_requested == 0
            stats = await rt.runners["out"].node.viewer_stats()
            assert stats["viewers"][0]["video"]["burst_frames"] > 3
        finally:
            await viewer.close()


async def test_keyframe_join_mode_asks_the_source() -> None:
    async with graph("{streams: [cam], join: keyframe}", gop=300, analytics=False) as rt:
        await asyncio.sleep(0.5)
        viewer, _ = await watch(rt.server.url)
        try:
            await asyncio.wait_for(viewer.first_frame, 5)
            gen = rt.runners["src"].node
            assert gen.keyframes_requested >= 1, "the control edge did not reach the source"
            stats = await rt.runners["out"].node.viewer_stats()
            assert stats["viewers"][0]["video"]["burst_frames"] == 0
        finally:
            await viewer.close()


async def test_ladder_renditions_and_switch() -> None:
    text = """
name: ladder
nodes:
  hi: {node: h264gen, params: {width: 640, height: 360, gop: 30}}
  lo: {node: h264gen, params: {width: 320, height: 180, gop: 30}}
  out:
    node: webrtc_out
    params: {ladder: true}
    inputs: {video: [hi/packets, lo/packets]}
"""
    from flowgraph.testing import compile_text, running

    from .conftest import registry

    async with running(compile_text(text, registry=registry()), port=0) as rt:
        await asyncio.sleep(0.6)
        viewer, _ = await watch(rt.server.url)
        try:
            first = await asyncio.wait_for(viewer.first_frame, 5)
            node: Any = rt.runners["out"].node
            hub = node._backend.hub
            stats = hub.stats()
            assert set(stats["streams"]["cam"]["renditions"]) == {"360p", "180p"}
            assert stats["streams"]["cam"]["abr"]["adaptive"] is True
            session = next(iter(hub.sessions.values()))
            other = "180p" if session.rendition == "360p" else "360p"
            hub.switch(session, other)
            want = (320, 180) if other == "180p" else (640, 360)
            assert (first.width, first.height) != want
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                frame = await asyncio.wait_for(viewer.pc.getTransceivers()[0].receiver.track.recv(), 5)
                if (frame.width, frame.height) == want:
                    break
            else:
                raise AssertionError("the viewer never received the other rendition")
        finally:
            await viewer.close()


async def test_vanished_browser_is_cleaned_up_within_seconds() -> None:
    async with graph("{streams: [cam], viewer_timeout_s: 2}", analytics=False) as rt:
        hub = rt.runners["out"].node._backend.hub
        browser = Chromium()
        await browser.start()
        try:
            page = await browser.open(f"{rt.server.url}/?stats=0")
            await page.wait_for("window.fg && window.fg.frames > 5", timeout=20)
            assert len(hub.sessions) == 1
            assert browser.process is not None
            os.killpg(browser.process.pid, signal.SIGKILL)  # no goodbye: no BYE, no DTLS close, no DELETE
            gone = time.monotonic()
            for _ in range(50):
                if not hub.sessions:
                    break
                await asyncio.sleep(0.2)
            assert not hub.sessions, "a vanished viewer is still registered"
            assert time.monotonic() - gone < 5
        finally:
            await browser.stop()


async def test_memory_flat_over_connect_disconnect_cycles() -> None:
    async with graph("{streams: [cam]}") as rt:
        hub = rt.runners["out"].node._backend.hub
        proc = psutil.Process()

        async def cycle() -> None:
            viewer, body = await watch(rt.server.url)
            await asyncio.wait_for(viewer.first_frame, 10)
            async with aiohttp.ClientSession() as http:
                async with http.delete(rt.server.url + body["location"]) as resp:
                    assert resp.status == 200
            await viewer.close()

        def rss_mib() -> float:
            return proc.memory_info().rss / 2**20

        for _ in range(20):  # warm-up: aiortc, codecs and allocator pools reach their working size
            await cycle()
        samples = []
        for _ in range(3):
            for _ in range(20):
                await cycle()
            gc.collect()
            await asyncio.sleep(0.2)
            samples.append(rss_mib())
        assert not hub.sessions and hub.viewers_closed == 80
        # the test process also holds every other test's memory, so judge the trend after warm-up, not the total:
        # a leak of 0.5 MiB per viewer adds 10 MiB between the second and third reading (500 cycles: webrtc_churn)
        grown = samples[2] - samples[1]
        assert grown < 10, f"RSS grew {grown:.1f} MiB over 20 connect/disconnect cycles after warm-up ({samples})"


class StuckChannel:
    """A data channel whose send buffer never drains (a viewer on a dead-slow link)."""

    label = "analytics"
    readyState = "open"
    bufferedAmountLowThreshold = 0

    def __init__(self) -> None:
        self.bufferedAmount = 0
        self.sent: list[str] = []

    def on(self, event: str, handler: Any) -> None:
        pass

    def send(self, text: str) -> None:
        self.sent.append(text)
        self.bufferedAmount += 300_000


def test_slow_data_channel_keeps_a_bounded_backlog_and_counts_drops() -> None:
    closed: list[Any] = []
    session = ViewerSession("v1", "cam", SessionConfig(analytics_backlog=8), on_keyframe_needed=lambda w: None,
                            on_closed=closed.append)
    stuck = StuckChannel()
    session._add_channel(stuck)
    for n in range(100):
        session.send_analytics(f'{{"n": {n}}}')
    assert len(stuck.sent) == 1, "nothing more is sent while the buffer is above its high-water mark"
    assert len(session.backlog) == 8 and session.analytics_dropped == 91
    assert session.backlog[-1] == '{"n": 99}', "the newest messages are kept"
    stuck.bufferedAmount = 0
    session._flush()
    assert len(stuck.sent) == 2  # one more sent, then the buffer is above the mark again
