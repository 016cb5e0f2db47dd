"""RuleEngine: sustain time, cool-down, one firing per episode, re-arming, gaps, trailing-window changes,
pose metrics, stream metrics, confidence, and swapping rules without losing state."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from flowgraph.nodes.analytics.join import Joined
from flowgraph.nodes.analytics.rule_engine import RuleBook, RuleEngine, confidence
from flowgraph.nodes.analytics.rules import parse_rules
from flowgraph.nodes.moriarty.messages import Pose, Poses
from flowgraph.nodes.vibrio.messages import Track, Tracks

FPS = 10
TB = Fraction(1, 1000)


def frame(n: int, speeds_kmh: dict[int, float | None], *, knee: float | None = None, stream: str = "s",
          track_conf: float = 0.9) -> Joined:
    pts = int(n * 1000 / FPS)
    tracks = Tracks(stream_id=stream, frame_id=n, pts=pts, time_base=TB, tracks=[
        Track(track_id=tid, bbox=(0, 0, 1, 1), speed_mps=None if v is None else v / 3.6, confidence=track_conf)
        for tid, v in speeds_kmh.items()])
    parts: dict[str, Any] = {"tracks": tracks}
    if knee is not None:
        parts["poses"] = Poses(stream_id=stream, frame_id=n, pts=pts, time_base=TB, poses=[
            Pose(track_id=tid, keypoints=[], joint_angles={"left_knee": knee}) for tid in speeds_kmh])
    return Joined(stream, tracks, parts, False)


def engine(*rules: dict[str, Any]) -> RuleEngine:
    return RuleEngine(RuleBook(parse_rules(list(rules))))


def run(e: RuleEngine, frames: list[Joined]) -> list[tuple[int, dict[str, Any]]]:
    fired = []
    for joined in frames:
        for record in e.evaluate(joined, now=1000.0):
            fired.append((joined.anchor.frame_id, record))
    return fired


SPRINT = {"id": "sprint", "type": "high_speed", "metric": "speed_kmh", "above": 20, "for_s": 0.5, "cooldown_s": 2,
          "expires_s": 30}


def test_fires_once_the_condition_held_for_long_enough() -> None:
    e = engine(SPRINT)
    fired = run(e, [frame(n, {1: 25.0, 2: 10.0}) for n in range(20)])
    assert [(n, r["track_id"]) for n, r in fired] == [(5, 1)]  # 0.0 .. 0.5 s = frames 0..5
    record = fired[0][1]
    assert record["type"] == "high_speed" and record["stream_id"] == "s"
    assert record["expires_at"] - record["created_at"] == 30
    assert record["metadata"]["rule"] == "sprint" and record["metadata"]["value"] == 25.0
    assert record["metadata"]["held_s"] == 0.5
    assert "track 1" in record["description"]


def test_a_short_burst_does_not_fire() -> None:
    e = engine(SPRINT)
    speeds = [25.0] * 4 + [10.0] + [25.0] * 4  # never 0.5 s in a row
    assert run(e, [frame(n, {1: v}) for n, v in enumerate(speeds)]) == []


def test_one_firing_per_episode_and_cooldown_between_episodes() -> None:
    e = engine(SPRINT)
    # episode 1: frames 0-14 (fires at 5); dip at 15; episode 2 starts 16, would fire at 21 (< 2 s after 5: cool-
    # down, fires at 25 = 2.0 s later); dip at 40; episode 3 from 41 fires at 46.
    speeds = [25.0] * 15 + [10.0] + [25.0] * 24 + [10.0] + [25.0] * 10
    fired = run(e, [frame(n, {1: v}) for n, v in enumerate(speeds)])
    assert [n for n, _ in fired] == [5, 25, 46]
    assert e.counters()["cooldown_suppressed"] > 0
    assert len({r["id"] for _, r in fired}) == 3  # each episode has its own id


def test_the_same_episode_keeps_its_id() -> None:
    first = run(engine(SPRINT), [frame(n, {1: 25.0}) for n in range(8)])
    again = run(engine(SPRINT), [frame(n, {1: 25.0}) for n in range(8)])
    assert first[0][1]["id"] == again[0][1]["id"]


def test_a_track_unseen_too_long_starts_a_new_episode() -> None:
    e = engine({**SPRINT, "max_gap_s": 0.3, "cooldown_s": 0})
    frames = [frame(n, {1: 25.0}) for n in range(8)] + [frame(n, {1: 25.0}) for n in range(20, 28)]
    assert [n for n, _ in run(e, frames)] == [5, 25]


def test_low_confidence_samples_are_ignored_and_confidence_scales() -> None:
    e = engine({**SPRINT, "min_confidence": 0.5})
    assert run(e, [frame(n, {1: 40.0}, track_conf=0.2) for n in range(10)]) == []
    fired = run(engine(SPRINT), [frame(n, {1: 40.0}, track_conf=0.8) for n in range(10)])
    assert fired[0][1]["confidence"] == 0.8  # 40 is one threshold-width above 20: 1.0 × 0.8
    rule = parse_rules([SPRINT])[0]
    assert confidence(rule, 20.0, None) == 0.5 and confidence(rule, 30.0, None) == 0.75


def test_joint_angle_outside_a_range() -> None:
    e = engine({"id": "knee", "type": "extreme_pose", "metric": "joint_angles.left_knee", "outside": [60, 178]})
    fired = run(e, [frame(0, {1: 5.0}, knee=120.0), frame(1, {1: 5.0}, knee=45.0), frame(2, {1: 5.0}, knee=40.0)])
    assert [(n, r["type"], r["track_id"]) for n, r in fired] == [(1, "extreme_pose", 1)]
    assert fired[0][1]["metadata"]["metric"] == "joint_angles.left_knee"


def test_trailing_window_change() -> None:
    e = engine({"id": "burst", "type": "acceleration", "metric": "speed_kmh",
                "change": {"window_s": 1.0, "by": 8, "direction": "rise"}})
    speeds = [10.0] * 10 + [10.0 + 2 * k for k in range(1, 8)]  # +2 km/h per frame from frame 10
    fired = run(e, [frame(n, {1: v}) for n, v in enumerate(speeds)])
    assert [n for n, _ in fired] == [13]  # 18 - 10 = 8 km/h within the last second
    assert fired[0][1]["metadata"]["value"] == 8.0
    falling = engine({"id": "drop", "metric": "speed_kmh", "change": {"window_s": 0.5, "by": 5, "direction": "fall"}})
    assert [n for n, _ in run(falling, [frame(n, {1: 30.0 - 3 * n}) for n in range(5)])] == [2]


def test_stream_level_people_count() -> None:
    e = engine({"id": "crowd", "metric": "people", "above": 2})
    fired = run(e, [frame(0, {1: 1.0, 2: 1.0}), frame(1, {1: 1.0, 2: 1.0, 3: 1.0})])
    assert [(n, r["track_id"]) for n, r in fired] == [(1, None)]


def test_rules_can_be_swapped_without_losing_unchanged_state() -> None:
    book = RuleBook(parse_rules([SPRINT]))
    e = RuleEngine(book)
    run(e, [frame(n, {1: 25.0}) for n in range(8)])  # fired at 5, episode continues
    book.set_default(parse_rules([SPRINT, {"id": "slow", "metric": "speed_kmh", "below": 5}]), "api")
    fired = run(e, [frame(n, {1: 25.0}) for n in range(8, 12)])
    assert fired == []  # the unchanged sprint rule remembers it already fired in this episode
    changed = {**SPRINT, "above": 24}
    book.set_default(parse_rules([changed]), "api")
    fired = run(e, [frame(n, {1: 25.0}) for n in range(12, 20)])
    assert [n for n, _ in fired] == [17]  # an edited rule starts fresh


def test_per_stream_overrides() -> None:
    book = RuleBook(parse_rules([SPRINT]))
    book.set_stream("b", parse_rules([{"id": "slow", "metric": "speed_kmh", "below": 5}]))
    e = RuleEngine(book)
    a = run(e, [frame(n, {1: 25.0}, stream="a") for n in range(8)])
    b = run(e, [frame(n, {1: 25.0}, stream="b") for n in range(8)])
    assert len(a) == 1 and b == []
    assert book.origin("b") == "api" and book.origin("a") == "graph"
    assert book.clear_stream("b") and not book.clear_stream("b")


def test_streams_with_different_clocks_keep_their_state() -> None:
    e = engine(SPRINT)
    # stream "far" has a clock 10,000 s ahead of stream "near": pruning one must not forget the other's episodes
    far = [frame(n + 100_000, {1: 25.0}, stream="far") for n in range(8)]
    near = [frame(n, {1: 25.0}, stream="near") for n in range(8)]
    fired = run(e, [x for pair in zip(far, near, strict=True) for x in pair])
    assert sorted(r["stream_id"] for _, r in fired) == ["far", "near"]
    assert e.counters()["rule_states"] == 2
