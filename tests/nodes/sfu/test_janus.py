"""sfu_out with real Janus processes (generated configurations in temp dirs, free ports, WebSocket API on
loopback) and a real headless Chromium running the unchanged viewer page."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flowgraph.nodes.sfu.janus import JanusError, JanusSettings, LocalJanus
from flowgraph.nodes.webrtc.browser import Chromium
from flowgraph.testing import compile_text, running

from ..webrtc.conftest import registry


def graph_yaml(sfu_params: str) -> str:
    return f"""
name: sfu-test
nodes:
  src:
    node: h264gen
    params: {{gop: 60, fps: 30, stream_id: cam, width: 640, height: 360}}
    inputs: {{control: {{from: out/control, feedback: true}}}}
  ana:
    node: analyticsgen
    inputs: {{packets: src/packets}}
  out:
    node: sfu_out
    params: {sfu_params}
    inputs: {{video: src/packets, analytics: ana/analytics}}
"""


@contextlib.asynccontextmanager
async def graph(sfu_params: str) -> AsyncIterator[Any]:
    async with running(compile_text(graph_yaml(sfu_params), registry=registry()), port=0) as rt:
        yield rt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_chromium_viewer_gets_video_and_overlays_through_janus() -> None:
    async with graph("{spawn: 1, streams: [cam]}") as rt, Chromium() as browser:
        node = rt.runners["out"].node
        page = await browser.open(f"{rt.server.url}/?stream=cam", width=1280, height=800)
        await page.wait_for("window.fg && fg.frames > 45", timeout=30)
        await page.wait_for("fg.drawn > 0", timeout=10)
        fg = await page.eval("({frames: fg.frames, first: fg.firstFrameMs, analytics: fg.analytics, sfu: fg.sfu, "
                             "types: fg.messages.map(m => m.type), state: fg.state, errors: fg.errors, "
                             "drawn: fg.drawn})")
        assert fg["state"] == "connected" and not fg["errors"]
        assert fg["sfu"] is True, "the answer did not come through the SFU"
        assert fg["analytics"] > 5 and "detection" in fg["types"], "no analytics over Janus's data channel"
        stats = await node.viewer_stats()
        assert stats["streams"]["cam"]["viewers"] == 1
        assert stats["instances"][0]["viewers"] == 1 and stats["instances"][0]["healthy"]
        assert stats["viewers"][0]["instance"] == "local0"
        assert stats["streams"]["cam"]["analytics_sent"] > 0
        # the viewer's PLI (Janus asks its source when a viewer starts) reached the packet source
        assert stats["streams"]["cam"]["keyframe_requests"] > 0
        assert rt.runners["src"].node.keyframes_requested > 0
        # WHEP through the same node: a 201 with Janus's transport in the answer
        await page.eval("fetch('/whep/cam/' + fg.viewerId, {method: 'DELETE'})")
        for _ in range(50):
            if not node.viewers:
                break
            await asyncio.sleep(0.1)
        assert not node.viewers, "DELETE did not end the viewer's Janus session"


async def test_killed_instance_moves_its_viewers() -> None:
    async with graph("{spawn: 2, streams: [cam], health_interval_s: 0.3}") as rt, Chromium() as browser:
        node = rt.runners["out"].node
        page = await browser.open(f"{rt.server.url}/?stream=cam")
        await page.wait_for("window.fg && fg.frames > 30", timeout=30)
        first = node.viewers[next(iter(node.viewers))].instance
        victim = node.local[[i.name for i in node.instances].index(first.name)]
        frames = await page.eval("fg.frames")
        killed = time.monotonic()
        victim.kill()
        # stalled picture -> the page joins again; the server avoids the dead instance
        await page.wait_for(f"fg.reconnects >= 1 && fg.frames > {frames} + 15", timeout=20)
        moved_after = time.monotonic() - killed
        stats = await node.viewer_stats()
        assert [v["instance"] for v in stats["viewers"]] == [i.name for i in node.instances if i is not first]
        assert not first.healthy and stats["instance_deaths"] == 1
        print(f"viewer moved and playing {moved_after:.2f}s after the kill")
        assert moved_after < 10, f"viewer took {moved_after:.1f}s to move (goal 3 s; generous bound for load)"


async def test_unreachable_instance_is_a_clear_error_at_start() -> None:
    port = free_port()
    with pytest.raises(JanusError, match=rf"instance janus0 \(ws://127.0.0.1:{port}\) unreachable"):
        async with graph(f"{{instances: [{{url: 'ws://127.0.0.1:{port}'}}]}}"):
            pass


async def test_wrong_admin_key_is_a_clear_error_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = LocalJanus(tmp_path / "janus", JanusSettings(ws_port=free_port(), api_secret="s3cret",
                                                         admin_key="right-key"))
    local.start()
    try:
        await local.wait_ready()
        monkeypatch.setenv("JANUS_API_SECRET", "s3cret")
        monkeypatch.setenv("JANUS_ADMIN_KEY", "wrong-key")
        with pytest.raises(JanusError, match=r"instance edge1: .*(Unauthorized|admin)"):
            async with graph(f"{{instances: [{{url: '{local.url}', name: edge1}}]}}"):
                pass
        monkeypatch.setenv("JANUS_API_SECRET", "wrong-secret")
        with pytest.raises(JanusError, match=r"instance edge1: .*(Unauthorized|secret)"):
            async with graph(f"{{instances: [{{url: '{local.url}', name: edge1}}]}}"):
                pass
    finally:
        local.stop()


async def test_no_instances_is_a_clear_error_at_start() -> None:
    with pytest.raises(ValueError, match="no SFU instances"):
        async with graph("{}"):
            pass


async def test_janus_that_cannot_start_names_its_log(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        local = LocalJanus(tmp_path / "janus", JanusSettings(ws_port=busy.getsockname()[1]))
        local.start()
        with pytest.raises(JanusError):
            await local.wait_ready(timeout=8)
    finally:
        local.stop()
        busy.close()
