"""Bounded single-consumer channels: the edges of a running graph.

Every edge has a size and a policy (promise 2 of the design):

``block``
    Lossless. A producer that finds the channel full waits (backpressure). For analytics going to a store.
``drop_oldest``
    Live. A full channel discards its oldest message to make room, and counts the drop. For live video.
``latest``
    Size 1, ``drop_oldest``: the consumer always gets the freshest message. For CV that must not fall behind.

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

from .metrics import Samples


class Policy(StrEnum):
    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"
    LATEST = "latest"


POLICIES = tuple(p.value for p in Policy)

#: Returned by :meth:`Channel.take` when nothing is queued.
EMPTY: Any = object()


class Channel:
    """One edge: a bounded FIFO from one producer port to one consumer port."""

    __slots__ = (
        "_items", "_notify", "_putters", "age", "closed", "drops", "name", "policy", "puts", "size", "takes",
    )

    def __init__(self, name: str, size: int = 8, policy: Policy | str = Policy.BLOCK) -> None:
        self.policy = Policy(policy)
        if self.policy is Policy.LATEST:
            size = 1
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
        if len(items) >= self.size:
            if self.policy is Policy.BLOCK:
                return False
            items.popleft()
            self.drops += 1
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
