"""The encode node: renditions, live bitrate changes, keyframes on request, burned-in overlays."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from flowgraph.messages import Analytics, Control, Packet, VideoFrame
from flowgraph.node import NodeContext
from flowgraph.nodes.media.decoder import StreamDecoder
from flowgraph.nodes.media.encode import Encode
from flowgraph.params import validate
from flowgraph.testing import collected, run_to_end


async def make_encoder(**params: Any) -> Encode:
    node = Encode(NodeContext(name="enc"), validate(Encode.Params, params))
    await node.start()
    return node


def noise_frames(count: int, width: int = 320, height: int = 240, seed: int = 0) -> list[VideoFrame]:
    rng = np.random.default_rng(seed)
    return [VideoFrame(image=rng.integers(0, 256, (height, width, 3), dtype=np.uint8), frame_id=i, pts=i * 3000,
                       stream_id="cam") for i in range(count)]


def encode(node: Encode, frames: list[VideoFrame]) -> list[Packet]:
    out: list[Packet] = []
    for frame in frames:
        out += node.process(frame) or []
    return out


async def test_ladder_renditions_decode_at_their_sizes() -> None:
    text = """
name: ladder
nodes:
  src: {node: ingest, params: {url: "testsrc://", width: 640, height: 360, people: 0, count: 30, realtime: false}}
  dec: {node: decode, inputs: {packets: {from: src/packets, policy: block}}}
  hi: {node: encode, inputs: {frames: {from: dec/frames, policy: block}}, params: {bitrate_kbps: 800, gop: 10}}
  lo: {node: encode, inputs: {frames: {from: dec/frames, policy: block}},
       params: {height: 180, bitrate_kbps: 200, gop: 10, stream_id: default/180p}}
  hi_out: {node: collect, inputs: {inp: {from: hi/packets, policy: block}}}
  lo_out: {node: collect, inputs: {inp: {from: lo/packets, policy: block}}}
  src_out: {node: collect, inputs: {inp: {from: src/packets, policy: block}}}
"""
    rt = await run_to_end(text)
    assert rt.exit_code == 0
    sources = {p.frame_id: p for p in collected(rt, "src_out")}
    for name, size, stream in (("hi_out", (360, 640, 3), "default"), ("lo_out", (180, 320, 3), "default/180p")):
        packets: list[Packet] = collected(rt, name)
        assert len(packets) == 30 and [p.frame_id for p in packets if p.keyframe] == [0, 10, 20]
        assert all(p.stream_id == stream and p.t_capture == sources[p.frame_id].t_capture for p in packets)
        decoder = StreamDecoder()
        frames = [f for p in packets for f in decoder.decode(p)]
        assert len(frames) == 30 and frames[0].image.shape == size
    assert rt.snapshot()["nodes"]["lo"]["counters"]["size"] == "320x180"


async def test_bitrate_changes_while_running() -> None:
    node = await make_encoder(bitrate_kbps=2000, gop=300, preset="ultrafast")
    frames = noise_frames(90)
    high = encode(node, frames[:45])
    await node.on_control(Control(command="bitrate", args={"kbps": 250}))
    low = encode(node, frames[45:])
    rate_high = sum(len(p.data) for p in high[15:]) / 30
    rate_low = sum(len(p.data) for p in low[15:]) / 30  # after the rate control settled
    assert rate_low < rate_high * 0.4
    assert node.counters()["bitrate_kbps"] == 250 and node.counters()["bitrate_changes"] == 1
    assert not any(p.keyframe for p in low)  # reconfigured in place: no IDR, no new encoder


async def test_keyframe_on_request() -> None:
    node = await make_encoder(gop=300)
    frames = noise_frames(12)
    first = encode(node, frames[:5])
    node.request_keyframe()
    rest = encode(node, frames[5:])
    assert [p.keyframe for p in first] == [True, False, False, False, False]
    assert rest[0].keyframe and not any(p.keyframe for p in rest[1:])
    assert node.counters()["keyframe_requests"] == 1


def frames_of(stream: str, count: int, seed: int) -> list[VideoFrame]:
    return [VideoFrame(image=f.image, frame_id=f.frame_id, pts=f.pts, stream_id=stream)
            for f in noise_frames(count, seed=seed)]


async def test_each_input_stream_gets_its_own_encoder_freed_when_it_ends() -> None:
    from flowgraph.messages import StreamEnd

    node = await make_encoder(gop=300, height=120, stream_id="{stream}/120p", max_streams=2)
    a, b = frames_of("a", 10, seed=1), frames_of("b", 10, seed=2)
    out = encode(node, [frame for pair in zip(a, b, strict=True) for frame in pair])  # interleaved
    per = {s: [p for p in out if p.stream_id == s] for s in ("a/120p", "b/120p")}
    for stream, packets in per.items():
        assert len(packets) == 10 and packets[0].keyframe and not any(p.keyframe for p in packets[1:]), stream
        assert all(y.pts > x.pts for x, y in itertools.pairwise(packets))
        decoder = StreamDecoder()  # each rendition decodes on its own: one encoder per stream
        pictures = [f for p in packets for f in decoder.decode(p)]
        assert len(pictures) == 10 and pictures[0].image.shape == (120, 160, 3)
    node.request_keyframe("b/120p")  # a viewer of b asked: only b's next picture is an IDR
    more = encode(node, [*frames_of("a", 1, seed=3), *frames_of("b", 1, seed=4)])
    assert [p.keyframe for p in more] == [False, True]
    with pytest.raises(ValueError, match="max_streams 2 reached"):
        encode(node, frames_of("c", 1, seed=5))
    await node.end_stream(StreamEnd(stream_id="a"))
    assert node.counters()["streams"] == 1 and node.counters()["refused_streams"] == 1
    again = encode(node, frames_of("c", 2, seed=5))  # a's encoder was freed: room for c
    assert [p.stream_id for p in again] == ["c/120p", "c/120p"] and again[0].keyframe


async def test_a_fixed_output_id_refuses_a_second_input_stream() -> None:
    node = await make_encoder(stream_id="cam/360p")
    assert encode(node, frames_of("a", 2, seed=1))[0].stream_id == "cam/360p"
    with pytest.raises(ValueError, match=r"would name two streams' renditions the same \(use \{stream\} in it\)"):
        encode(node, frames_of("b", 1, seed=2))


def detection(width: int, height: int, bbox: list[float]) -> Analytics:
    return Analytics(type="detection", stream_id="cam", payload={
        "tracks": [{"track_id": 7, "bbox": bbox, "speed_kmh": 12.3}], "detections": [], "width": width,
        "height": height})


def pose(width: int, height: int) -> Analytics:
    keypoints = [[100 + (i % 5) * 10, 40 + i * 4, 0.9] for i in range(33)]
    keypoints[3] = None  # type: ignore[call-overload]
    return Analytics(type="pose", stream_id="cam", payload={
        "poses": [{"track_id": 7, "skeleton": "blazepose33", "keypoints": keypoints}], "width": width,
        "height": height})


async def test_overlays_are_burned_in_scaled_and_expire() -> None:
    grey = VideoFrame(image=np.full((240, 320, 3), 128, dtype=np.uint8), frame_id=0, pts=0, stream_id="cam")
    plain = await make_encoder(gop=1)
    drawn = await make_encoder(gop=1, overlay=True, overlay_max_age_s=0.3)
    # analytics made on a 640x480 analysis frame: the box lands at half the coordinates here
    await drawn.on_analytics(detection(640, 480, [200, 100, 400, 300]))
    await drawn.on_analytics(pose(320, 240))
    picture = StreamDecoder().decode(encode(drawn, [grey])[0])[0].image
    reference = StreamDecoder().decode(encode(plain, [grey])[0])[0].image
    changed = np.abs(picture.astype(int) - reference.astype(int)).sum(axis=2) > 60
    assert changed[50:150, 98:103].any(axis=1).mean() > 0.9  # the box's left edge at x = 100 (scaled from 200)
    assert changed[147:153, 100:200].any(axis=0).mean() > 0.9  # its bottom edge at y = 150
    assert changed[40:170, 100:140].mean() > 0.05  # skeleton lines inside the pose's area
    assert not changed[200:, 250:].any()  # nothing elsewhere
    assert np.array_equal(grey.image, np.full((240, 320, 3), 128, dtype=np.uint8))  # the shared input untouched
    import asyncio

    await asyncio.sleep(0.35)
    stale = StreamDecoder().decode(encode(drawn, [grey])[0])[0].image
    assert np.abs(stale.astype(int) - reference.astype(int)).max() < 12  # expired analytics are not drawn
    assert drawn.counters()["overlays_drawn"] == 1


@pytest.mark.parametrize("bad", [{"bitrate_kbps": 10}, {"codec": "vp9"}, {"width": -2}])
def test_bad_params_are_refused(bad: dict[str, Any]) -> None:
    from flowgraph.errors import ParamsError

    with pytest.raises(ParamsError):
        validate(Encode.Params, bad)
