"""The moriarty node: top-down on tracks, whole-frame mode, metrics end to end, bad input, state bounds, graphs."""

from __future__ import annotations

import asyncio
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from skimage import data

from flowgraph.messages import VideoFrame
from flowgraph.node import NodeContext
from flowgraph.nodes.moriarty.messages import Poses
from flowgraph.nodes.moriarty.node import Moriarty
from flowgraph.nodes.vibrio.messages import Track, Tracks
from flowgraph.testing import collected, compile_text, running
from tests.nodes.moriarty.conftest import draw_dots

TB = Fraction(1, 90000)


async def make(**params: Any) -> Moriarty:
    node = Moriarty(NodeContext(name="pose"), Moriarty.Params(**params))
    await node.start()  # outside a graph, offload runs inline
    return node


def tracks_msg(image: Any, boxes: list[tuple[float, float, float, float]], frame_id: int = 0, fps: float = 30.0,
               stream: str = "cam1", world: list[tuple[float, float]] | None = None) -> Tracks:
    pts = round(frame_id / fps * 90000)
    frame = VideoFrame(image=image, stream_id=stream, frame_id=frame_id, pts=pts, time_base=TB)
    tracks = [Track(track_id=i + 1, bbox=b, foot_world=None if world is None else world[i])
              for i, b in enumerate(boxes)]
    return Tracks(tracks=tracks, frame=frame).like(frame)


def render(people: list[Any], t: float) -> tuple[np.ndarray, list[np.ndarray], list[tuple[float, ...]]]:
    image = np.zeros((720, 1280, 3), np.uint8)
    truth, boxes = [], []
    for g in people:
        k = g.keypoints(t, "coco17")
        draw_dots(image, k)
        truth.append(k)
        boxes.append(g.bbox(t))
    return image, truth, boxes


def runners(gait: Any) -> list[Any]:
    """A jogger (top) and a walker (bottom) who stay in a fixed 1280x720 view for 5 s."""
    return [gait(origin=(40.0, 330.0), px_per_m=110, depth_px=(12.0, -6.0), cadence_spm=160, speed_mps=2.0),
            gait(origin=(80.0, 690.0), px_per_m=150, depth_px=(16.0, -8.0), phase0=0.4, cadence_spm=110,
                 speed_mps=1.3, duty=0.62, lift_m=0.2, elbow_deg=150, lean_deg=2)]


async def test_every_track_gets_its_pose(colour_models: dict[str, Path], gait: Any) -> None:
    node = await make(backend="onnx", model=str(colour_models["onnx-heatmap"]))
    people = runners(gait)
    image, truth, boxes = render(people, 0.3)
    msg = tracks_msg(image, boxes, frame_id=9)  # type: ignore[arg-type]
    out = node.process(msg)
    assert isinstance(out, Poses) and out.frame_id == 9 and out.stream_id == "cam1" and out.pts == msg.pts
    assert [p.track_id for p in out.poses] == [2, 1] or [p.track_id for p in out.poses] == [1, 2]
    for pose in out.poses:
        k = truth[pose.track_id - 1]  # type: ignore[operator]
        got = np.array([(np.nan, np.nan) if p is None else p[:2] for p in pose.keypoints])
        assert np.nanmedian(np.hypot(*(got - k[:, :2]).T)) < 2.0
        assert pose.skeleton == "coco17" and pose.bbox == pytest.approx(boxes[pose.track_id - 1])  # type: ignore[operator]
        assert set(pose.joint_angles) >= {"left_knee", "right_elbow", "trunk_lean"}
    assert out.process_ms > 0
    json.dumps([p.to_dict() for p in out.poses])  # wire-ready, None keypoints included


@pytest.mark.parametrize("runtime", ["torchscript", "onnx"])
async def test_several_streams_share_one_model_call(colour_models: dict[str, Path], gait: Any, runtime: str) -> None:
    """``process_batch`` (what the runtime calls with the newest Tracks of each stream): every stream's crops go
    through the model in one call, and the answers are those of one stream at a time."""
    import time

    params = {"backend": runtime, "model": str(colour_models[f"{runtime}-heatmap"]), "input_size": [256, 192]}
    batched, single = await make(**params), await make(**params)
    calls = {"batched": 0, "single": 0}
    for name, node in (("batched", batched), ("single", single)):
        backend: Any = node._backend
        forward = backend._forward

        def counted(batch: Any, name: str = name, forward: Any = forward) -> Any:
            calls[name] += 1
            return forward(batch)

        backend._forward = counted
    cam1, cam2 = runners(gait), [gait(origin=(300.0, 600.0), px_per_m=140, depth_px=(14.0, -7.0), phase0=0.2)]
    for step in range(5):
        t = 0.2 + 0.1 * step
        msgs = []
        for stream, people in (("cam1", cam1), ("cam2", cam2)):
            image, _, boxes = render(people, t)
            msgs.append(tracks_msg(image, boxes, frame_id=step, stream=stream))  # type: ignore[arg-type]
        called = time.perf_counter()
        together = batched.process_batch(msgs)
        call_ms = (time.perf_counter() - called) * 1000
        apart = [single.process(m) for m in msgs]
        assert calls["batched"] == step + 1 and calls["single"] == 2 * (step + 1), "one model call per batch"
        assert sum(out.process_ms for out in together) <= call_ms + 0.5  # type: ignore[union-attr]
        for one, other, msg in zip(together, apart, msgs, strict=True):
            assert isinstance(one, Poses) and isinstance(other, Poses)
            assert (one.stream_id, one.frame_id) == (msg.stream_id, msg.frame_id)
            assert [p.track_id for p in one.poses] == [p.track_id for p in other.poses] and one.poses
            for a, b in zip(one.poses, other.poses, strict=True):
                got = np.array([(np.nan, np.nan) if p is None else p[:2] for p in a.keypoints], float)
                want = np.array([(np.nan, np.nan) if p is None else p[:2] for p in b.keypoints], float)
                assert np.allclose(got, want, atol=0.05, equal_nan=True)
                assert a.joint_angles == pytest.approx(b.joint_angles, abs=0.05, nan_ok=True)
    assert batched.counters()["poses"] == single.counters()["poses"] == 15  # 3 people x 5 steps


async def test_biomechanics_end_to_end_through_the_model(colour_models: dict[str, Path], gait: Any) -> None:
    """Rendered runner and walker -> real top-down inference -> angles within 3 deg, cadence within 2 %."""
    node = await make(backend="onnx", model=str(colour_models["onnx-heatmap"]), body_mass_kg=70.0)
    people = runners(gait)
    fps = 30.0
    angle_errors: dict[int | None, list[float]] = {1: [], 2: []}
    last: Poses | None = None
    for i in range(int(5 * fps)):
        t = i / fps
        image, _, boxes = render(people, t)
        world = [g.foot_world(t) for g in people]
        last = node.process(tracks_msg(image, boxes, frame_id=i, world=world))  # type: ignore[arg-type]
        assert last is not None and len(last.poses) == 2
        if i < 10:
            continue
        for pose in last.poses:
            truth = people[pose.track_id - 1].truth_angles(t)  # type: ignore[operator]
            angle_errors[pose.track_id] += [abs(pose.joint_angles[k] - v) for k, v in truth.items()
                                            if pose.joint_angles[k] is not None]
    assert last is not None
    report = {}
    for pose in last.poses:
        g = people[pose.track_id - 1]  # type: ignore[operator]
        m = pose.metrics
        report[pose.track_id] = {"angle_err_deg": round(float(np.mean(angle_errors[pose.track_id])), 2),
                                 "cadence": (m["cadence_spm"], g.cadence_spm),
                                 "stride_m": (m["stride_length_m"], round(g.stride_m, 3)),
                                 "contact_s": (m["contact_time_s"], round(g.contact_time_s(), 3)),
                                 "grf_bw": m["grf_bw"]}
        assert np.mean(angle_errors[pose.track_id]) <= 3.0, report
        assert abs(m["cadence_spm"] - g.cadence_spm) / g.cadence_spm <= 0.02, report
        assert abs(m["stride_length_m"] - g.stride_m) / g.stride_m <= 0.03, report
        assert m["grf_n"] is not None and 0 <= m["grf_bw"] < 4
        assert m["centre_of_mass"] is not None
    print("end to end through the ONNX colour model:", report)


async def test_bad_frames_give_empty_answers(colour_models: dict[str, Path]) -> None:
    node = await make(backend="onnx", model=str(colour_models["onnx-heatmap"]))
    box = [(100.0, 100.0, 300.0, 500.0)]
    cases = {
        "black": np.zeros((720, 1280, 3), np.uint8),
        "tiny": np.zeros((16, 16, 3), np.uint8),
        "float": np.zeros((720, 1280, 3), np.float32),
        "channels": np.zeros((720, 1280, 5), np.uint8),
        "not an array": "frame.jpg",
        "none": None,
    }
    for name, image in cases.items():
        out = node.process(tracks_msg(image, box))
        assert isinstance(out, Poses) and out.poses == [], name
    counts = node.counters()
    assert counts["bad_frames"] == 4 and counts["no_frame"] == 1 and counts["no_person"] == 1
    assert "dtype" in counts["last_bad_frame"] or "frame" in counts["last_bad_frame"]
    grey = node.process(tracks_msg(np.zeros((720, 1280), np.uint8), box))  # greyscale is converted, not refused
    assert grey is not None and grey.poses == [] and node.counters()["bad_frames"] == 4


async def test_track_boxes_are_checked_and_capped(colour_models: dict[str, Path], gait: Any) -> None:
    node = await make(backend="onnx", model=str(colour_models["onnx-heatmap"]), max_people=1)
    image, _, boxes = render(runners(gait), 0.3)
    odd = [boxes[0], boxes[1], (5.0, 5.0, 9.0, 9.0), (float("nan"), 0.0, 10.0, 10.0), (2000.0, 0.0, 2100.0, 300.0)]
    out = node.process(tracks_msg(image, odd))  # type: ignore[arg-type]
    assert out is not None and len(out.poses) == 1
    assert out.poses[0].track_id == 2  # the larger of the two real boxes
    counts = node.counters()
    assert counts["skipped_small"] == 3 and counts["skipped_over_max"] == 1


async def test_state_is_bounded_and_stale_people_forgotten(colour_models: dict[str, Path], gait: Any) -> None:
    node = await make(backend="onnx", model=str(colour_models["onnx-heatmap"]), max_tracks=1)
    image, _, boxes = render(runners(gait), 0.3)
    node.process(tracks_msg(image, boxes))  # type: ignore[arg-type]
    assert node.counters()["people_kept"] == 1 and node.counters()["evicted"] == 1
    node2 = await make(backend="onnx", model=str(colour_models["onnx-heatmap"]), stale_s=0.01)
    node2.process(tracks_msg(image, boxes))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)  # wall-clock staleness
    node2.process(tracks_msg(np.zeros((720, 1280, 3), np.uint8), [], frame_id=1))
    assert node2.counters()["people_kept"] == 0 and node2.counters()["evicted"] == 2


async def test_whole_frame_mode_and_frames_ignored_once_tracks_arrive() -> None:
    node = await make(backend="mediapipe", body_mass_kg=60.0)
    astronaut = data.astronaut()
    frame = VideoFrame(image=astronaut, stream_id="s", frame_id=1, pts=0, time_base=TB)
    out = node.process(frame)
    assert out is not None and len(out.poses) == 1
    pose = out.poses[0]
    assert pose.track_id is None and pose.skeleton == "blazepose33" and len(pose.keypoints) == 33
    assert pose.keypoints[0] is not None  # the nose is seen
    assert pose.keypoints[27] is None  # the left ankle is outside the picture: gated, not guessed
    assert pose.bbox is not None and pose.bbox[3] <= 512
    tracked = node.process(tracks_msg(astronaut, [(20.0, 10.0, 380.0, 512.0)], stream="s"))
    assert tracked is not None and [p.track_id for p in tracked.poses] == [1]
    assert node.process(frame) is None and node.counters()["frames_ignored"] == 1
    await node.stop()


GRAPH = """
name: pose-test
nodes:
  src:
    node: frames
    params: {width: 320, height: 240, fps: 0, count: 5}
  pose:
    node: moriarty
    params: {backend: mediapipe}
    inputs: {frames: {from: src/frames, policy: block}}
  sink:
    node: collect
    inputs: {inp: pose/poses}
"""


async def test_in_a_graph() -> None:
    async with running(GRAPH) as rt:
        for _ in range(200):
            if len(collected(rt, "sink")) == 5:
                break
            await asyncio.sleep(0.05)
        got = collected(rt, "sink")
        snapshot = rt.snapshot()
    assert [m.frame_id for m in got] == [0, 1, 2, 3, 4]
    assert all(isinstance(m, Poses) and m.poses == [] and m.process_ms > 0 for m in got)  # flat grey: nobody
    counters = snapshot["nodes"]["pose"]["counters"]
    assert counters["frames"] == 5 and counters["no_person"] == 5
    # the queued frames reached the worker process together (process_batch), answers still in order
    pose = snapshot["nodes"]["pose"]
    assert pose["mode"] == "process" and max(map(int, pose["batch"]["sizes"])) > 1, pose["batch"]


def test_params_are_validated() -> None:
    from flowgraph.errors import GraphError, GraphErrors

    with pytest.raises((GraphError, GraphErrors), match="backend"):
        compile_text(GRAPH.replace("{backend: mediapipe}", "{backend: openpose}"))
    with pytest.raises((GraphError, GraphErrors), match="min_score"):
        compile_text(GRAPH.replace("{backend: mediapipe}", "{min_score: 2}"))


async def test_missing_model_fails_at_start(tmp_path: Path) -> None:
    node = Moriarty(NodeContext(name="pose"), Moriarty.Params(backend="onnx", model=str(tmp_path / "nope.onnx")))
    with pytest.raises(FileNotFoundError, match=r"nope\.onnx"):
        await node.start()
