"""Media gap: after packets are lost (upstream, on webrtc_out's own input edge, or on the pipe to a viewer worker),
viewers keep the last good picture until a keyframe the server asked for — read from Chromium's decoder stats.

The source's GOP is 100 s, so every keyframe Chromium decodes after the first one was requested. Forwarding the
P-frames after a gap (the old behaviour) shows no freeze and decodes no new keyframe: Chromium renders them on
top of references it never got.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import pytest

from flowgraph.messages import Packet
from flowgraph.nodes.webrtc.browser import Chromium, Page
from flowgraph.nodes.webrtc.node import WebRTCOut
from flowgraph.testing import compile_text, running

from .conftest import registry

INBOUND = """fg.pc.getStats().then(report => { let s = null; report.forEach(x => {
  if (x.type === 'inbound-rtp' && x.kind === 'video') s = {decoded: x.framesDecoded, keys: x.keyFramesDecoded,
    received: x.framesReceived, freezes: x.freezeCount, pli: x.pliCount, dropped: x.framesDropped}; });
  return s; })"""


class StallingOut(WebRTCOut):
    """``webrtc_out`` whose packet handler can be made to stall once, so its small input queue drops packets."""

    @dataclass
    class Params(WebRTCOut.Params):
        pass

    stall_s = 0.0

    async def on_video(self, msg: Packet) -> None:
        if self.stall_s:
            stall, self.stall_s = self.stall_s, 0.0
            await asyncio.sleep(stall)
        await super().on_video(msg)


def graph_text(where: str) -> str:
    out = "stalling_out" if where == "input edge" else "webrtc_out"
    video = "{from: src/packets, queue: 2, policy: drop_oldest}" if where == "input edge" else "src/packets"
    workers = 1 if where == "worker" else 0
    return f"""
name: gap
nodes:
  src:
    node: h264gen
    params: {{gop: 3000, fps: 30}}
    inputs: {{control: {{from: out/control, feedback: true}}}}
  out:
    node: {out}
    params: {{streams: [cam], workers: {workers}}}
    inputs: {{video: {video}}}
"""


async def inbound(page: Page) -> dict[str, Any]:
    stats: dict[str, Any] = await page.wait_for(INBOUND, timeout=10)
    return stats


@pytest.mark.parametrize("where", ["upstream", "input edge", "worker"])
async def test_viewers_hold_after_a_gap_and_resume_at_a_requested_keyframe(where: str) -> None:
    reg = registry()
    reg.register("stalling_out", StallingOut)
    async with running(compile_text(graph_text(where), registry=reg), port=0) as rt, Chromium() as browser:
        page = await browser.open(f"{rt.server.url}/?stats=0")
        await page.wait_for("window.fg && window.fg.frames > 30", timeout=20)
        before = await inbound(page)
        gen = rt.runners["src"].node
        out = rt.runners["out"].node
        assert before["keys"] == 1 and gen.keyframes_forced == 0, before
        lost_at = time.monotonic()
        if where == "input edge":
            out.stall_s = 0.5  # ≈ 15 packets arrive at a queue of 2
        else:
            gen.lose = 5
        await page.wait_for(f"({INBOUND}).then(s => s.keys > {before['keys']})", timeout=10)
        recovered_s = time.monotonic() - lost_at
        after = await inbound(page)
        await page.wait_for(f"({INBOUND}).then(s => s.decoded > {after['decoded'] + 20})", timeout=10)

        assert gen.keyframes_requested >= 1 and gen.keyframes_forced >= 1, "no keyframe was asked of the source"
        assert after["freezes"] > before["freezes"], f"the picture never held: {before} → {after}"
        assert recovered_s < 5, f"a keyframe came {recovered_s:.1f}s after the loss"
        fan = (await out.viewer_stats())["streams"]["cam"]["renditions"]["src"]
        assert fan["gaps"] >= 1 and fan["frames_held"] >= 1 and not fan["holding"], fan
        if where == "input edge":
            edge_drops = sum(channel.drops for edge, channel in rt.channels
                             if channel is not None and edge.target == "out" and edge.target_port == "video")
            assert edge_drops >= 1 and fan["packets_lost"] == edge_drops, (edge_drops, fan)
        else:
            assert fan["packets_lost"] == 5 == len(gen.lost_seqs), fan
