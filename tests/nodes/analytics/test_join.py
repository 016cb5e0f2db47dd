"""Joiner: exact / nearest / latest policies, deadlines, late parts, resets, bounds."""

from __future__ import annotations

from fractions import Fraction

from flowgraph.nodes.analytics.join import Joiner
from flowgraph.nodes.moriarty.messages import Poses
from flowgraph.nodes.vibrio.messages import Tracks

TB = Fraction(1, 90000)


def tracks(n: int, stream: str = "s", pts: int | None = None) -> Tracks:
    return Tracks(stream_id=stream, frame_id=n, pts=n * 3000 if pts is None else pts, time_base=TB)


def poses(n: int, stream: str = "s", pts: int | None = None) -> Poses:
    return Poses(stream_id=stream, frame_id=n, pts=n * 3000 if pts is None else pts, time_base=TB)


def test_exact_joins_parts_of_the_same_frame() -> None:
    j = Joiner(("tracks", "poses"), deadline_s=0.1)
    ready, late = j.add("tracks", tracks(1), 0.0)
    assert ready == [] and late == []
    ready, _ = j.add("poses", poses(1), 0.01)
    assert len(ready) == 1
    assert not ready[0].partial and set(ready[0].parts) == {"tracks", "poses"}
    assert ready[0].anchor.frame_id == 1
    assert j.pending() == 0


def test_exact_emits_partial_once_a_branch_moved_past_the_frame() -> None:
    j = Joiner(("tracks", "poses"), deadline_s=10.0)
    j.add("tracks", tracks(1), 0.0)
    j.add("tracks", tracks(2), 0.0)
    ready, _ = j.add("poses", poses(2), 0.0)  # poses skipped frame 1: it can never complete
    assert [(r.anchor.frame_id, r.partial, r.missing) for r in ready] == [(1, True, ("poses",)), (2, False, ())]


def test_deadline_turns_a_waiting_frame_into_a_partial_result() -> None:
    j = Joiner(("tracks", "poses"), deadline_s=0.1)
    j.add("tracks", tracks(5), 10.0)
    assert j.next_deadline() == 10.1
    assert j.expire(10.05) == []
    expired = j.expire(10.1)
    assert len(expired) == 1 and expired[0].partial and expired[0].missing == ("poses",)
    assert j.next_deadline() is None
    # the straggler is late now: handed back, not joined
    ready, late = j.add("poses", poses(5), 10.2)
    assert ready == [] and late[0].frame_id == 5
    assert j.counters()["late"] == 1 and j.counters()["partial"] == 1


def test_exact_by_pts_key() -> None:
    j = Joiner(("tracks", "poses"), key="pts")
    j.add("tracks", tracks(1, pts=777), 0.0)
    ready, _ = j.add("poses", poses(9, pts=777), 0.0)  # different frame_id, same pts
    assert len(ready) == 1 and not ready[0].partial


def test_streams_are_joined_independently() -> None:
    j = Joiner(("tracks", "poses"))
    j.add("tracks", tracks(1, "a"), 0.0)
    j.add("tracks", tracks(1, "b"), 0.0)
    ready, _ = j.add("poses", poses(1, "b"), 0.0)
    assert [r.stream_id for r in ready] == ["b"]
    assert j.pending() == 1


def test_nearest_pairs_within_tolerance_and_waits_for_the_anchor() -> None:
    j = Joiner(("tracks", "poses"), policy="nearest", tolerance_s=0.02, deadline_s=1.0)
    # a pose 10 ms after the frame joins it
    j.add("tracks", tracks(1, pts=90000), 0.0)
    ready, _ = j.add("poses", poses(77, pts=90900), 0.0)
    assert len(ready) == 1 and not ready[0].partial and ready[0].anchor.frame_id == 1
    # a pose arriving before its anchor waits for it
    ready, _ = j.add("poses", poses(78, pts=180000), 0.0)
    assert ready == []
    ready, _ = j.add("tracks", tracks(2, pts=180450), 0.0)
    assert len(ready) == 1 and ready[0].parts["poses"].frame_id == 78


def test_nearest_leaves_a_frame_partial_when_the_pose_is_too_far() -> None:
    j = Joiner(("tracks", "poses"), policy="nearest", tolerance_s=0.02, deadline_s=1.0)
    j.add("tracks", tracks(1, pts=90000), 0.0)
    ready, _ = j.add("poses", poses(2, pts=99000), 0.0)  # 100 ms later: not this frame's, and moved past it
    assert [(r.anchor.frame_id, r.partial) for r in ready] == [(1, True)]


def test_latest_never_waits_and_uses_the_freshest_part() -> None:
    j = Joiner(("tracks", "poses"), policy="latest", tolerance_s=0.5)
    ready, _ = j.add("tracks", tracks(1), 0.0)
    assert len(ready) == 1 and ready[0].partial  # nothing from poses yet
    j.add("poses", poses(1), 0.0)
    j.add("poses", poses(2), 0.0)
    ready, _ = j.add("tracks", tracks(3), 0.0)
    assert not ready[0].partial and ready[0].parts["poses"].frame_id == 2
    assert j.pending() == 0 and j.next_deadline() is None


def test_a_restarted_source_resets_the_stream() -> None:
    j = Joiner(("tracks", "poses"))
    for n in range(1000, 1003):
        j.add("tracks", tracks(n), 0.0)
        j.add("poses", poses(n), 0.0)
    ready, late = j.add("tracks", tracks(0), 0.0)  # frame ids start over
    assert late == []
    ready, late = j.add("poses", poses(0), 0.0)
    assert len(ready) == 1 and not ready[0].partial and late == []
    assert j.counters()["resets"] == 1


def test_pending_frames_are_bounded() -> None:
    j = Joiner(("tracks", "poses"), max_pending=4, deadline_s=100.0)
    out = []
    for n in range(10):
        ready, _ = j.add("poses", poses(n), 0.0)  # only one branch delivers, out of order with nothing settling
        out.extend(ready)
    assert j.pending() <= 4
    assert j.counters()["evicted"] == 6 and all(r.partial for r in out)


def test_single_branch_passes_straight_through() -> None:
    j = Joiner(("poses",))
    ready, _ = j.add("poses", poses(1), 0.0)
    assert len(ready) == 1 and not ready[0].partial and ready[0].anchor.frame_id == 1


def test_drain_returns_everything_pending_in_order() -> None:
    j = Joiner(("tracks", "poses"), deadline_s=100.0)
    j.add("tracks", tracks(2), 0.0)
    j.add("tracks", tracks(1), 0.0)
    drained = j.drain()
    assert [r.anchor.frame_id for r in drained] == [1, 2] and all(r.partial for r in drained)
