"""A graph-wide registry of live streams: who publishes, who watches, how fast — for ``GET /api/streams``.

Nodes report what they know about a stream under their own role (``ingest``, ``webrtc_out``, ``vibrio`` ...);
the REST API merges the roles into one record per stream. Reached as ``ctx.streams``.
"""

from __future__ import annotations

import time
from typing import Any

#: After a stream ended, late reports from other roles (a throttled report already on its way) are ignored this long.
ENDED_QUIET_S = 5.0


class StreamRegistry:
    def __init__(self) -> None:
        self._streams: dict[str, dict[str, dict[str, Any]]] = {}
        self._ended: dict[str, float] = {}

    def update(self, stream_id: str, role: str, **fields: Any) -> None:
        """Merge ``fields`` into what ``role`` reports for ``stream_id`` (stamped with the time)."""
        if self._ended:
            ended = self._ended.get(stream_id)
            if ended is not None:
                if role != "ingest" and time.monotonic() - ended < ENDED_QUIET_S:
                    return
                del self._ended[stream_id]
        entry = self._streams.setdefault(stream_id, {}).setdefault(role, {})
        entry.update(fields)
        entry["updated"] = time.time()

    def remove(self, stream_id: str, role: str) -> None:
        roles = self._streams.get(stream_id)
        if roles is not None:
            roles.pop(role, None)
            if not roles:
                del self._streams[stream_id]

    def end(self, stream_id: str) -> None:
        """The stream ended: forget every role's record (a publisher returning makes a new one)."""
        self._streams.pop(stream_id, None)
        now = time.monotonic()
        self._ended[stream_id] = now
        for old in [s for s, t in self._ended.items() if now - t > ENDED_QUIET_S]:
            del self._ended[old]

    def known(self, stream_id: str) -> bool:
        return stream_id in self._streams

    def ids(self) -> list[str]:
        return sorted(self._streams)

    def get(self, stream_id: str) -> dict[str, Any] | None:
        roles = self._streams.get(stream_id)
        if roles is None:
            return None
        return {"stream_id": stream_id, "live": live_figures(roles),
                **{role: dict(fields) for role, fields in roles.items()}}

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

    def forget(self, stream_id: str) -> None:
        """The stream ended."""
        self._last.pop(stream_id, None)


def live_figures(roles: dict[str, Any]) -> dict[str, Any]:
    """The figures a stream list shows, from what the roles report: who publishes, how fast, who watches."""
    ingest = roles.get("ingest") or {}
    viewers = sum(int(v.get("viewers", 0)) for k, v in roles.items()
                  if isinstance(v, dict) and isinstance(v.get("viewers"), int))
    analysed = [v.get("analysed_fps") for v in roles.values() if isinstance(v, dict)]
    return {
        "publisher": ingest.get("publisher"),
        "protocol": ingest.get("protocol"),
        "state": ingest.get("state"),
        "since": ingest.get("since"),
        "bitrate_kbps": ingest.get("bitrate_kbps"),
        "fps": ingest.get("fps_measured") or ingest.get("fps"),
        "width": ingest.get("width"),
        "height": ingest.get("height"),
        "viewers": viewers,
        "analysed_fps": next((a for a in analysed if isinstance(a, int | float)), None),
    }

