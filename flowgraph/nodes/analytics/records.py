"""The row every store backend writes: one analytics message, flattened for time-series tables."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from flowgraph.messages import Analytics


class Record(NamedTuple):
    """One stored analytics message. ``ts`` is the payload's ``timestamp`` (unix seconds, emission time)."""

    uid: str  # unique per message written by one store node run: "<run id>-<counter>"
    stream_id: str
    ts: float
    type: str
    frame_id: int
    seq: int
    track_id: int | None
    payload: str  # the payload as JSON text


def _jsonable(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    return str(value)


#: One encoder for every record: ``json.dumps`` with options builds a new encoder per call.
_encode = json.JSONEncoder(separators=(",", ":"), default=_jsonable).encode


def record_of(msg: Analytics, uid: str) -> Record:
    """Flatten ``msg`` into a row."""
    payload = msg.payload
    stamp = payload.get("timestamp")
    ts = float(stamp) if isinstance(stamp, int | float) else msg.t_capture
    track = payload.get("track_id")
    return Record(uid, msg.stream_id, ts, msg.type, int(msg.frame_id), int(msg.seq),
                  track if isinstance(track, int) and not isinstance(track, bool) else None,
                  _encode(payload))


def wire(type_: str, seq: int | None, payload: str | dict[str, Any]) -> dict[str, Any]:
    """A stored row back in the wire form ``{"type", "payload", "seq"}``."""
    body = json.loads(payload) if isinstance(payload, str) else payload
    return {"type": type_, "payload": body, "seq": seq}


def encode_lines(records: list[Record]) -> bytes:
    """Records as JSON lines (the spool's segment format)."""
    return "".join(json.dumps(list(r), separators=(",", ":")) + "\n" for r in records).encode()


def decode_lines(data: bytes) -> list[Record]:
    """Inverse of :func:`encode_lines`; a torn last line (crash mid-write) is ignored."""
    out: list[Record] = []
    for line in data.splitlines():
        try:
            fields = json.loads(line)
        except ValueError:
            continue
        if isinstance(fields, list) and len(fields) == len(Record._fields):
            out.append(Record(*fields))
    return out
