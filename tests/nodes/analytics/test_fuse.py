"""fuse in running graphs: contract messages (validated against the JSON Schemas), ring buffer, partial results
on a late branch, join policies, opportunities, rules reloaded from a file while the stream runs."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from flowgraph.messages import Analytics
from flowgraph.nodes.analytics.ring import rings
from flowgraph.nodes.analytics.schemas import problems
from flowgraph.testing import collected, run_to_end, running


def graph(src: str, fuse: str = "", extra: str = "") -> str:
    return f"""name: fuse-test
nodes:
  src: {{node: synth_analytics, params: {{{src}}}}}
  fuse:
    node: fuse
    inputs: {{tracks: src/tracks, poses: src/poses}}
    params: {{{fuse}}}
  sink: {{node: collect, inputs: {{inp: fuse/analytics}}}}
{extra}"""


def assert_valid(messages: list[Analytics]) -> None:
    for msg in messages:
        wire = {**msg.to_wire(), "seq": msg.seq}
        assert problems(wire) == [], (wire, problems(wire))


async def test_every_message_matches_its_schema_and_is_numbered(compile_graph: Any) -> None:
    rules = "rules: [{id: sprint, type: high_speed, metric: speed_kmh, above: 20, for_s: 0.2}, " \
            "{id: knee, type: extreme_pose, metric: joint_angles.left_knee, outside: [60, 178]}]"
    rt = await run_to_end(compile_graph(graph("fps: 0, count: 30, speeds_kmh: [12, 26], knee_deg: 50", rules)))
    messages = collected(rt, "sink")
    kinds = Counter(m.type for m in messages)
    assert kinds["detection"] == 30 and kinds["pose"] == 30 and kinds["speed"] == 60
    assert kinds["betting_opportunity"] == 3  # sprint for track 2; knee for tracks 1 and 2
    assert_valid(messages)
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
    detection = next(m for m in messages if m.type == "detection")
    assert detection.payload["width"] == 1280 and detection.payload["height"] == 720
    assert detection.payload["stream_id"] == "cam1" and detection.payload["pts_seconds"] == 0.0
    pose = next(m for m in messages if m.type == "pose")
    assert pose.payload["poses"][0]["keypoints"][3] is None and pose.payload["width"] == 1280
    opportunity = next(m for m in messages if m.type == "betting_opportunity" and m.payload["type"] == "high_speed")
    assert opportunity.payload["track_id"] == 2 and 0.5 <= opportunity.payload["confidence"] <= 1
    ring = rings(rt.scope).get("cam1")
    assert ring.last_seq == len(messages) and ring.since(len(messages) - 3)[0].seq == len(messages) - 2
    counters = rt.snapshot()["nodes"]["fuse"]["counters"]
    assert counters["joined"] == 30 and counters["partial"] == 0 and counters["opportunities"] == 3


async def test_a_late_branch_yields_partial_results_not_a_stall(compile_graph: Any) -> None:
    # poses trail tracks by 6 frames (200 ms at 30 fps); the deadline is 40 ms
    rt = await run_to_end(compile_graph(graph("fps: 30, count: 24, pose_lag: 6", "deadline_ms: 40")))
    messages = collected(rt, "sink")
    detections = [m for m in messages if m.type == "detection"]
    assert len(detections) == 24
    assert sum(m.payload.get("partial", False) for m in detections) >= 12
    late_poses = [m for m in messages if m.type == "pose" and m.payload.get("late")]
    assert len(late_poses) >= 12  # the stragglers still reach clients, marked late
    assert_valid(messages)
    # the partial detections went out within about the deadline, not after the lagging pose
    gaps = [m.payload["timestamp"] - m.payload["t_capture"] for m in detections if m.payload.get("partial")]
    assert sorted(gaps)[len(gaps) // 2] < 0.15
    counters = rt.snapshot()["nodes"]["fuse"]["counters"]
    assert counters["late"] >= 12 and counters["late_emitted"] >= 12


async def test_a_generous_deadline_waits_for_the_lagging_branch(compile_graph: Any) -> None:
    rt = await run_to_end(compile_graph(graph("fps: 30, count: 12, pose_lag: 3", "deadline_ms: 2000")))
    detections = [m for m in collected(rt, "sink") if m.type == "detection"]
    assert len(detections) == 12 and not any(m.payload.get("partial") for m in detections)


async def test_late_parts_can_be_dropped(compile_graph: Any) -> None:
    rt = await run_to_end(compile_graph(graph("fps: 30, count: 12, pose_lag: 4", "deadline_ms: 20, late: drop")))
    messages = collected(rt, "sink")
    assert not any(m.payload.get("late") for m in messages)
    assert rt.snapshot()["nodes"]["fuse"]["counters"]["late_dropped"] > 0


async def test_skipped_poses_settle_at_once(compile_graph: Any) -> None:
    # moriarty behind a `latest` edge skips frames: those frames are partial immediately, not at the deadline
    rt = await run_to_end(compile_graph(graph("fps: 30, count: 15, skip_pose_every: 3", "deadline_ms: 5000")))
    detections = [m for m in collected(rt, "sink") if m.type == "detection"]
    assert [m.frame_id for m in detections] == list(range(15))
    partial = [m.frame_id for m in detections if m.payload.get("partial")]
    assert partial == [2, 5, 8, 11, 14]
    waited = [m.payload["timestamp"] - m.payload["t_capture"] for m in detections if m.frame_id in (2, 5, 8)]
    assert max(waited) < 1.0


async def test_nearest_and_latest_policies_in_a_graph(compile_graph: Any) -> None:
    for policy in ("nearest", "latest"):
        rt = await run_to_end(compile_graph(graph("fps: 0, count: 10", f"join: {policy}, tolerance_ms: 10")))
        messages = collected(rt, "sink")
        assert Counter(m.type for m in messages)["detection"] == 10, policy
        assert_valid(messages)


async def test_only_tracks_connected(compile_graph: Any) -> None:
    text = """name: g
nodes:
  src: {node: synth_analytics, params: {fps: 0, count: 5}}
  fuse: {node: fuse, inputs: {tracks: src/tracks}, params: {emit: [detection, betting_opportunity]}}
  sink: {node: collect, inputs: {inp: fuse/analytics}}
"""
    rt = await run_to_end(compile_graph(text))
    messages = collected(rt, "sink")
    assert [m.type for m in messages] == ["detection"] * 5 and not any(m.partial for m in messages)


async def test_extra_analytics_are_forwarded_and_buffered(compile_graph: Any) -> None:
    text = """name: g
nodes:
  tick: {node: analytics_ticker, params: {hz: 0, count: 7}}
  fuse: {node: fuse, inputs: {extra: tick/out}}
  sink: {node: collect, inputs: {inp: fuse/analytics}}
"""
    rt = await run_to_end(compile_graph(text))
    messages = collected(rt, "sink")
    assert [m.seq for m in messages] == list(range(1, 8))
    assert_valid(messages)


async def test_rules_file_is_reloaded_while_the_stream_runs(tmp_path: Path, compile_graph: Any,
                                                            eventually: Any) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {id: sprint, metric: speed_kmh, above: 100}\n")
    text = graph("fps: 60, count: 0, speeds_kmh: [30]", f"rules_file: {rules}, reload_s: 0.05")
    async with running(compile_graph(text)) as rt:
        fuse = rt.runners["fuse"].node
        await asyncio.sleep(0.3)
        sink = rt.runners["sink"].node
        assert not [m for m in sink.received if m.type == "betting_opportunity"]
        rules.write_text("- {id: sprint, type: high_speed, metric: speed_kmh, above: 20, for_s: 0.1}\n")
        assert await eventually(lambda: [m for m in sink.received if m.type == "betting_opportunity"])
        assert fuse.book.default_origin == "file"
        rules.write_text("- {id: broken, metric: speed_kmh}\n")  # no condition: refused, old rules stay
        assert await eventually(lambda: fuse.rules_errors > 0)
        assert fuse.rules_errors == 1 and "no condition" in (fuse.rules_error or "")
        assert [r.id for r in fuse.book.default] == ["sprint"]
    frames = [m.frame_id for m in collected(rt, "sink") if m.type == "detection"]
    assert frames == list(range(len(frames))) and len(frames) > 20  # the stream never paused or skipped


async def test_rules_still_see_parts_that_arrive_late(compile_graph: Any) -> None:
    # every pose misses its frame's deadline; the knee rule must fire from the late poses anyway
    rules = "rules: [{id: knee, type: extreme_pose, metric: joint_angles.left_knee, below: 90}]"
    rt = await run_to_end(compile_graph(graph("fps: 30, count: 20, pose_lag: 5, knee_deg: 45",
                                              f"deadline_ms: 20, {rules}")))
    messages = collected(rt, "sink")
    fired = [m for m in messages if m.type == "betting_opportunity"]
    assert [m.payload["track_id"] for m in fired] == [1] and fired[0].payload["type"] == "extreme_pose"
    assert_valid(messages)
