"""Overlays on their own frame: each picture gets the analytics of its pts, and may be held until they arrive."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from typing import Any

import numpy as np

from flowgraph.messages import Analytics, VideoFrame
from flowgraph.node import NodeContext
from flowgraph.nodes.media.encode import Encode
from flowgraph.nodes.media.overlay import OverlayState
from flowgraph.params import validate
from flowgraph.testing import collected, run_to_end

TB = Fraction(1, 90_000)


def detection_at(t: float, x: float, stream: str = "cam") -> Analytics:
    """A detection message for the frame at pts ``t`` seconds with one box whose left edge is at ``x``."""
    return Analytics(type="detection", stream_id=stream, pts=round(t * 90_000), time_base=TB, payload={
        "tracks": [{"track_id": 3, "bbox": [x, 40, x + 30, 120]}], "detections": [], "width": 320,
        "height": 240})


def left_edges(image: np.ndarray) -> list[int]:
    """Columns where a drawn box's vertical edge runs (coloured pixels in most of rows 60..110)."""
    coloured = np.abs(image.astype(int) - 128).sum(axis=2) > 60
    return [int(x) for x in np.flatnonzero(coloured[60:110].mean(axis=0) > 0.9)]


def test_each_picture_gets_the_analytics_of_its_own_pts() -> None:
    state = OverlayState(tolerance_s=0.25)
    for t, x in ((0.2, 180), (0.0, 20), (0.1, 100)):  # out of order on purpose: pts order is what counts
        state.update(detection_at(t, x))
    grey = np.full((240, 320, 3), 128, np.uint8)
    # 0.15 lies between two analysed frames: the box is interpolated half-way; 0.4 only has an earlier one
    for t, x in ((0.0, 20), (0.1, 100), (0.2, 180), (0.15, 140), (0.4, 180)):
        edges = left_edges(state.draw(grey.copy(), "cam", t))
        assert edges and abs(edges[0] - x) <= 1, (t, edges)
    assert state.choose("cam", 0.5).empty  # 0.3 s after the newest analytics: beyond the tolerance
    assert state.choose("cam", -0.1).empty  # before any analysed frame: nothing drawn, never a later one
    assert state.choose("other", 0.1).empty  # other streams' analytics are not mixed in
    assert state.counters()["overlay_exact"] >= 3


def test_pictures_between_analysed_frames_get_boxes_and_joints_interpolated_by_track() -> None:
    """A slow detector on a ``latest`` edge analyses one picture in several: the pictures between two analysed
    frames — even when the earlier one is older than the tolerance — get each track moved along linearly."""
    state = OverlayState(tolerance_s=0.25)
    pose = {"type": "pose", "stream_id": "cam", "time_base": TB}
    for t, x in ((0.0, 20), (0.8, 180)):
        state.update(detection_at(t, x))
        state.update(Analytics(**pose, pts=round(t * 90_000), payload={"width": 320, "height": 240, "poses": [
            {"track_id": 3, "keypoints": [[x, 50, 0.9], None, [x + 10, 60, 0.8]]}]}))
    state.update(Analytics(type="detection", stream_id="cam", pts=round(3.0 * 90_000), time_base=TB, payload={
        "tracks": [{"track_id": 3, "bbox": [300, 40, 310, 120]}], "width": 320, "height": 240}))
    grey = np.full((240, 320, 3), 128, np.uint8)
    for t, x in ((0.2, 60), (0.4, 100), (0.6, 140)):
        edges = left_edges(state.draw(grey.copy(), "cam", t))
        assert edges and abs(edges[0] - x) <= 1, (t, edges)
        chosen = state.choose("cam", t)
        assert chosen.pose is not None
        joints = chosen.pose.payload["poses"][0]["keypoints"]
        assert joints[1] is None and abs(joints[0][0] - x) < 1e-6 and abs(joints[2][0] - x - 10) < 1e-6
    assert state.choose("cam", 1.4).empty  # 0.8 -> 3.0 is too far apart to interpolate, 0.6 s > tolerance
    assert state.counters()["overlay_interpolated"] >= 6


def test_a_track_seen_on_one_side_only_is_drawn_while_that_side_is_nearer() -> None:
    state = OverlayState(tolerance_s=0.05)
    state.update(detection_at(0.0, 20))
    later = detection_at(1.0, 200)
    later.payload["tracks"][0]["track_id"] = 9
    state.update(later)
    grey = np.full((240, 320, 3), 128, np.uint8)
    assert left_edges(state.draw(grey.copy(), "cam", 0.3)) == [20, 50]  # the box of track 3 only
    assert left_edges(state.draw(grey.copy(), "cam", 0.7)) == [200, 230]  # the box of track 9 only


def test_pictures_and_messages_without_pts_fall_back_to_the_newest() -> None:
    state = OverlayState(tolerance_s=0.2)
    state.update(Analytics(type="detection", stream_id="cam", payload={
        "tracks": [{"track_id": 1, "bbox": [50, 40, 80, 120]}], "width": 320, "height": 240}))
    assert not state.choose("cam", None).empty and not state.choose("cam", 3.0).empty
    time.sleep(0.25)
    assert state.choose("cam", None).empty  # older than the tolerance by wall clock


async def make_encoder(**params: Any) -> Encode:
    node = Encode(NodeContext(name="enc"), validate(Encode.Params, params))
    await node.start()
    return node


def grey_frame(t: float) -> VideoFrame:
    return VideoFrame(image=np.full((240, 320, 3), 128, np.uint8), frame_id=round(t * 10), pts=round(t * 90_000),
                      time_base=TB, stream_id="cam")


async def test_encode_holds_pictures_until_their_analytics_arrive() -> None:
    node = await make_encoder(gop=1, overlay=True, overlay_wait_ms=2000)
    assert node.process(grey_frame(0.0)) is None  # held: no analytics yet
    assert node.process(grey_frame(0.1)) is None  # held behind it (order is kept)
    await node.on_analytics(detection_at(0.0, 20))  # releases the first picture only
    counters = node.counters()
    assert counters["overlay_held_now"] == 1 and counters["overlays_drawn"] == 1
    await node.on_analytics(detection_at(0.1, 100))
    counters = node.counters()
    assert counters["overlay_held_now"] == 0 and counters["overlay_exact"] == 2 and counters["overlay_earlier"] == 0
    assert counters["overlay_held"] == 2 and counters["overlay_hold_timeouts"] == 0


async def test_each_stream_waits_for_its_own_analytics_and_an_ended_stream_lets_its_pictures_go() -> None:
    from flowgraph.messages import StreamEnd

    node = await make_encoder(gop=1, overlay=True, overlay_wait_ms=5000, stream_id="{stream}/enc")
    other = grey_frame(0.0)
    other.stream_id = "other"
    assert node.process(grey_frame(0.0)) is None  # cam's picture waits for cam's analytics
    assert node.process(other) is None
    sent: list[Any] = []
    node.packets = _Sink(sent)  # type: ignore[assignment]
    await node.on_analytics(detection_at(0.0, 20, stream="other"))  # other's picture goes; cam's still waits
    assert [p.stream_id for p in sent] == ["other/enc"] and node.counters()["overlay_held_now"] == 1
    await node.end_stream(StreamEnd(stream_id="cam"))  # the ended stream's held picture is sent, not lost
    assert [p.stream_id for p in sent] == ["other/enc", "cam/enc"]
    assert node.counters()["overlay_held_now"] == 0 and node.counters()["streams"] == 1


class _Sink:
    """Stands in for the node's bound output: keeps what the node sends outside its process() return."""

    def __init__(self, into: list[Any]) -> None:
        self.into = into

    async def send(self, item: Any) -> None:
        self.into.append(item)


async def test_a_stalled_analytics_branch_costs_one_deadline_not_one_per_picture() -> None:
    node = await make_encoder(gop=1, overlay=True, overlay_wait_ms=200)
    await node.on_analytics(detection_at(0.0, 20))
    assert node.process(grey_frame(0.1)) is None  # waits for analytics of 0.1 that never come
    await asyncio.sleep(0.25)
    started = time.monotonic()
    for i in range(2, 11):
        node.process(grey_frame(i / 10))
    counters = node.counters()
    assert counters["overlay_hold_timeouts"] == 1 and counters["overlay_held_now"] == 0
    assert time.monotonic() - started < 1.5  # nothing more was held
    assert counters["overlays_drawn"] == 5  # frames 0.1..0.5 are within the 0.5 s tolerance of frame 0.0
    await node.on_analytics(detection_at(1.0, 20))  # the branch is back: pictures are held again
    assert node.process(grey_frame(1.1)) is None


async def test_a_file_run_draws_every_overlay_on_its_own_frame() -> None:
    """ingest (not realtime) -> decode -> vibrio -> fuse -> encode (hold) with block edges: every picture that
    has analytics gets exactly its own, none a neighbour's, and nothing deadlocks while pictures are held."""
    text = """
name: exact
nodes:
  src: {node: ingest, params: {url: "testsrc://", width: 320, height: 240, people: 3, count: 40, realtime: false}}
  dec: {node: decode, inputs: {packets: {from: src/packets, policy: block}}}
  vibrio: {node: vibrio, params: {backend: motion, motion_warmup: 3, min_hits: 1},
           inputs: {frames: {from: dec/frames, policy: block}}}
  fuse: {node: fuse, params: {join: exact}, inputs: {tracks: {from: vibrio/tracks, policy: block}}}
  enc: {node: encode, params: {overlay: true, overlay_wait_ms: 30000, overlay_max_age_s: 0.001},
        inputs: {frames: {from: dec/frames, policy: block}, analytics: {from: fuse/analytics, policy: block}}}
  out: {node: collect, inputs: {inp: {from: enc/packets, policy: block}}}
"""
    rt = await run_to_end(text, timeout=240)
    assert rt.exit_code == 0
    assert len(collected(rt, "out")) == 40
    counters = rt.snapshot()["nodes"]["enc"]["counters"]
    assert counters["overlay_exact"] >= 30 and counters["overlay_earlier"] == 0
    assert counters["overlay_hold_timeouts"] == 0 and counters["overlay_held_now"] == 0
