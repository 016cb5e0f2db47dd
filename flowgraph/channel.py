"""Bounded single-consumer channels: the edges of a running graph.

Every edge has a size and a policy (promise 2 of the design):

``block``
    Lossless. A producer that finds the channel full waits (backpressure). For analytics going to a store.
``drop_oldest``
    Live. A full channel discards its oldest message to make room, and counts the drop. For live video.
``latest``
    One slot per stream: a message replaces the queued one of its own ``stream_id`` (counted as a drop) and keeps
    that stream's turn, so the consumer always gets each stream's freshest message and serves streams in turn.
    For CV that must not fall behind; one busy stream cannot starve another (design issue 19).

Many streams share one edge (``stream_id`` on every message). ``drop_oldest`` stays fair between them: a full
channel drops the oldest message of the stream holding the most queued messages, not simply the oldest. A
:class:`~flowgraph.messages.StreamEnd` marker is never dropped or replaced (on ``latest`` it replaces the slot of
its own stream: that stream's last frame no longer matters).

A channel carries references, never copies. It records, per message, the time it was enqueued, so the consumer
side can report message age at dequeue (queueing latency) without touching the message.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from .messages import StreamEnd
from .metrics import Samples


class Policy(StrEnum):
    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"
    LATEST = "latest"


POLICIES = tuple(p.value for p in Policy)

#: Returned by :meth:`Channel.take` when nothing is queued.
EMPTY: Any = object()
#: A ``latest`` channel holds at most this many stream slots (bounded even if stream ids run away).
LATEST_MAX_STREAMS = 4096


class Channel:
    """One edge: a bounded FIFO from one producer port to one consumer port."""

    __slots__ = (
        "_items", "_notify", "_putters", "age", "closed", "drops", "name", "policy", "puts", "size", "takes",
    )

    def __init__(self, name: str, size: int = 8, policy: Policy | str = Policy.BLOCK) -> None:
        self.policy = Policy(policy)
        if self.policy is Policy.LATEST:
            size = 1  # per stream
        if size < 1:
            raise ValueError(f"channel {name}: size must be >= 1, got {size}")
        self.name = name
        self.size = size
        self._items: deque[tuple[float, Any]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._notify: Callable[[], None] | None = None
        self.closed = False
        self.puts = 0
        self.takes = 0
        self.drops = 0
        self.age = Samples()

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Channel({self.name!r}, {len(self._items)}/{self.size}, {self.policy.value})"

    def on_ready(self, notify: Callable[[], None]) -> None:
        """Register the consumer's wake-up callback (called on put and on close)."""
        self._notify = notify

    @property
    def ended(self) -> bool:
        """Closed by the producer and fully drained."""
        return self.closed and not self._items

    def offer(self, msg: Any) -> bool:
        """Enqueue without waiting. False only for a full ``block`` channel (then ``await put``)."""
        if self.closed:
            self.drops += 1
            return True
        items = self._items
        if len(items) >= self.size:  # the common case (room left) pays one comparison
            if self.policy is Policy.LATEST:
                if self._replace_slot(msg):
                    return True
                if len(items) >= LATEST_MAX_STREAMS:
                    self._drop_fairly()
            elif type(msg) is not StreamEnd:  # a marker may exceed the size; it never waits nor is dropped
                if self.policy is Policy.BLOCK:
                    return False
                self._drop_fairly()
        items.append((time.perf_counter(), msg))
        self.puts += 1
        if self._notify is not None:
            self._notify()
        return True

    async def put(self, msg: Any) -> None:
        """Enqueue, waiting while a ``block`` channel is full."""
        while not self.offer(msg):
            waiter = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._putters:
                    self._putters.remove(waiter)
                raise

    def _replace_slot(self, msg: Any) -> bool:
        """``latest``: put ``msg`` in its stream's queued slot, keeping that slot's turn. False: no slot yet."""
        stream = getattr(msg, "stream_id", None)
        items = self._items
        for i, (_, queued) in enumerate(items):
            if getattr(queued, "stream_id", None) == stream and type(queued) is not StreamEnd:
                items[i] = (time.perf_counter(), msg)
                self.drops += 1
                self.puts += 1
                if self._notify is not None:
                    self._notify()
                return True
        return False

    def _drop_fairly(self) -> None:
        """Make room: drop the oldest message of the stream with the most queued; ties go to the stream of the
        oldest message (so one stream alone drops its oldest, as a plain FIFO would). Markers stay, and so do
        keyframes while a message of the same stream that is not one is queued: any lost packet breaks a video
        stream until its next keyframe, so losing the keyframe itself would cost the whole next GOP (with many
        publishers in step, their keyframes arrive together and fill the edge at once)."""
        items = self._items
        counts: dict[Any, int] = {}
        for _, queued in items:
            if type(queued) is not StreamEnd:
                stream = getattr(queued, "stream_id", None)
                counts[stream] = counts.get(stream, 0) + 1
        if not counts:
            return
        busiest = max(counts, key=counts.__getitem__)
        oldest = None
        for i, (_, queued) in enumerate(items):
            if type(queued) is not StreamEnd and getattr(queued, "stream_id", None) == busiest:
                if not getattr(queued, "keyframe", False):
                    del items[i]
                    self.drops += 1
                    return
                if oldest is None:
                    oldest = i
        if oldest is not None:  # nothing but keyframes of that stream queued: the oldest goes
            del items[oldest]
            self.drops += 1

    def take(self) -> Any:
        """Dequeue the oldest message, or return :data:`EMPTY`."""
        if not self._items:
            return EMPTY
        enqueued, msg = self._items.popleft()
        self.takes += 1
        self.age.add(time.perf_counter() - enqueued)
        while self._putters:
            waiter = self._putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        return msg

    def take_batch(self, limit: int, marker: bool = True) -> list[Any]:
        """Dequeue up to ``limit`` queued messages in order (empty when nothing is queued). A
        :class:`~flowgraph.messages.StreamEnd` is never batched: first in line it comes alone (or, ``marker``
        False, stays queued), otherwise it stays queued and ends the batch — a stream's marker is still handled
        after its last message."""
        items = self._items
        batch: list[Any] = []
        while items and len(batch) < limit:
            enqueued, msg = items[0]
            if type(msg) is StreamEnd and (batch or not marker):
                break
            items.popleft()
            self.age.add(time.perf_counter() - enqueued)
            batch.append(msg)
            if type(msg) is StreamEnd:
                break
        self.takes += len(batch)
        woken = 0
        while self._putters and woken < len(batch):  # one waiting producer per freed place, as take() does
            waiter = self._putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                woken += 1
        return batch

    def close(self) -> None:
        """End of stream: the consumer drains what is queued, then sees :attr:`ended`."""
        if self.closed:
            return
        self.closed = True
        for waiter in self._putters:
            if not waiter.done():
                waiter.set_result(None)
        self._putters.clear()
        if self._notify is not None:
            self._notify()
