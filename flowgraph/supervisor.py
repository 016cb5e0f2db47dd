"""A node's ``on_error`` policy in action: skip the message, restart the node after a backoff, or stop the graph.

One :class:`Supervisor` per running node. Restarts keep the node object (its state and counters were built in
``__init__``): ``stop()`` releases its resources, ``start()`` acquires them again. The backoff doubles on each
failure up to ``backoff_max_s`` and starts afresh once the node stayed healthy that long.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from .errors import NodeError, PermanentError
from .metrics import NodeStats
from .node import Node
from .spec import ErrorPolicy


class Fatal(Exception):
    """Unwinds a runner whose node failed under ``on_error: stop`` (or ran out of restarts)."""


class Supervisor:
    def __init__(self, name: str, policy: ErrorPolicy, stats: NodeStats,
                 on_fatal: Callable[[NodeError], None]) -> None:
        self.name = name
        self.policy = policy
        self.stats = stats
        self._on_fatal = on_fatal
        self._backoff = policy.backoff_s
        self._last_failure = float("-inf")

    async def failed(self, node: Node, exc: Exception, msg: Any) -> None:
        """``node`` raised ``exc`` handling ``msg`` (None: in a source's run() or a start()). Returns when the
        node may go on; raises :class:`Fatal` when the graph must stop."""
        error = NodeError(self.name, getattr(msg, "frame_id", None), exc)
        self._count(error)
        if self.policy.policy == "skip_message" and msg is not None:
            node.log.error("%s (message skipped)", error, exc_info=exc)
            return
        restart = self.policy.policy == "restart"
        if restart:
            with contextlib.suppress(Exception):
                await node.stop()
        while True:
            if not await self._backoff_or_give_up(node, error, exc):
                return
            if not restart:
                break
            try:
                await node.start()
                break
            except Exception as start_exc:
                error, exc = NodeError(self.name, None, start_exc), start_exc
                self._count(error)
        self.stats.state = "running"

    def retries_alone(self, node: Node, exc: Exception, batch: list[Any]) -> bool:
        """A ``process_batch`` call raised ``exc``: True when each message is to go again on its own (under
        ``skip_message``, so that one bad message costs only itself); the failure is counted and logged. False: the
        batch goes through :meth:`failed` as one (``restart``, ``stop``, an error no retry can mend)."""
        if self.policy.policy != "skip_message" or isinstance(exc, PermanentError) or len(batch) < 2:
            return False
        error = NodeError(self.name, getattr(batch[0], "frame_id", None), exc)
        self._count(error)
        node.log.warning("batch of %d failed: %s; each message again on its own", len(batch), error)
        return True

    def _count(self, error: NodeError) -> None:
        self.stats.errors += 1
        self.stats.last_error = str(error)

    async def _backoff_or_give_up(self, node: Node, error: NodeError, exc: Exception) -> bool:
        """Wait out the backoff before the next attempt; False if the graph is stopping meanwhile."""
        policy = self.policy
        limit = policy.max_restarts
        permanent = isinstance(exc, PermanentError)
        if permanent or policy.policy == "stop" or (limit is not None and self.stats.restarts >= limit):
            why = ("no retry can mend it" if permanent else "on_error: stop" if policy.policy == "stop"
                   else f"gave up after {self.stats.restarts} restarts")
            node.log.error("%s (%s)", error, why, exc_info=None if permanent else exc)
            self.stats.state = "failed"
            self._on_fatal(error)
            raise Fatal from exc
        now = time.monotonic()
        if now - self._last_failure > policy.backoff_max_s:  # healthy for a while: start the backoff afresh
            self._backoff = policy.backoff_s
        self._last_failure = now
        delay = self._backoff
        self._backoff = min(self._backoff * 2, policy.backoff_max_s)
        self.stats.restarts += 1
        self.stats.state = "restarting"
        node.log.error("%s (restart %d in %.2fs)", error, self.stats.restarts, delay, exc_info=exc)
        return not await node.wait_stopping(delay)
