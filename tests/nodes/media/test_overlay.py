"""Overlays on their own frame: each picture gets the analytics of its pts, and may be held until they arrive."""

from __future__ import annotations

import asyncio
import threading
import time
from fractions import Fraction
from typing import Any

import numpy as np

from flowgraph.messages import Analytics, VideoFrame
from flowgraph.node import NodeContext
from flowgraph.nodes.media.encode import Encode
from flowgraph.nodes.media.overlay import OverlayState
from flowgraph.params import validate

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
    for t, x in ((0.0, 20), (0.1, 100), (0.2, 180), (0.15, 100), (0.4, 180)):
        edges = left_edges(state.draw(grey.copy(), "cam", t))
        assert edges and abs(edges[0] - x) <= 1, (t, edges)
    assert state.choose("cam", 0.5).empty  # 0.3 s after the newest analytics: beyond the tolerance
    assert state.choose("cam", -0.1).empty  # before any analysed frame: nothing drawn, never a later one
    assert state.choose("other", 0.1).empty  # other streams' analytics are not mixed in
    assert state.counters()["overlay_exact"] >= 3


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


async def test_encode_holds_a_picture_until_its_analytics_arrive() -> None:
    node = await make_encoder(gop=1, overlay=True, overlay_wait_ms=2000)
    node.process(grey_frame(0.0))  # no analytics at all yet: held until the deadline
    counters = node.counters()
    assert counters["overlay_hold_timeouts"] == 1 and counters["overlay_hold_ms_max"] >= 1900
    await node.on_analytics(detection_at(0.0, 20))  # the branch is alive again: pictures are held again
    done = threading.Event()

    def encode_next() -> None:
        node.process(grey_frame(0.1))
        done.set()

    worker = threading.Thread(target=encode_next)
    started = time.monotonic()
    worker.start()
    await asyncio.sleep(0.3)
    assert not done.is_set()  # analytics of an earlier frame do not release a later picture
    await node.on_analytics(detection_at(0.1, 100))
    assert done.wait(5)
    worker.join()
    held = time.monotonic() - started
    counters = node.counters()
    assert 0.3 <= held < 2 and counters["overlay_held"] == 2 and counters["overlay_hold_timeouts"] == 1
    assert counters["overlay_exact"] == 1 and counters["overlays_drawn"] == 1


async def test_a_stalled_analytics_branch_costs_one_deadline_not_one_per_picture() -> None:
    node = await make_encoder(gop=1, overlay=True, overlay_wait_ms=200)
    await node.on_analytics(detection_at(0.0, 20))
    started = time.monotonic()
    for i in range(1, 11):
        node.process(grey_frame(i / 10))
    elapsed = time.monotonic() - started
    counters = node.counters()
    assert counters["overlay_hold_timeouts"] == 1 and elapsed < 10 * 0.2
    assert counters["overlays_drawn"] == 5  # frames 0.1..0.5 are within the 0.5 s tolerance of frame 0.0
