"""A graph-wide registry of live streams: who publishes, who watches, how fast — for ``GET /api/streams``.

Nodes report what they know about a stream under their own role (``ingest``, ``webrtc_out``, ``vibrio`` ...);
the REST API merges the roles into one record per stream. Reached as ``ctx.streams``.
"""

from __future__ import annotations

import time
from typing import Any


class StreamRegistry:
    def __init__(self) -> None:
        self._streams: dict[str, dict[str, dict[str, Any]]] = {}

    def update(self, stream_id: str, role: str, **fields: Any) -> None:
        """Merge ``fields`` into what ``role`` reports for ``stream_id`` (stamped with the time)."""
        entry = self._streams.setdefault(stream_id, {}).setdefault(role, {})
        entry.update(fields)
        entry["updated"] = time.time()

    def remove(self, stream_id: str, role: str) -> None:
        roles = self._streams.get(stream_id)
        if roles is not None:
            roles.pop(role, None)
            if not roles:
                del self._streams[stream_id]

    def known(self, stream_id: str) -> bool:
        return stream_id in self._streams

    def ids(self) -> list[str]:
        return sorted(self._streams)

    def get(self, stream_id: str) -> dict[str, Any] | None:
        roles = self._streams.get(stream_id)
        if roles is None:
            return None
        return {"stream_id": stream_id, **{role: dict(fields) for role, fields in roles.items()}}

    def all(self) -> list[dict[str, Any]]:
        return [self.get(s) or {} for s in self.ids()]


class ReportThrottle:
    """"At most once per ``every`` seconds per stream" for nodes' reports to the registry (monotonic clock).

    ``due(stream_id)`` answers and, when it says yes, starts the next interval; ``force`` reports now anyway (a
    final report, a changed figure)."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}

    def due(self, stream_id: str, *, force: bool = False) -> bool:
        now = time.monotonic()
        last = self._last.get(stream_id)
        if not force and last is not None and now - last < self.every:
            return False
        self._last[stream_id] = now
        return True
