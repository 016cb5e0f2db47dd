"""The synthetic source: encoded live, paced, self-contained keyframes, IDR on request over a feedback edge."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from flowgraph.messages import Control, Packet
from flowgraph.node import Node
from flowgraph.nodes.media.h264 import NAL_IDR, NAL_PPS, NAL_SPS, nal_type, split_nals
from flowgraph.ports import Input, Output
from flowgraph.registry import Registry
from flowgraph.testing import collected, compile_text, run_to_end, running

from .helpers import ingest_graph, wait_for


async def test_testsrc_packets_decode_with_keyframes_on_the_gop() -> None:
    rt = await run_to_end(ingest_graph({"url": "testsrc://?width=320&height=240&fps=30", "people": 0, "count": 45,
                                        "gop": 15, "realtime": False}))
    assert rt.exit_code == 0
    packets: list[Packet] = collected(rt, "packets")
    assert [p.frame_id for p in packets] == list(range(45))
    assert [p.frame_id for p in packets if p.keyframe] == [0, 15, 30]
    for p in packets:
        kinds = [nal_type(n) for n in split_nals(p.data)]
        assert p.config is not None and p.width == 320 and p.height == 240
        if p.keyframe:
            assert NAL_SPS in kinds and NAL_PPS in kinds and NAL_IDR in kinds
        else:
            assert NAL_IDR not in kinds
    assert [b.pts - a.pts for a, b in itertools.pairwise(packets)] == [3000] * 44
    frames = collected(rt, "frames")
    assert len(frames) == 45 and frames[0].image.shape == (240, 320, 3)
    assert [f.frame_id for f in frames] == list(range(45))
    info = rt.scope.streams.get("default")["ingest"]
    assert info["packets"] == 45 and info["width"] == 320 and info["state"] == "ended"


async def test_testsrc_is_paced_in_real_time() -> None:
    rt = await run_to_end(ingest_graph({"url": "testsrc://", "width": 160, "height": 120, "fps": 20, "people": 0,
                                        "count": 21}))
    packets = collected(rt, "packets")
    span = packets[-1].t_capture - packets[0].t_capture
    assert 0.85 <= span <= 1.6  # 20 intervals at 20 fps = 1 s (loaded machines run late, never early)


def test_testsrc_url_query_is_checked() -> None:
    from flowgraph.nodes.media.ingest import testsrc_config

    class P:
        url = "testsrc://?width=640&bogus=1"
        width, height, fps, bitrate_kbps, gop, people, seed, count, preset, realtime = (
            1280, 720, 30.0, 1000, 60, 0, 1, 0, "veryfast", True)

    with pytest.raises(ValueError, match="unknown key 'bogus'"):
        testsrc_config(P())
    P.url = "testsrc://?width=640&fps=25"
    config = testsrc_config(P())
    assert (config.width, config.height, config.fps) == (640, 720, 25.0)


class AskKeyframe(Node):
    """Test node: after ``after`` packets, asks for one keyframe over its control output."""

    packets = Input(Packet)
    control = Output(Control)

    async def start(self) -> None:
        self.seen = 0

    async def process(self, packet: Packet) -> None:
        self.seen += 1
        if self.seen == 8:
            await self.control.send(Control(command="keyframe").like(packet))


async def test_keyframe_request_over_a_feedback_edge_forces_an_idr() -> None:
    registry = Registry.default()
    registry.register("ask_keyframe", AskKeyframe)
    text = ingest_graph({"url": "testsrc://", "width": 160, "height": 120, "fps": 30, "people": 0, "gop": 600},
                        extra="""  ask: {node: ask_keyframe, inputs: {packets: src/packets}}
""").replace("  src: {node: ingest,", "  src: {node: ingest, inputs: {control: {from: ask/control, feedback: true}},")
    plan = compile_text(text, registry=registry)
    async with running(plan) as rt:
        assert await wait_for(lambda: len(collected(rt, "packets")) >= 20, 10)
        counters: dict[str, Any] = rt.snapshot()["nodes"]["src"]["counters"]
    keys = [p.frame_id for p in collected(rt, "packets") if p.keyframe]
    assert keys[0] == 0 and len(keys) >= 2
    assert 8 <= keys[1] <= 12  # the IDR follows the request within a few frames, long before the 600-frame GOP
    assert counters["keyframe_requests"] == 1 and counters["keyframes_forced"] == 1


async def test_stop_is_prompt_while_pacing() -> None:
    # one frame every 20 s: after the first, the source waits 20 s for the next; stop must cut that wait short
    params = {"url": "testsrc://", "width": 160, "height": 120, "fps": 0.05, "people": 0}
    async with running(ingest_graph(params)) as rt:
        assert await wait_for(lambda: len(collected(rt, "packets")) >= 1, 30)
        loop = asyncio.get_running_loop()
        started = loop.time()
    assert loop.time() - started < 10.0 and rt.exit_code == 0  # generous (a loaded box), half the frame period
    assert len(collected(rt, "packets")) == 1


async def test_frames_carry_a_readable_stamp_and_the_synthetic_scene() -> None:
    from flowgraph.nodes.synth.stamp import read_stamp

    rt = await run_to_end(ingest_graph({"url": "testsrc://?width=640&height=360&people=2", "count": 10,
                                        "realtime": False}))
    frames = collected(rt, "frames")
    assert len(frames) == 10
    for frame in frames:  # survives libx264 at the default bitrate
        assert read_stamp(frame.image) == (frame.frame_id, int(frame.t_capture * 1000))
    assert type(rt.runners["src"].node.source.renderer).__name__ == "SceneRenderer"
