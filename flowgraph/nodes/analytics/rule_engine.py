"""Evaluating betting-opportunity rules on joined frames: episodes, sustain time, cool-down, de-duplication.

For each (stream, rule, track) the engine follows *episodes*: an episode starts when the condition becomes true
and ends when it turns false or the track is unseen for ``max_gap_s``. An episode fires at most once — when the
condition has held ``for_s`` (media time) and the rule's cool-down for that track has passed — so a condition
that stays true does not repeat itself (de-duplication). The opportunity ``id`` is derived from (rule, stream,
track, first frame of the episode): the same episode always carries the same id.

:class:`RuleBook` holds the rules in force: the graph's own (params or a rules file) and per-stream overrides
set through the REST API. Swapping rules takes effect on the next frame; unchanged rules keep their state.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flowgraph.messages import Message
from flowgraph.nodes.moriarty.messages import Poses
from flowgraph.nodes.vibrio.messages import Tracks

from . import templates
from .join import Joined, message_time
from .rules import Rule

_NAMESPACE = uuid.UUID("8f1f7f2e-3c4b-4d7e-9a51-6b2f0c1d9e77")
#: State unseen for this long (seconds, media time) is forgotten — bounds memory when tracks come and go.
STATE_TTL_S = 120.0


@dataclass(slots=True)
class _Episode:
    since: float | None = None  # media time the condition became true
    start_frame: int = -1
    fired: bool = False
    last_seen: float = 0.0
    last_fired: float | None = None
    history: deque[tuple[float, float]] = field(default_factory=deque)  # (t, value) for change rules


@dataclass(slots=True)
class Sample:
    """One value of one metric for one track (``track_id`` None: the whole stream or an untracked pose)."""

    track_id: int | None
    value: float
    confidence: float | None
    t: float
    source: Message


class RuleBook:
    """The rules in force: graph-wide ones plus per-stream overrides."""

    def __init__(self, rules: tuple[Rule, ...] = (), origin: str = "graph") -> None:
        self.default = rules
        self.default_origin = origin
        self.overrides: dict[str, tuple[Rule, ...]] = {}
        self.version = 0

    def for_stream(self, stream_id: str) -> tuple[Rule, ...]:
        rules = self.overrides.get(stream_id, self.default)
        return tuple(r for r in rules if r.applies_to(stream_id))

    def origin(self, stream_id: str) -> str:
        return "api" if stream_id in self.overrides else self.default_origin

    def set_default(self, rules: tuple[Rule, ...], origin: str) -> None:
        self.default, self.default_origin = rules, origin
        self.version += 1

    def set_stream(self, stream_id: str, rules: tuple[Rule, ...]) -> None:
        self.overrides[stream_id] = rules
        self.version += 1

    def clear_stream(self, stream_id: str) -> bool:
        self.version += 1
        return self.overrides.pop(stream_id, None) is not None


class RuleEngine:
    """Evaluates a :class:`RuleBook` frame by frame; returns opportunity records (the payload's own fields)."""

    def __init__(self, book: RuleBook, *, max_states: int = 50_000) -> None:
        self.book = book
        self.max_states = max_states
        self._states: dict[tuple[str, Rule, Any], _Episode] = {}
        self.fired = 0
        self.suppressed = 0  # held long enough but inside a cool-down
        self._pruned_at: dict[str, float] = {}

    def evaluate(self, joined: Joined, now: float | None = None) -> list[dict[str, Any]]:
        """Opportunities fired by one joined frame (``now``: unix time for created_at)."""
        rules = self.book.for_stream(joined.stream_id)
        if not rules:
            return []
        wall = time.time() if now is None else now
        out: list[dict[str, Any]] = []
        for rule in rules:
            for sample in samples(rule, joined):
                record = self._step(joined.stream_id, rule, sample, wall)
                if record is not None:
                    out.append(record)
        t = message_time(joined.anchor)
        if abs(t - self._pruned_at.get(joined.stream_id, t - 11.0)) > 10.0:
            self._prune(joined.stream_id, t)
        return out

    def _step(self, stream_id: str, rule: Rule, sample: Sample, wall: float) -> dict[str, Any] | None:
        key = (stream_id, rule, sample.track_id)
        state = self._states.get(key)
        if state is None:
            if len(self._states) >= self.max_states:
                self._prune(stream_id, sample.t, force=True)
            state = self._states[key] = _Episode()
        t = sample.t
        if state.since is not None and t - state.last_seen > rule.max_gap_s:
            state.since, state.fired = None, False  # unseen too long: a new episode
            state.history.clear()
        state.last_seen = t
        value = sample.value
        if rule.condition == "change":
            hit, value = _change(rule, state, t, sample.value)
        else:
            hit = _holds(rule, value)
        if not hit:
            state.since, state.fired = None, False
            return None
        if state.since is None:
            state.since, state.start_frame = t, sample.source.frame_id
        held = t - state.since
        if state.fired or held < rule.for_s - 1e-9:
            return None
        if state.last_fired is not None and t - state.last_fired < rule.cooldown_s:
            self.suppressed += 1
            return None
        state.fired, state.last_fired = True, t
        self.fired += 1
        return _record(rule, stream_id, sample, value, held, state.start_frame, wall)

    def _prune(self, stream_id: str, t: float, force: bool = False) -> None:
        """Forget this stream's states unseen for STATE_TTL_S (media time: each stream has its own clock)."""
        self._pruned_at[stream_id] = t
        stale = [k for k, s in self._states.items() if k[0] == stream_id and abs(t - s.last_seen) > STATE_TTL_S]
        for key in stale:
            del self._states[key]
        if force and len(self._states) >= self.max_states:
            oldest = sorted(self._states.items(), key=lambda kv: kv[1].last_seen)[: self.max_states // 10 or 1]
            for key, _ in oldest:
                del self._states[key]

    def forget(self, stream_id: str) -> None:
        """The stream ended: its rule windows (hold timers, cooldowns) go; its rule overrides stay."""
        for key in [k for k in self._states if k[0] == stream_id]:
            del self._states[key]
        self._pruned_at.pop(stream_id, None)

    def counters(self) -> dict[str, int]:
        return {"opportunities": self.fired, "cooldown_suppressed": self.suppressed, "rule_states": len(self._states)}


def samples(rule: Rule, joined: Joined) -> Iterator[Sample]:
    """The values a rule watches in one joined frame."""
    source = rule.source
    if source in ("track", "stream"):
        tracks = joined.parts.get("tracks")
        if not isinstance(tracks, Tracks):
            return
        t = message_time(tracks)
        if source == "stream":
            yield Sample(None, float(len(tracks.tracks)), None, t, tracks)
            return
        for track in tracks.tracks:
            value = _track_value(rule.metric, track)
            if value is None:
                continue
            confidence = float(track.confidence) if rule.metric.startswith(("speed", "distance", "heading")) else None
            if confidence is not None and confidence < rule.min_confidence:
                continue
            yield Sample(track.track_id, value, confidence, t, tracks)
        return
    poses = joined.parts.get("poses")
    if not isinstance(poses, Poses):
        return
    t = message_time(poses)
    group, _, name = rule.metric.partition(".")
    for index, pose in enumerate(poses.poses):
        table = pose.joint_angles if group == "joint_angles" else pose.metrics
        value = table.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        track_id = pose.track_id if pose.track_id is not None else -1 - index
        yield Sample(track_id, float(value), None, t, poses)


def _track_value(metric: str, track: Any) -> float | None:
    if metric == "speed_kmh":
        value = track.speed_kmh
    elif metric == "track_confidence":
        value = track.confidence
    else:
        value = getattr(track, metric, None)
    return None if value is None else float(value)


def _holds(rule: Rule, value: float) -> bool:
    if rule.condition == "above":
        return value > (rule.low or 0.0)
    if rule.condition == "below":
        return value < (rule.high or 0.0)
    inside = (rule.low or 0.0) <= value <= (rule.high or 0.0)
    return inside if rule.condition == "inside" else not inside


def _change(rule: Rule, state: _Episode, t: float, value: float) -> tuple[bool, float]:
    """Trailing-window change: (condition holds, the change)."""
    history = state.history
    history.append((t, value))
    while history and history[0][0] < t - rule.window_s:
        history.popleft()
    if len(history) > 4096:  # bounded even for absurd frame rates
        history.popleft()
    values = [v for _, v in history]
    rise, fall = value - min(values), max(values) - value
    if rule.direction == "rise":
        return rise >= rule.by, rise
    if rule.direction == "fall":
        return fall >= rule.by, fall
    return max(rise, fall) >= rule.by, max(rise, fall)


def confidence(rule: Rule, value: float, sample_confidence: float | None) -> float:
    """0.5 at the threshold, growing to 1.0 one threshold-width beyond it, scaled by the sample's own trust."""
    if rule.condition == "above":
        margin = (value - (rule.low or 0.0)) / max(abs(rule.low or 0.0), 1e-9)
    elif rule.condition == "below":
        margin = ((rule.high or 0.0) - value) / max(abs(rule.high or 0.0), 1e-9)
    elif rule.condition == "change":
        margin = (value - rule.by) / max(rule.by, 1e-9)
    else:
        low, high = rule.low or 0.0, rule.high or 0.0
        width = max(high - low, 1e-9)
        if rule.condition == "outside":
            margin = max(low - value, value - high) / width
        else:
            margin = 1.0 - abs(value - (low + high) / 2) / (width / 2)
    base = 0.5 + 0.5 * min(1.0, max(0.0, margin))
    if sample_confidence is not None:
        base *= min(1.0, max(0.0, sample_confidence))
    return round(base, 3)


def _record(rule: Rule, stream_id: str, sample: Sample, value: float, held: float, start_frame: int,
            wall: float) -> dict[str, Any]:
    track_id = sample.track_id if sample.track_id is None or sample.track_id >= 0 else None
    fields = {"rule": rule.id, "type": rule.type, "track_id": track_id, "stream_id": stream_id,
              "metric": rule.metric, "value": value, "condition": rule.describe(), "held_s": held,
              "threshold": rule.threshold}
    try:
        description = templates.render(rule.description, fields)
    except (ValueError, TypeError, KeyError, IndexError):
        description = f"{rule.type}: {rule.describe()}"  # validated at parse time; never fail a frame over text
    episode = f"{rule.id}|{stream_id}|{sample.track_id}|{start_frame}"
    metadata: dict[str, Any] = {"rule": rule.id, "metric": rule.metric, "value": round(value, 4),
                                "condition": rule.describe(), "held_s": round(max(0.0, held), 3),
                                "episode_frame_id": start_frame}
    if sample.confidence is not None:
        metadata["sample_confidence"] = round(sample.confidence, 3)
    return {
        "id": str(uuid.uuid5(_NAMESPACE, episode)),
        "stream_id": stream_id,
        "type": rule.type,
        "track_id": track_id,
        "confidence": confidence(rule, value, sample.confidence),
        "description": description,
        "metadata": metadata,
        "created_at": wall,
        "expires_at": wall + rule.expires_s,
    }
