"""A bounded circular buffer of analytics per stream, numbered so clients can resume without a gap.

``fuse`` appends every message it emits; the ring gives it a sequence number (``Analytics.seq``, 1, 2, 3 ...
per stream) and keeps the last ``max_frames`` frames and at most ``max_seconds`` of them (and never more than
``max_messages`` messages). ``ws_out`` replays ``since(seq)`` to a reconnecting client, the REST API reads
windows of it when no store is configured, and any node can look rings up by stream in
the shared ``RINGS`` hub (:class:`RingRegistry`).

Everything here runs on the event loop: no locks.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flowgraph.context import Hubs, Key
from flowgraph.messages import Analytics


@dataclass(slots=True)
class _Frame:
    """The messages of one frame: a contiguous run of sequence numbers."""

    frame_id: int
    first_seq: int
    count: int
    added: float  # monotonic time of the first message


class AnalyticsRing:
    """The recent analytics of one stream."""

    def __init__(self, stream_id: str, *, max_frames: int = 900, max_seconds: float = 30.0,
                 max_messages: int = 20_000) -> None:
        self.stream_id = stream_id
        self.max_frames = max_frames
        self.max_seconds = max_seconds
        self.max_messages = max_messages
        self._messages: deque[Analytics] = deque()
        self._frames: deque[_Frame] = deque()
        self._next_seq = 1
        self.appended = 0
        self.evicted = 0
        #: unix time of the newest message, for health figures.
        self.last_time = 0.0
        self._recent: deque[float] = deque(maxlen=256)  # monotonic times of new frames (fps)

    def __len__(self) -> int:
        return len(self._messages)

    # -- writing --------------------------------------------------------------------------------------------
    def append(self, msg: Analytics) -> int:
        """Number ``msg`` (sets ``msg.seq``), keep it, evict what falls outside the bounds; return the seq."""
        now = time.monotonic()
        seq = self._next_seq
        self._next_seq += 1
        msg.seq = seq
        self._messages.append(msg)
        last = self._frames[-1] if self._frames else None
        if last is not None and last.frame_id == msg.frame_id and last.first_seq + last.count == seq:
            last.count += 1
        else:
            self._frames.append(_Frame(msg.frame_id, seq, 1, now))
            self._recent.append(now)
        self.appended += 1
        self.last_time = time.time()
        self._evict(now)
        return seq

    def _evict(self, now: float) -> None:
        frames = self._frames
        oldest_allowed = now - self.max_seconds
        while frames and (len(frames) > self.max_frames or frames[0].added < oldest_allowed
                          or len(self._messages) > self.max_messages):
            head = frames[0]
            if len(self._messages) > self.max_messages and len(frames) <= self.max_frames \
                    and head.added >= oldest_allowed and head.count > 1:
                # only the message cap is exceeded: trim the oldest frame message by message
                self._messages.popleft()
                head.first_seq += 1
                head.count -= 1
                self.evicted += 1
                continue
            frames.popleft()
            for _ in range(head.count):
                self._messages.popleft()
            self.evicted += head.count

    # -- reading --------------------------------------------------------------------------------------------
    @property
    def first_seq(self) -> int:
        """Sequence number of the oldest message kept (``last_seq + 1`` when empty)."""
        return self._messages[0].seq if self._messages else self._next_seq

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest message (0 before the first)."""
        return self._next_seq - 1

    def since(self, seq: int, types: Iterable[str] | None = None, limit: int | None = None) -> list[Analytics]:
        """Messages numbered after ``seq``, oldest first (as many as are still kept, at most ``limit``)."""
        start = max(0, seq + 1 - self.first_seq)
        if start >= len(self._messages):
            return []
        wanted = None if types is None else set(types)
        picked = (m for m in itertools.islice(self._messages, start, None) if wanted is None or m.type in wanted)
        return list(itertools.islice(picked, limit)) if limit is not None else list(picked)

    def window(self, t_from: float | None = None, t_to: float | None = None, types: Iterable[str] | None = None,
               limit: int = 1000) -> list[Analytics]:
        """Messages whose payload ``timestamp`` lies in ``[t_from, t_to]``, oldest first, at most ``limit``."""
        wanted = None if types is None else set(types)
        messages = list(self._messages)
        stamps = [_timestamp(m) for m in messages]
        lo = 0 if t_from is None else bisect.bisect_left(stamps, t_from)
        out: list[Analytics] = []
        for msg, stamp in zip(messages[lo:], stamps[lo:], strict=True):
            if t_to is not None and stamp > t_to:
                break
            if wanted is None or msg.type in wanted:
                out.append(msg)
                if len(out) >= limit:
                    break
        return out

    def fps(self, horizon_s: float = 2.0) -> float:
        """Frames per second appended over the last ``horizon_s`` seconds."""
        now = time.monotonic()
        recent = [t for t in self._recent if t >= now - horizon_s]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], 1e-6)
        return round(len(recent) / span, 2)

    def stats(self) -> dict[str, Any]:
        return {
            "messages": len(self._messages), "frames": len(self._frames), "first_seq": self.first_seq,
            "last_seq": self.last_seq, "appended": self.appended, "evicted": self.evicted, "fps": self.fps(),
        }


def _timestamp(msg: Analytics) -> float:
    value = msg.payload.get("timestamp")
    return float(value) if isinstance(value, int | float) else msg.t_capture


class RingRegistry:
    """The rings of one graph, by stream id (the shared ``RINGS`` hub)."""

    def __init__(self, *, max_frames: int = 900, max_seconds: float = 30.0, max_messages: int = 20_000) -> None:
        self.defaults = {"max_frames": max_frames, "max_seconds": max_seconds, "max_messages": max_messages}
        self._rings: dict[str, AnalyticsRing] = {}

    def get(self, stream_id: str) -> AnalyticsRing | None:
        return self._rings.get(stream_id)

    def ensure(self, stream_id: str, **bounds: Any) -> AnalyticsRing:
        """The ring of ``stream_id``, created with the registry's bounds (or ``bounds``) on first use."""
        ring = self._rings.get(stream_id)
        if ring is None:
            ring = self._rings[stream_id] = AnalyticsRing(stream_id, **{**self.defaults, **bounds})
        return ring

    def ids(self) -> list[str]:
        return sorted(self._rings)

    def drop(self, stream_id: str) -> None:
        """The stream ended: its ring goes (the store keeps its history)."""
        self._rings.pop(stream_id, None)

    def configure(self, **bounds: Any) -> None:
        """Set the bounds used for rings created from now on."""
        self.defaults.update(bounds)


#: The graph's ring registry.
RINGS: Key[RingRegistry] = Key("analytics.rings")


def rings(hubs: Hubs) -> RingRegistry:
    """The graph's ring registry (created on first use)."""
    return hubs.shared(RINGS, RingRegistry)
