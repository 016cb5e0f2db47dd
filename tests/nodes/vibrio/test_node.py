"""The vibrio node: in a graph, on bad frames, with several streams, and what it reports."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowgraph.errors import GraphError
from flowgraph.messages import VideoFrame
from flowgraph.nodes.synth import Scene, SceneConfig
from flowgraph.nodes.vibrio.messages import Tracks
from flowgraph.testing import collected, compile_text, running

from .synth_eval import make_node

GRAPH = """
name: vibrio-test
nodes:
  src:
    node: frames
    params: {width: 320, height: 240, fps: 60, count: 40, stream_id: cam}
  vibrio:
    node: vibrio
    params: {backend: motion, motion_warmup: 3}
    inputs:
      frames: {from: src/frames, policy: latest}
  sink:
    node: collect
    inputs: {inp: {from: vibrio/tracks, policy: block}}
"""


async def test_vibrio_in_a_graph_answers_every_analysed_frame() -> None:
    plan = compile_text(GRAPH)
    edge = next(e for e in plan.edges if e.target == "vibrio")
    assert edge.policy == "latest"
    async with running(plan) as rt:
        for _ in range(200):
            if rt.runners["src"].stats.state == "finished" and len(collected(rt, "sink")) > 0:
                break
            await rt.runners["src"].node.wait_stopping(0.05)
        received = collected(rt, "sink")
        registry = rt.scope.streams.get("cam")
    assert received and all(isinstance(m, Tracks) for m in received)
    assert all(m.stream_id == "cam" and m.frame is not None and m.frame.frame_id == m.frame_id for m in received)
    assert [m.frame_id for m in received] == sorted(m.frame_id for m in received)
    assert all(m.process_ms > 0 and m.tracks == [] for m in received)  # uniform frames: nobody moves
    assert registry is not None and registry["vibrio"]["backend"] == "motion"


def test_graph_rejects_bad_params() -> None:
    bad = GRAPH.replace("{backend: motion, motion_warmup: 3}", "{backend: yolo}")
    with pytest.raises(GraphError, match=r"graph.yaml:9:.*backend"):
        compile_text(bad)
    bad = GRAPH.replace("{backend: motion, motion_warmup: 3}", "{calibration: [{image: [1, 2]}]}")
    with pytest.raises(GraphError, match=r"graph.yaml:9:\d+: .*missing required param 'world'"):
        compile_text(bad)


def test_unusable_calibration_fails_at_start() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        make_node({"calibration": [{"image": [0, 0], "world": [0, 0]}]})


@pytest.mark.parametrize("image", [
    np.zeros((1, 1, 3), np.uint8),                  # 1×1
    np.zeros((240, 320, 3), np.float32),            # wrong dtype
    np.zeros((240, 320), np.uint8),                 # grey, no channels
    np.zeros((240, 320, 4), np.uint8),              # RGBA
    torch.zeros(3, 240, 320),                       # float tensor
    None,
], ids=["1x1", "float32", "2d", "rgba", "float-tensor", "none"])
@pytest.mark.parametrize("backend", ["hog", "motion"])
def test_bad_frames_give_empty_results(backend: str, image: object) -> None:
    node = make_node({"backend": backend})
    frame = VideoFrame(image=image, frame_id=7, stream_id="s")
    result = node.process(frame)
    assert result.frame is frame and result.frame_id == 7 and result.stream_id == "s"
    assert result.detections == [] and result.tracks == []
    assert node.counters()["bad_frames"] == 1
    # ... and the node carries on with good frames afterwards.
    good = node.process(VideoFrame(image=np.zeros((240, 320, 3), np.uint8), frame_id=8, stream_id="s"))
    assert good.detections == [] and node.counters()["analysed"] == 1


def test_black_frames_are_analysed_and_empty() -> None:
    node = make_node({"backend": "motion", "motion_warmup": 2})
    for i in range(6):
        result = node.process(VideoFrame(image=np.zeros((360, 640, 3), np.uint8), frame_id=i, pts=i,
                                         t_capture=i / 30))
        assert result.detections == [] and result.tracks == []
    assert node.counters()["analysed"] == 6 and node.counters()["bad_frames"] == 0


def scene_frames(seed: int, count: int, people: int = 2) -> tuple[Scene, list]:
    scene = Scene(SceneConfig(width=640, height=360, people=people, seed=seed))
    return scene, [scene.render(i) for i in range(count)]


def test_streams_are_tracked_apart_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flowgraph.nodes.vibrio.node.REPORT_EVERY_S", 0.0)  # report every frame
    scene_a, frames_a = scene_frames(1, 45)
    _, frames_b = scene_frames(5, 45, people=3)
    node = make_node({"backend": "motion", "calibration": scene_a.calibration})
    last: dict[str, Tracks] = {}
    for i in range(45):
        for stream, frames in (("a", frames_a), ("b", frames_b)):
            if stream == "b" and i % 2:  # stream b arrives at half rate, as a 'latest' edge behind a slow node
                continue
            image, _ = frames[i]
            last[stream] = node.process(VideoFrame(image=image, frame_id=i, pts=i, t_capture=i / 30,
                                                   stream_id=stream))
    assert set(node.states) == {"a", "b"}
    assert node.states["a"].tracker is not node.states["b"].tracker
    truth_a = {p.person_id for p in frames_a[-1][1].people if p.visible_fraction > 0.8}
    assert len(last["a"].tracks) == len(truth_a)
    assert min(t.track_id for t in last["b"].tracks) == 1  # ids count per stream
    registry = node.ctx.streams
    report_b = registry.get("b")
    assert report_b is not None
    b = report_b["vibrio"]
    assert b["skipped"] > 0 and b["calibrated"] is True
    assert b["stream_fps"] == pytest.approx(30, rel=0.05) and b["analysed_fps"] == pytest.approx(15, rel=0.05)
    assert node.counters()["skipped_frames"] == b["skipped"]


def test_tracks_carry_ground_position_and_speed() -> None:
    scene, frames = scene_frames(1, 75)
    node = make_node({"backend": "motion", "calibration": scene.calibration})
    results = [node.process(VideoFrame(image=img, frame_id=i, pts=i, t_capture=i / 30))
               for i, (img, _) in enumerate(frames)]
    final = results[-1]
    assert final.calibrated and final.tracks
    for track in final.tracks:
        assert track.foot_world is not None and track.foot_px is not None
        x1, y1, x2, y2 = track.bbox
        assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360
        assert track.speed_mps is not None and track.age > 30 and 0 < track.confidence <= 1
        assert track.to_dict()["speed_kmh"] == pytest.approx(track.speed_mps * 3.6, abs=0.01)


def test_uncalibrated_speeds_are_flagged_lower_confidence() -> None:
    _, frames = scene_frames(1, 75)
    node = make_node({"backend": "motion"})
    results = [node.process(VideoFrame(image=img, frame_id=i, pts=i, t_capture=i / 30))
               for i, (img, _) in enumerate(frames)]
    assert not results[-1].calibrated
    speeds = [t for r in results for t in r.tracks if t.speed_mps is not None]
    assert speeds and all(t.foot_world is None and t.confidence <= 0.4 for t in speeds)


def test_a_clock_jump_backwards_starts_the_stream_afresh() -> None:
    _, frames = scene_frames(1, 40)
    node = make_node({"backend": "motion"})
    for i, (img, _) in enumerate(frames):
        node.process(VideoFrame(image=img, frame_id=i, pts=i, t_capture=100 + i / 30))
    first = node.states["default"]
    assert first.tracker.next_id > 1
    node.process(VideoFrame(image=frames[0][0], frame_id=0, t_capture=5.0))  # source restarted
    assert node.states["default"] is not first and node.states["default"].tracker.next_id == 1


def test_least_recently_seen_stream_is_forgotten() -> None:
    node = make_node({"backend": "motion", "max_streams": 2})
    black = np.zeros((120, 160, 3), np.uint8)
    for stream in ("a", "b", "c"):
        node.process(VideoFrame(image=black, stream_id=stream))
    assert list(node.states) == ["b", "c"] and node.counters()["streams_forgotten"] == 1
