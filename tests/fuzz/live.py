"""What the fuzz tests share: a graph running in a background event loop (hypothesis drives plain functions),
the invariants checked after every example, and the example counts per surface.

Invariants: no 5xx, no unhandled exception logged (nothing at ERROR, no traceback), no hang (every call has a
deadline), bounded RSS, and a valid request still answered afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import psutil
from hypothesis import settings

from flowgraph.testing import compile_text, running

#: Examples per surface in CI (derandomised, ≈ 2 minutes in all on 2 loaded cores); ``tools/fuzz.py`` scales them.
EXAMPLES = {"graph_yaml": 150, "rules": 150, "rest": 150, "sdp": 40, "whip": 30, "ws": 80, "rtmp": 80,
            "h264": 100, "amf0": 300}
COUNTS: Counter[str] = Counter()
CALL_TIMEOUT_S = 30.0
RSS_GROWTH_MB = 300


def examples(surface: str) -> settings:
    scale = float(os.environ.get("FLOWGRAPH_FUZZ_SCALE", "1"))
    return settings(max_examples=max(1, int(EXAMPLES[surface] * scale)))


def count(surface: str) -> None:
    COUNTS[surface] += 1


def write_counts() -> None:
    path = os.environ.get("FLOWGRAPH_FUZZ_REPORT")
    if path:
        with open(path, "w") as out:
            json.dump(dict(COUNTS), out)


class ErrorLog(logging.Handler):
    """Collects what would show as an unhandled exception: records at ERROR and above, or with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or (record.exc_info and record.levelno >= logging.INFO):
            self.records.append(record)

    def take(self) -> list[str]:
        lines = [f"{r.name}: {r.getMessage()}"[:300] for r in self.records]
        self.records.clear()
        return lines


class LiveGraph:
    """A graph run in its own thread's event loop; :meth:`call` runs a coroutine there and waits for it."""

    def __init__(self, text: str, registry: Any = None) -> None:
        self.plan = compile_text(text, registry=registry)
        self.loop = asyncio.new_event_loop()
        self.rt: Any = None
        self.http: aiohttp.ClientSession | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fuzz-graph", daemon=True)
        self.errors = ErrorLog()
        self.rss_start = 0

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start()
            self._failure = exc
            self._ready.set()
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with running(self.plan, port=0) as rt, aiohttp.ClientSession() as http:
            self.rt, self.http = rt, http
            self._ready.set()
            await self._stop.wait()

    def start(self) -> LiveGraph:
        logging.getLogger().addHandler(self.errors)
        self._thread.start()
        self._ready.wait(60)
        if self._failure is not None or self.rt is None:
            raise RuntimeError(f"the fuzz graph did not start: {self._failure!r}")
        self.rss_start = psutil.Process().memory_info().rss
        return self

    def stop(self) -> None:
        if self._stop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        logging.getLogger().removeHandler(self.errors)

    @property
    def url(self) -> str:
        return str(self.rt.server.url)

    def call(self, make: Callable[[], Awaitable[Any]], timeout: float = CALL_TIMEOUT_S) -> Any:
        """Run ``make()`` on the graph's loop; a call past ``timeout`` is a hang and fails the example."""
        future = asyncio.run_coroutine_threadsafe(make(), self.loop)  # type: ignore[arg-type]
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise AssertionError(f"hang: no answer within {timeout}s") from None

    def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        async def go() -> tuple[int, bytes]:
            assert self.http is not None
            async with self.http.request(method, self.url + path, **kwargs) as response:
                return response.status, await response.read()

        result: tuple[int, bytes] = self.call(go)
        return result

    def check(self, what: str) -> None:
        """The invariants after one example (status codes are checked by the example itself)."""
        gc.collect()  # a task that failed unseen logs "Task exception was never retrieved" only when collected
        errors = self.errors.take()
        assert not errors, f"{what}: unhandled errors logged: {errors[:3]}"
        grown = (psutil.Process().memory_info().rss - self.rss_start) / 1e6
        assert grown < RSS_GROWTH_MB, f"{what}: RSS grew {grown:.0f} MB"
