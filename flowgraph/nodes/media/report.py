"""Throttled per-stream reports into the graph's stream registry (``GET /api/streams``), from any thread.

Decode, encode and record do their work in worker threads; the registry is read by HTTP handlers on the event
loop, so updates are handed to the loop (``call_soon_threadsafe``) at most once per ``every`` seconds per stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from flowgraph.streams import ReportThrottle, StreamRegistry


class StreamReport:
    """Reports one role's fields per stream; create it on the graph's event loop (nodes do in ``__init__``).

    Built where no loop runs (a node constructed by hand in a test), it updates the registry in place."""

    def __init__(self, registry: StreamRegistry, role: str, every: float = 1.0) -> None:
        self.registry = registry
        self.role = role
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None
        self._reports = ReportThrottle(every)

    def maybe(self, stream_id: str, fields: Callable[[], dict[str, Any]] | dict[str, Any],
              force: bool = False) -> None:
        """Report ``fields`` (or ``fields()``, computed only when due) for ``stream_id`` unless it was reported less
        than ``every`` seconds ago."""
        if not self._reports.due(stream_id, force=force):
            return
        values = fields if isinstance(fields, dict) else fields()
        if self.loop is None:
            self.registry.update(stream_id, self.role, **values)
            return
        try:
            self.loop.call_soon_threadsafe(lambda: self.registry.update(stream_id, self.role, **values))
        except RuntimeError:  # the loop is closed: the graph is gone
            pass
