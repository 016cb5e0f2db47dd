"""Batched, asynchronous, lossless writing to a store backend, with the spool as a safety net.

Records collect into a batch; a batch leaves when it is full or ``flush_interval_s`` old. Full batches wait in a
bounded queue for the writer task — when the backend is slower than the producer that queue fills and
:meth:`BatchWriter.put` waits, which blocks the store's ``block`` edge: backpressure, not loss.

When a write fails because the backend is unreachable (:class:`BackendDown`), the writer goes *down*: this batch
and every following one go to the on-disk spool (in order), and a recovery task reconnects with backoff, replays
the spool oldest first, and only then lets batches go straight to the backend again. Records are lost only when
the spool is full (counted). A batch the backend rejects for another reason (bad data) is logged, counted and
kept in ``rejected.jsonl`` beside the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from .backends import Backend, BackendDown
from .records import Record, encode_lines
from .spool import Spool

log = logging.getLogger("flowgraph.analytics.store")


class BatchWriter:
    def __init__(self, backend: Backend, spool: Spool, offload: Callable[..., Any], *, batch_size: int = 500,
                 flush_interval_s: float = 0.2, max_pending_batches: int = 8, retry_s: float = 0.5,
                 retry_max_s: float = 5.0) -> None:
        self.backend = backend
        self.spool = spool
        self._offload = offload
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self._batch: list[Record] = []
        self._batch_started = 0.0
        self._queue: asyncio.Queue[list[Record]] = asyncio.Queue(max_pending_batches)
        self._tasks: list[asyncio.Task[None]] = []
        self._recovery: asyncio.Task[None] | None = None
        self._inflight: list[Record] | None = None
        self._stage = "idle"  # what the writer task is doing with the in-flight batch: backend | spool | idle
        self._closing = False
        self.up = False
        self.last_error: str | None = None
        self.written = 0  # records the backend acknowledged (direct and replayed)
        self.batches = 0
        self.rejected = 0
        self.outages = 0
        self.write_time_s = 0.0

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Index the spool a previous run left, connect (or start down), start the writer tasks."""
        await self._offload(self.spool.open)
        try:
            await self.backend.connect()
            self.up = True
        except BackendDown as exc:
            self._went_down(exc)
        if self.spool.segments and self.up:
            self.up = False  # replay what an earlier run left before anything new goes straight through
            self._start_recovery()
        self._tasks = [asyncio.create_task(self._write_loop(), name="store:writer"),
                       asyncio.create_task(self._flush_loop(), name="store:flush")]

    async def close(self, timeout: float = 3.0) -> None:
        """Flush what is held to the backend for up to ``timeout`` seconds, spool the rest, stop the tasks."""
        with contextlib.suppress(TimeoutError):
            await self.flush(timeout)
        self._closing = True  # from here on every batch goes to the spool
        await _cancel(self._recovery)  # an unfinished segment stays in the spool for the next run
        self._recovery = None
        leftovers: list[Record] = []
        if self._stage == "backend":
            # stuck in a backend write: give up on it; it may have landed, so it may be written twice
            leftovers.extend(self._inflight or ())
            await _cancel(self._tasks[0] if self._tasks else None)
        else:
            with contextlib.suppress(TimeoutError):  # local disk: the writer spools what is queued
                await asyncio.wait_for(self._queue.join(), 10.0)
        for task in self._tasks:
            await _cancel(task)
        self._tasks = []
        leftovers.extend(self._batch)
        self._batch, self._inflight = [], None
        while not self._queue.empty():
            leftovers.extend(self._queue.get_nowait())
        if leftovers:
            await self._to_spool(leftovers)

    # -- producing ------------------------------------------------------------------------------------------
    async def put(self, record: Record) -> None:
        """Add one record; waits (backpressure) when ``max_pending_batches`` batches are already queued."""
        if not self._batch:
            self._batch_started = time.monotonic()
        self._batch.append(record)
        if len(self._batch) >= self.batch_size:
            batch, self._batch = self._batch, []
            await self._queue.put(batch)

    async def flush(self, timeout: float = 3.0) -> None:
        """Hand the partial batch over and wait until everything queued is written or spooled; while the backend
        is up, also give the spool replay up to ``timeout`` seconds to finish."""
        if self._batch:
            batch, self._batch = self._batch, []
            await self._queue.put(batch)
        deadline = time.monotonic() + timeout
        await asyncio.wait_for(self._queue.join(), timeout)
        while self.spool.segments and self._recovery is not None and not self._recovery.done():
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s / 2)
            if self._batch and time.monotonic() - self._batch_started >= self.flush_interval_s \
                    and not self._queue.full():
                batch, self._batch = self._batch, []
                self._queue.put_nowait(batch)

    # -- consuming ------------------------------------------------------------------------------------------
    async def _write_loop(self) -> None:
        while True:
            batch = await self._queue.get()
            self._inflight = batch
            try:
                await self._deliver(batch)
                self._inflight = None
            finally:
                self._stage = "idle"
                self._queue.task_done()

    async def _deliver(self, batch: list[Record]) -> None:
        if self.up and not self.spool.segments and not self._closing:
            self._stage = "backend"
            try:
                await self._write(batch)
                return
            except BackendDown as exc:
                self._went_down(exc)
            except Exception as exc:  # the backend refused the data itself: keep it aside, don't retry forever
                await self._reject(batch, exc)
                return
            finally:
                self._stage = "spool"
        await self._to_spool(batch)
        if not self.up and not self._closing:
            self._start_recovery()

    async def _write(self, batch: list[Record]) -> None:
        started = time.perf_counter()
        await self.backend.write(batch)
        self.write_time_s += time.perf_counter() - started
        self.written += len(batch)
        self.batches += 1

    async def _to_spool(self, batch: list[Record]) -> None:
        estimate = sum(len(r.payload) for r in batch) + 96 * len(batch)
        segment = self.spool.reserve(len(batch), estimate)
        if segment is None:
            log.error("store spool full (%d bytes): %d records lost", self.spool.max_bytes, len(batch))
            return
        size = await self._offload(self.spool.write, segment, batch)
        self.spool.settle(segment, size)

    async def _reject(self, batch: list[Record], exc: Exception) -> None:
        self.rejected += len(batch)
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.error("store backend %s rejected %d records: %s (kept in rejected.jsonl)", self.backend.describe(),
                  len(batch), self.last_error)
        path = self.spool.directory / "rejected.jsonl"
        data = encode_lines(batch)

        def append() -> None:
            with open(path, "ab") as handle:
                handle.write(data)

        await self._offload(append)

    # -- outage and recovery ----------------------------------------------------------------------------------
    def _went_down(self, exc: Exception) -> None:
        if self.up or self.last_error is None:
            self.outages += 1
            log.warning("store backend %s is down (%s): spooling to %s", self.backend.describe(), exc,
                        self.spool.directory)
        self.up = False
        self.last_error = str(exc)
        self._start_recovery()

    def _start_recovery(self) -> None:
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover(), name="store:recover")

    async def _recover(self) -> None:
        delay = self.retry_s
        while True:
            if not self.up:
                try:
                    await self.backend.connect()
                except BackendDown as exc:
                    self.last_error = str(exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max_s)
                    continue
            if await self._replay():
                self.up = True  # the spool is empty and nothing is being spooled: straight writes again
                self.last_error = None
                log.info("store backend %s is back; spool replayed", self.backend.describe())
                return
            self.up = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max_s)

    async def _replay(self) -> bool:
        """Deliver spooled segments oldest first; True once the spool is empty, False if the backend failed."""
        while self.spool.segments:
            segment = self.spool.segments[0]
            records = await self._offload(self.spool.read, segment)
            try:
                if records:
                    await self._write(records)
            except BackendDown as exc:
                self.last_error = str(exc)
                return False
            except Exception as exc:
                await self._reject(records, exc)
            self.spool.release(segment)
            await self._offload(self.spool.delete, segment)
        return True

    def stats(self) -> dict[str, Any]:
        return {"up": self.up, "written": self.written, "batches": self.batches, "rejected": self.rejected,
                "outages": self.outages, "pending_batches": self._queue.qsize(), "batch_fill": len(self._batch),
                "last_error": self.last_error, **self.spool.stats()}


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
