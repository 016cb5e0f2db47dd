"""Joining CV branches (vibrio's tracks, moriarty's poses ...) per stream, by frame, with a deadline.

Policies:

``exact``
    Parts with the same key (``frame_id``, or ``pts``) belong together. A slot opens with the first part and
    closes when every expected branch delivered, or when its deadline passes (then it is *partial*).
``nearest``
    The first branch is the anchor: each anchor message opens a slot; a part of another branch joins the open
    slot whose time (``pts_seconds``, else ``t_capture``) is nearest within ``tolerance_s``. Parts that arrive
    before their anchor wait (bounded) for it.
``latest``
    Never waits: every anchor message is emitted at once with the newest part of each other branch (no older
    than ``tolerance_s``); partial when a branch has nothing fresh.

Each branch delivers in order (one producer behind a FIFO edge), so once a branch delivered a newer frame, an
older slot still missing that branch can never complete: it is emitted as partial right away instead of waiting
for its deadline (a branch that skips frames — ``latest`` edges — costs no waiting). A part whose slot was
already emitted is *late*: returned separately and counted. A branch whose key goes backwards (a restarted
source) resets the stream's join state.

Pure logic with an injected clock; the ``fuse`` node drives :meth:`Joiner.expire` from a timer.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from flowgraph.messages import Message

JoinPolicy = Literal["exact", "nearest", "latest"]
#: How far (frames, or seconds for ``nearest``) a branch may go backwards before it counts as a restart.
RESET_BACKWARDS = 300


@dataclass(slots=True)
class Joined:
    """One frame's parts, by branch. ``anchor`` supplies the frame metadata for derived messages."""

    stream_id: str
    anchor: Message
    parts: dict[str, Message]
    partial: bool
    missing: tuple[str, ...] = ()


@dataclass(slots=True)
class _Slot:
    key: Any
    order: float  # exact: the key; nearest: media time
    opened: float  # clock time the slot opened (deadline base)
    parts: dict[str, Message] = field(default_factory=dict)


def message_time(msg: Message) -> float:
    """Media time of a message: ``pts_seconds`` when known, else its capture time."""
    seconds = msg.pts_seconds
    return seconds if seconds is not None else msg.t_capture


class _StreamJoin:
    """Join state of one stream."""

    def __init__(self, branches: tuple[str, ...], max_pending: int, remember: int) -> None:
        self.slots: OrderedDict[Any, _Slot] = OrderedDict()
        self.closed: deque[Any] = deque(maxlen=remember)
        self.closed_set: set[Any] = set()
        self.waiting: dict[str, deque[Message]] = {b: deque(maxlen=max_pending) for b in branches}
        self.progress: dict[str, float] = {}
        self.latest: dict[str, tuple[float, Message]] = {}

    def remember_closed(self, key: Any) -> None:
        if len(self.closed) == self.closed.maxlen:
            self.closed_set.discard(self.closed[0])
        self.closed.append(key)
        self.closed_set.add(key)


class Joiner:
    """Joins messages from ``branches`` (the first is the anchor) per stream."""

    def __init__(self, branches: tuple[str, ...], *, policy: JoinPolicy = "exact", key: str = "frame_id",
                 tolerance_s: float = 0.05, deadline_s: float = 0.1, max_pending: int = 64,
                 remember: int = 512) -> None:
        if not branches:
            raise ValueError("a join needs at least one branch")
        self.branches = branches
        self.anchor = branches[0]
        self.policy = policy
        self.key = key
        self.tolerance_s = tolerance_s
        self.deadline_s = deadline_s
        self.max_pending = max_pending
        self.remember = remember
        self._streams: dict[str, _StreamJoin] = {}
        self.joined = 0
        self.partial = 0
        self.late = 0
        self.evicted = 0
        self.orphaned = 0
        self.resets = 0

    def counters(self) -> dict[str, int]:
        return {"joined": self.joined, "partial": self.partial, "late": self.late, "evicted": self.evicted,
                "orphaned": self.orphaned, "resets": self.resets, "pending": self.pending()}

    def _stream(self, stream_id: str) -> _StreamJoin:
        state = self._streams.get(stream_id)
        if state is None:
            state = self._streams[stream_id] = _StreamJoin(self.branches, self.max_pending, self.remember)
        return state

    def _key(self, msg: Message) -> Any:
        return msg.pts if self.key == "pts" and msg.pts is not None else msg.frame_id

    # -- input ----------------------------------------------------------------------------------------------
    def add(self, branch: str, msg: Message, now: float) -> tuple[list[Joined], list[Message]]:
        """Take one part; return (joins now ready, oldest first; parts that arrived too late)."""
        if branch not in self.branches:
            raise KeyError(f"unknown join branch {branch!r} (expected one of {', '.join(self.branches)})")
        if len(self.branches) == 1:
            self.joined += 1
            return [Joined(msg.stream_id, msg, {branch: msg}, False)], []
        state = self._stream(msg.stream_id)
        if self.policy == "latest":
            return self._add_latest(state, branch, msg), []
        order = message_time(msg) if self.policy == "nearest" else float(self._key(msg))
        previous = state.progress.get(branch)
        limit = RESET_BACKWARDS * (1.0 / 30.0 if self.policy == "nearest" else 1.0)
        if previous is not None and order < previous - limit:
            self._reset(state)
        state.progress[branch] = order
        if self.policy == "nearest":
            late = self._add_nearest(state, branch, msg, order, now)
        else:
            late = self._add_exact(state, branch, msg, order, now)
        if late:
            self.late += 1
            return [], [msg]
        return self._ready(state), []

    def _reset(self, state: _StreamJoin) -> None:
        self.resets += 1
        state.closed.clear()
        state.closed_set.clear()
        state.progress.clear()

    def _add_exact(self, state: _StreamJoin, branch: str, msg: Message, order: float, now: float) -> bool:
        key = self._key(msg)
        if key in state.closed_set:
            return True
        slot = state.slots.get(key)
        if slot is None:
            slot = state.slots[key] = _Slot(key, order, now)
        if branch in slot.parts:
            return True  # a second part for the same frame from one branch: the first one stands
        slot.parts[branch] = msg
        return False

    def _add_nearest(self, state: _StreamJoin, branch: str, msg: Message, t: float, now: float) -> bool:
        if branch == self.anchor:
            key: Any = self._key(msg)
            if key in state.slots or key in state.closed_set:
                key = (key, id(msg))  # a repeated anchor key still gets its own slot
            slot = state.slots[key] = _Slot(key, t, now, {branch: msg})
            for other, queue in state.waiting.items():
                best = _nearest(queue, t, self.tolerance_s)
                if best is not None:
                    queue.remove(best)
                    slot.parts[other] = best
            return False
        open_slots = [s for s in state.slots.values()
                      if branch not in s.parts and abs(s.order - t) <= self.tolerance_s]
        if open_slots:
            min(open_slots, key=lambda s: abs(s.order - t)).parts[branch] = msg
            return False
        anchor_progress = state.progress.get(self.anchor)
        if anchor_progress is not None and anchor_progress > t + self.tolerance_s:
            return True  # its anchor came and went
        queue = state.waiting[branch]
        if len(queue) == queue.maxlen:
            self.orphaned += 1
        queue.append(msg)
        return False

    def _add_latest(self, state: _StreamJoin, branch: str, msg: Message) -> list[Joined]:
        t = message_time(msg)
        if branch != self.anchor:
            state.latest[branch] = (t, msg)
            return []
        parts: dict[str, Message] = {branch: msg}
        for other in self.branches[1:]:
            fresh = state.latest.get(other)
            if fresh is not None and abs(t - fresh[0]) <= self.tolerance_s:
                parts[other] = fresh[1]
        return [self._joined(msg.stream_id, parts)]

    # -- output ---------------------------------------------------------------------------------------------
    def _settled(self, state: _StreamJoin, slot: _Slot) -> bool:
        """Complete, or missing a branch that already delivered something newer."""
        if len(slot.parts) == len(self.branches):
            return True
        slack = self.tolerance_s if self.policy == "nearest" else 0.0
        for branch in self.branches:
            if branch not in slot.parts:
                seen = state.progress.get(branch)
                if seen is not None and seen > slot.order + slack:
                    return True
        return False

    def _ready(self, state: _StreamJoin) -> list[Joined]:
        out: list[Joined] = []
        while len(state.slots) > self.max_pending:
            _, slot = state.slots.popitem(last=False)
            self.evicted += 1
            out.append(self._close(state, slot))
        done = [slot for slot in state.slots.values() if self._settled(state, slot)]
        done.sort(key=lambda s: s.order)
        for slot in done:
            del state.slots[slot.key]
            out.append(self._close(state, slot))
        return out

    def expire(self, now: float) -> list[Joined]:
        """Slots whose deadline passed, emitted (partial), oldest first."""
        out: list[Joined] = []
        for state in self._streams.values():
            expired = [s for s in state.slots.values() if s.opened + self.deadline_s <= now + 1e-9]
            expired.sort(key=lambda s: s.order)
            for slot in expired:
                del state.slots[slot.key]
                out.append(self._close(state, slot))
        return out

    def next_deadline(self) -> float | None:
        """The earliest clock time a pending slot expires (``None`` when nothing waits)."""
        opened = [s.opened for state in self._streams.values() for s in state.slots.values()]
        return min(opened) + self.deadline_s if opened else None

    def drain(self) -> list[Joined]:
        """Everything still pending (end of stream), partial where incomplete."""
        out: list[Joined] = []
        for state in self._streams.values():
            for slot in sorted(state.slots.values(), key=lambda s: s.order):
                out.append(self._close(state, slot))
            state.slots.clear()
        return out

    def end(self, stream_id: str) -> list[Joined]:
        """The stream ended: its pending slots, emitted (partial where incomplete), and its state freed."""
        state = self._streams.pop(stream_id, None)
        if state is None:
            return []
        return [self._close(state, slot) for slot in sorted(state.slots.values(), key=lambda s: s.order)]

    def pending(self) -> int:
        return sum(len(s.slots) for s in self._streams.values())

    def _close(self, state: _StreamJoin, slot: _Slot) -> Joined:
        state.remember_closed(slot.key)
        stream_id = next(iter(slot.parts.values())).stream_id
        return self._joined(stream_id, slot.parts)

    def _joined(self, stream_id: str, parts: dict[str, Message]) -> Joined:
        anchor = parts.get(self.anchor) or next(iter(parts.values()))
        missing = tuple(b for b in self.branches if b not in parts)
        self.joined += 1
        if missing:
            self.partial += 1
        return Joined(stream_id, anchor, parts, bool(missing), missing)


def _nearest(queue: deque[Message], t: float, tolerance: float) -> Message | None:
    best: Message | None = None
    best_gap = tolerance
    for msg in queue:
        gap = abs(message_time(msg) - t)
        if gap <= best_gap:
            best, best_gap = msg, gap
    return best
