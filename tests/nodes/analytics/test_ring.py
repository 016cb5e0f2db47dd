"""AnalyticsRing: numbering, bounds (frames, seconds, messages), since/window reads, the registry service."""

from __future__ import annotations

import time

from flowgraph.context import GraphScope
from flowgraph.messages import Analytics
from flowgraph.nodes.analytics.ring import RINGS, AnalyticsRing, rings


def msg(frame: int, kind: str = "speed", ts: float | None = None) -> Analytics:
    return Analytics(type=kind, stream_id="s", frame_id=frame,
                     payload={"timestamp": time.time() if ts is None else ts})


def test_append_numbers_messages_from_one() -> None:
    ring = AnalyticsRing("s")
    assert ring.last_seq == 0 and ring.first_seq == 1
    first, second = msg(0), msg(0)
    assert ring.append(first) == 1 and ring.append(second) == 2
    assert (first.seq, second.seq) == (1, 2)
    assert ring.last_seq == 2 and ring.first_seq == 1


def test_keeps_the_last_n_frames() -> None:
    ring = AnalyticsRing("s", max_frames=3)
    for frame in range(5):
        for kind in ("detection", "speed"):
            ring.append(msg(frame, kind))
    assert [m.frame_id for m in ring.since(0)] == [2, 2, 3, 3, 4, 4]
    assert ring.first_seq == 5 and ring.evicted == 4


def test_keeps_at_most_t_seconds() -> None:
    ring = AnalyticsRing("s", max_seconds=0.05)
    ring.append(msg(0))
    time.sleep(0.08)
    ring.append(msg(1))
    assert [m.frame_id for m in ring.since(0)] == [1]


def test_message_cap_trims_inside_a_frame() -> None:
    ring = AnalyticsRing("s", max_messages=3)
    for _ in range(5):
        ring.append(msg(7))
    assert len(ring) == 3 and ring.first_seq == 3


def test_since_filters_types_and_limits() -> None:
    ring = AnalyticsRing("s")
    for frame in range(4):
        ring.append(msg(frame, "detection"))
        ring.append(msg(frame, "speed"))
    assert [m.seq for m in ring.since(4)] == [5, 6, 7, 8]
    assert [m.seq for m in ring.since(0, types=["speed"])] == [2, 4, 6, 8]
    assert [m.seq for m in ring.since(0, limit=3)] == [1, 2, 3]
    assert ring.since(8) == [] and ring.since(100) == []


def test_window_by_payload_timestamp() -> None:
    ring = AnalyticsRing("s")
    for i in range(10):
        ring.append(msg(i, ts=1000.0 + i))
    assert [m.frame_id for m in ring.window(1003.0, 1005.0)] == [3, 4, 5]
    assert [m.frame_id for m in ring.window(None, 1001.5)] == [0, 1]
    assert [m.frame_id for m in ring.window(1000.0, None, limit=2)] == [0, 1]


def test_registry_is_a_shared_hub_and_applies_bounds() -> None:
    scope = GraphScope()
    assert scope.peek(RINGS) is None
    registry = rings(scope)
    assert scope.peek(RINGS) is registry and rings(scope) is registry
    registry.configure(max_frames=5)
    ring = registry.ensure("cam")
    assert ring.max_frames == 5 and registry.get("cam") is ring and registry.ids() == ["cam"]
    assert registry.get("other") is None
