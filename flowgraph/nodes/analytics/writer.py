"""Batched, asynchronous, lossless writing to a store backend, with the spool as a safety net.

Records collect into a batch; a batch leaves when it is full or ``flush_interval_s`` old. Full batches wait in a
bounded queue for the writer task — when the backend is slower than the producer that queue fills and
:meth:`BatchWriter.put` waits, which blocks the store's ``block`` edge: backpressure, not loss.

What a failed write means comes from the backend's error table (:class:`~.backends.Verdict`):

* **retry** — the same batch is written again (``retries`` times, short backoff), then handled as an outage;
* **outage** — the connection is dropped, this batch and every following one go to the on-disk spool (in order),
  and a recovery task reconnects with backoff, replays the spool oldest first, and only then lets batches go
  straight to the backend again;
* **poison** — the batch is split in halves until the records the backend refuses are alone; the others are
  written, the refused ones are counted and kept in ``rejected.jsonl`` beside the spool (size-capped; records
  rejected once it is full are counted as ``rejected_unsaved``);
* **config** — at start the store refuses to start (the error names the backend and what is wrong); found while
  running it is an outage, logged as an error (the spool holds the records until someone fixes the backend).

Writes are idempotent (every backend skips a record whose ``uid`` it already has), so replaying a batch that may
have landed is safe: a crash or outage gives no duplicates. Records are lost only when the spool is full or its
disk fails (both counted in ``lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from .backends import Backend, BackendDown, BackendMisconfigured, Verdict
from .records import Record, encode_lines
from .spool import Segment, Spool

log = logging.getLogger("flowgraph.analytics.store")


class BatchWriter:
    def __init__(self, backend: Backend, spool: Spool, offload: Callable[..., Any], *, batch_size: int = 500,
                 flush_interval_s: float = 0.2, max_pending_batches: int = 8, retry_s: float = 0.5,
                 retry_max_s: float = 5.0, retries: int = 3, rejected_max_bytes: int = 64 << 20) -> None:
        self.backend = backend
        self.spool = spool
        self._offload = offload
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self.retries = retries
        self.rejected_max_bytes = rejected_max_bytes
        self._rejected_bytes = 0
        self._rejected_logged = -1e9  # when the last "rejected" line was logged (monotonic)
        self._rejected_quiet = 0  # records rejected since then without a line of their own
        self._batch: list[Record] = []
        self._batch_started = 0.0
        self._queue: asyncio.Queue[list[Record]] = asyncio.Queue(max_pending_batches)
        self._tasks: list[asyncio.Task[None]] = []
        self._recovery: asyncio.Task[None] | None = None
        self._inflight: list[Record] | None = None
        self._stage = "idle"  # what the writer task is doing with the in-flight batch: backend | spool | idle
        self._closing = False
        self._failure: BaseException | None = None  # the error that ended the last _send early
        self.up = False
        self.last_error: str | None = None
        self.written = 0  # records the backend acknowledged (direct and replayed)
        self.batches = 0
        self.rejected = 0  # records the backend refused (poison)
        self.rejected_unsaved = 0  # of those, records not kept in rejected.jsonl (cap reached or disk error)
        self.outages = 0
        self.retried = 0  # writes repeated after a transient error
        self.errors: dict[str, int] = {v.value: 0 for v in Verdict}  # failed writes by verdict
        self.spool_errors = 0  # spool writes that failed (disk full, I/O error): their records are in ``lost``
        self.write_time_s = 0.0

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Index the spool a previous run left, connect (or start down), start the writer tasks. Raises
        :class:`BackendMisconfigured` when the backend can never take these records as configured. Can be called
        again after :meth:`close` (a restarted node)."""
        self._closing = False
        self.up = False
        try:
            await self._offload(self.spool.open)
        except OSError as exc:
            raise BackendMisconfigured(f"spool directory {self.spool.directory}: {exc}") from exc
        self._rejected_bytes = await self._offload(self._rejected_size)
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

    def _rejected_size(self) -> int:
        try:
            return (self.spool.directory / "rejected.jsonl").stat().st_size
        except OSError:
            return 0

    async def close(self, timeout: float = 3.0) -> None:
        """Flush what is held to the backend for up to ``timeout`` seconds, spool the rest, stop the tasks."""
        with contextlib.suppress(TimeoutError):
            await self.flush(timeout)
        self._closing = True  # from here on every batch goes to the spool
        await _cancel(self._recovery)  # an unfinished segment stays in the spool for the next run
        self._recovery = None
        leftovers: list[Record] = []
        if self._stage == "backend":
            # stuck in a backend write: give up on it; it may have landed — replaying it is harmless (idempotent)
            leftovers.extend(self._inflight or ())
            await _cancel(self._tasks[0] if self._tasks else None)
        else:
            with contextlib.suppress(TimeoutError):  # local disk: the writer spools what is queued
                await asyncio.wait_for(self._queue.join(), 10.0)
        for task in self._tasks:
            await _cancel(task)
        self._tasks = []
        while not self._queue.empty():  # oldest first: queued batches, then the partial one
            leftovers.extend(self._queue.get_nowait())
        leftovers.extend(self._batch)
        self._batch, self._inflight = [], None
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
            except Exception:  # a bug must not stop the writer: the batch is kept on disk, the loop goes on
                log.exception("store writer: unexpected failure; spooling the batch")
                with contextlib.suppress(Exception):
                    await self._to_spool(batch)
            finally:
                self._stage = "idle"
                self._queue.task_done()

    async def _deliver(self, batch: list[Record]) -> None:
        if self.up and not self.spool.segments and not self._closing:
            self._stage = "backend"
            try:
                batch = await self._send(batch)
            finally:
                self._stage = "spool"
            if not batch:
                return
            self._went_down(self._failure)
        await self._to_spool(batch)
        if not self.up and not self._closing:
            self._start_recovery()

    async def _send(self, batch: list[Record]) -> list[Record]:
        """Write ``batch``: transient errors retried, refused records isolated and rejected. Returns the records
        not delivered because the backend is down or misconfigured (empty when all landed or were rejected);
        the error is in ``self._failure``."""
        tries = 0
        while True:
            started = time.perf_counter()
            try:
                await self.backend.write(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                verdict, what = self.backend.classify(exc)
                self.errors[verdict.value] += 1
                self.last_error = f"{verdict.value}: {what}: {type(exc).__name__}: {exc}"
                if verdict is Verdict.RETRY and tries < self.retries:
                    tries += 1
                    self.retried += 1
                    await asyncio.sleep(min(self.retry_s * tries, self.retry_max_s))
                    continue
                if verdict is Verdict.POISON:
                    return await self._isolate(batch, exc)
                if verdict is Verdict.CONFIG:
                    log.error("store backend %s refuses writes as configured: %s", self.backend.describe(),
                              self.last_error)
                self._failure = exc
                await self.backend.drop_connection()
                return batch
            self.write_time_s += time.perf_counter() - started
            self.written += len(batch)
            self.batches += 1
            return []

    async def _isolate(self, batch: list[Record], exc: Exception) -> list[Record]:
        """Split a refused batch until the refused records are alone; write the rest."""
        if len(batch) == 1:
            await self._reject(batch, exc)
            return []
        middle = len(batch) // 2
        first = await self._send(batch[:middle])
        if first:
            return first + batch[middle:]
        return await self._send(batch[middle:])

    async def _to_spool(self, batch: list[Record]) -> None:
        estimate = sum(len(r.payload) for r in batch) + 96 * len(batch)
        segment = self.spool.reserve(len(batch), estimate)
        if segment is None:
            log.error("store spool full (%d bytes): %d records lost", self.spool.max_bytes, len(batch))
            return
        try:
            size = await self._offload(self.spool.write, segment, batch)
        except OSError as exc:
            self.spool_errors += 1
            self.spool.abandon(segment)
            await self._offload(self.spool.delete, segment)
            log.error("store spool %s cannot be written (%s): %d records lost", self.spool.directory, exc,
                      len(batch))
            return
        self.spool.settle(segment, size)

    async def _reject(self, batch: list[Record], exc: Exception) -> None:
        self.rejected += len(batch)
        self.last_error = f"poison: {type(exc).__name__}: {exc}"
        data = encode_lines(batch)
        path = self.spool.directory / "rejected.jsonl"
        if self._rejected_bytes + len(data) > self.rejected_max_bytes:
            self.rejected_unsaved += len(batch)
            self._log_rejected(len(batch), f"{path} is full at {self._rejected_bytes} bytes: not kept")
            return
        self._log_rejected(len(batch), f"kept in {path}")

        def append() -> None:
            with open(path, "ab") as handle:
                handle.write(data)

        try:
            await self._offload(append)
            self._rejected_bytes += len(data)
        except OSError as disk:
            self.rejected_unsaved += len(batch)
            log.error("store cannot keep rejected records in %s (%s): %d not kept", path, disk, len(batch))

    def _log_rejected(self, count: int, where: str) -> None:
        """One line per second at most: a batch of bad records must not flood the log."""
        now = time.monotonic()
        if now - self._rejected_logged < 1.0:
            self._rejected_quiet += count
            return
        quiet = f" (+{self._rejected_quiet} more since the last message)" if self._rejected_quiet else ""
        self._rejected_logged, self._rejected_quiet = now, 0
        log.error("store backend %s rejected %d records%s: %s (%s); %d rejected in all", self.backend.describe(),
                  count, quiet, self.last_error, where, self.rejected)

    # -- outage and recovery ----------------------------------------------------------------------------------
    def _went_down(self, exc: BaseException | None) -> None:
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
                except (BackendDown, BackendMisconfigured) as exc:
                    if isinstance(exc, BackendMisconfigured):
                        log.error("store backend %s: %s (records wait in the spool)", self.backend.describe(), exc)
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
            rest = await self._send(records) if records else []
            if rest:
                if len(rest) < len(records):  # part landed or was rejected: keep only the rest for next time
                    await self._rewrite(segment, rest)
                self.last_error = str(self._failure)
                return False
            self.spool.release(segment)
            await self._offload(self.spool.delete, segment)
        return True

    async def _rewrite(self, segment: Segment, rest: list[Record]) -> None:
        with contextlib.suppress(OSError):  # if it fails the whole segment is replayed: idempotent, harmless
            size = await self._offload(self.spool.write, segment, rest)
            self.spool.shrink(segment, len(rest), size)

    def stats(self) -> dict[str, Any]:
        return {"up": self.up, "written": self.written, "batches": self.batches, "rejected": self.rejected,
                "rejected_unsaved": self.rejected_unsaved, "outages": self.outages, "retried": self.retried,
                **{f"errors_{verdict}": n for verdict, n in self.errors.items()}, "spool_errors": self.spool_errors,
                "pending_batches": self._queue.qsize(), "batch_fill": len(self._batch),
                "last_error": self.last_error, **self.spool.stats()}


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
