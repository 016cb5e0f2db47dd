"""Several streams in one batched call (``Vibrio.process_batch``, which the runtime calls with the newest frame of
each stream): one ``detect_many`` per batch on ``blazepose``, per-stream state kept apart, and the same answers as
one frame at a time."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from flowgraph.messages import VideoFrame
from flowgraph.nodes.synth import Scene, SceneConfig
from flowgraph.nodes.vibrio.messages import Tracks
from flowgraph.nodes.vibrio.node import Vibrio

from .synth_eval import make_node

STEPS = 10
LATE = 4  # stream "late" joins at this step, with the same pictures "a" had from its start
TB = Fraction(1, 30)
#: Pixels two runs' boxes may differ by (the model sees the same crops in batches of other sizes).
BOX_TOLERANCE_PX = 2.0


class Spy:
    """Counts the detector's calls, and the pictures each ``detect_many`` got (blazepose's ``detect`` is its
    ``detect_many`` of one picture, so a single call shows in both)."""

    def __init__(self, node: Vibrio) -> None:
        detector: Any = node.detector
        self.many: list[int] = []
        self.single = 0
        detect_many, detect = detector.detect_many, detector.detect

        def counted_many(items: list[Any]) -> Any:
            self.many.append(len(items))
            return detect_many(items)

        def counted_single(image: Any, key: str = "default") -> Any:
            self.single += 1
            return detect(image, key)

        detector.detect_many, detector.detect = counted_many, counted_single


@pytest.fixture(scope="module")
def pictures() -> dict[str, list[np.ndarray]]:
    """Three streams at 640×360: two scenes with people (seeds 1, 2) and an empty field."""
    scenes = {"a": Scene(SceneConfig(width=640, height=360, people=2, seed=1)),
              "b": Scene(SceneConfig(width=640, height=360, people=3, seed=2)),
              "empty": Scene(SceneConfig(width=640, height=360, people=0, seed=3))}
    return {name: [scene.render(i)[0] for i in range(STEPS)] for name, scene in scenes.items()}


def frames_at(step: int, pictures: dict[str, list[np.ndarray]]) -> list[VideoFrame]:
    """Each stream's frame of one step; "late" shows "a"'s pictures from its own start."""
    frames = [VideoFrame(image=pictures[s][step], stream_id=s, frame_id=step, pts=step, time_base=TB)
              for s in ("a", "b", "empty")]
    if step >= LATE:
        frames.append(VideoFrame(image=pictures["a"][step - LATE], stream_id="late", frame_id=step - LATE,
                                 pts=step - LATE, time_base=TB))
    return frames


def boxes(out: Tracks) -> np.ndarray:
    return np.array([t.bbox for t in out.tracks], np.float32).reshape(-1, 4)


@pytest.mark.timeout(900)
def test_streams_batched_match_one_at_a_time_with_state_kept_apart(pictures: dict[str, list[np.ndarray]]) -> None:
    params = {"backend": "blazepose", "threads": 1}
    batched, single = make_node(params), make_node(params)
    spy_batched, spy_single = Spy(batched), Spy(single)
    try:
        answers: dict[str, list[tuple[Tracks, Tracks]]] = {}
        for step in range(STEPS):
            frames = frames_at(step, pictures)
            called = time.perf_counter()
            together = batched.process_batch(frames)
            call_ms = (time.perf_counter() - called) * 1000
            # each frame's process_ms is its share of the call, not the time since the call began
            assert all(o.process_ms > 0 for o in together) and sum(o.process_ms for o in together) <= call_ms + 0.5
            apart = [single.process(frame) for frame in frames]
            assert [(o.stream_id, o.frame_id) for o in together] == [(f.stream_id, f.frame_id) for f in frames]
            assert all(o.frame is f for o, f in zip(together, frames, strict=True)), "each answer names its frame"
            for frame, one, other in zip(frames, together, apart, strict=True):
                answers.setdefault(frame.stream_id, []).append((one, other))
    finally:
        asyncio.run(batched.stop())
        asyncio.run(single.stop())

    # one batched detector call per batch, nothing one by one; one at a time never batches
    assert spy_batched.many == [3] * LATE + [4] * (STEPS - LATE) and spy_batched.single == 0
    assert spy_single.single == 3 * STEPS + STEPS - LATE  # (blazepose's detect is detect_many of one picture)

    # the same answers as one frame at a time: the same track ids, boxes within a pixel or two
    for stream, pairs in answers.items():
        for step, (one, other) in enumerate(pairs):
            assert [t.track_id for t in one.tracks] == [t.track_id for t in other.tracks], (stream, step)
            assert np.allclose(boxes(one), boxes(other), atol=BOX_TOLERANCE_PX), (stream, step)
            assert len(one.detections) == len(other.detections), (stream, step)

    # state per stream: people were tracked; the empty field stays empty; a stream that joins late starts its
    # own tracker — its ids do not continue a's — and, seeing a's pictures, gets a's answers step for step
    assert max(len(one.tracks) for one, _ in answers["a"]) >= 1 and max(len(one.tracks) for one, _ in answers["b"]) >= 1
    assert all(not one.tracks for one, _ in answers["empty"])
    late = [one for one, _ in answers["late"]]
    early = [one for one, _ in answers["a"][: len(late)]]
    assert any(out.tracks for out in late)
    for step, (mine, theirs) in enumerate(zip(late, early, strict=True)):
        assert [t.track_id for t in mine.tracks] == [t.track_id for t in theirs.tracks], step
        assert np.allclose(boxes(mine), boxes(theirs), atol=BOX_TOLERANCE_PX), step
    counters = batched.counters()
    assert counters["streams"] == 4 and counters["analysed"] == 3 * STEPS + STEPS - LATE


def test_two_frames_of_one_stream_in_a_batch_are_detected_in_order(pictures: dict[str, list[np.ndarray]]) -> None:
    """A ``block`` edge can queue two frames of one stream: they go to the detector one after the other, so its
    per-stream memory sees them as one at a time would."""
    node = make_node({"backend": "blazepose", "threads": 1})
    spy = Spy(node)
    try:
        frames = [VideoFrame(image=pictures["a"][i], stream_id="a", frame_id=i, pts=i, time_base=TB) for i in (0, 1)]
        frames.insert(1, VideoFrame(image=pictures["b"][0], stream_id="b", frame_id=0, pts=0, time_base=TB))
        out = node.process_batch(frames)  # a0, b0, a1
    finally:
        asyncio.run(node.stop())
    assert [(o.stream_id, o.frame_id) for o in out] == [("a", 0), ("b", 0), ("a", 1)]
    assert spy.many[0] == 2 and spy.single == 1, "a0 and b0 together, then a1 after them"


async def test_vibrio_in_its_worker_process_gets_several_streams_per_call() -> None:
    """Through the runtime: three streams on ``latest`` edges into vibrio in its own process (``isolation: auto``)
    arrive there as batches, and every answer comes back with the graph's own frame of its own stream."""
    from flowgraph.testing import collected, running

    sources = "\n".join(f"  cam{i}: {{node: frames, params: {{width: 320, height: 180, fps: 100, "
                        f"stream_id: cam{i}}}}}" for i in range(3))
    wires = ", ".join(f"{{from: cam{i}/frames, policy: latest}}" for i in range(3))
    async with running(f"""
nodes:
{sources}
  vibrio: {{node: vibrio, max_batch: 4, params: {{backend: blazepose, threads: 1}}, inputs: {{frames: [{wires}]}}}}
  out: {{node: collect, inputs: {{inp: vibrio/tracks}}}}
""", ready_timeout=180) as rt:
        assert rt.plan.nodes["vibrio"].mode == "process" and rt.plan.nodes["vibrio"].max_batch == 4
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if rt.runners["vibrio"].stats.processed >= 30:
                break
            await asyncio.sleep(0.1)
        node = rt.snapshot()["nodes"]["vibrio"]
        assert node["processed"] >= 30 and node["errors"] == 0
        sizes = {int(k) for k in node["batch"]["sizes"]}
        assert max(sizes) > 1, f"streams shared calls: {node['batch']}"
        assert node["counters"]["streams"] == 3, "the worker's node keeps one state per stream"
        got = collected(rt, "out")
        for out in got:
            assert out.stream_id == out.frame.stream_id
            buffers = rt.runners[out.stream_id].node._buffers  # type: ignore[attr-defined]
            assert any(out.frame.image is b for b in buffers), "the graph's own frame comes back"
        for i in range(3):
            ids = [out.frame_id for out in got if out.stream_id == f"cam{i}"]
            assert ids and ids == sorted(ids), f"cam{i} in order"
