"""Build the public analytics messages (the wire contract) from vibrio's ``Tracks`` and moriarty's ``Poses``.

Every payload carries the metadata of the frame it describes (``stream_id``, ``frame_id``, ``pts``,
``pts_seconds``, ``t_capture``) plus ``timestamp``, the unix time it was emitted. ``partial`` marks a payload
emitted after a join deadline passed without every branch; ``late`` marks one whose frame had already been
emitted when it arrived. The shapes are pinned by ``flowgraph/nodes/analytics/contract/*.json``.
"""

from __future__ import annotations

from typing import Any

from flowgraph.messages import Analytics, Message
from flowgraph.nodes.moriarty.messages import Poses
from flowgraph.nodes.vibrio.messages import Tracks


def _meta(msg: Message, now: float, partial: bool, late: bool) -> dict[str, Any]:
    out = msg.meta()
    out["timestamp"] = now
    if partial:
        out["partial"] = True
    if late:
        out["late"] = True
    return out


def frame_size(msg: Message) -> tuple[int | None, int | None]:
    """(width, height) of the picture a Tracks message analysed, when it carries one."""
    frame = getattr(msg, "frame", None)
    if frame is None or getattr(frame, "image", None) is None:
        return None, None
    return frame.width, frame.height


def detection(tracks: Tracks, now: float, *, partial: bool = False, late: bool = False,
              size: tuple[int | None, int | None] = (None, None)) -> Analytics:
    """The ``detection`` message of one analysed frame."""
    width, height = frame_size(tracks)
    payload = _meta(tracks, now, partial, late)
    payload["tracks"] = [t.to_dict() for t in tracks.tracks]
    payload["detections"] = [d.to_dict() for d in tracks.detections]
    payload["width"] = width or size[0]
    payload["height"] = height or size[1]
    return Analytics(type="detection", payload=payload, partial=partial).like(tracks)


def speeds(tracks: Tracks, now: float, *, partial: bool = False, late: bool = False) -> list[Analytics]:
    """One ``speed`` message per track that has a speed estimate."""
    out: list[Analytics] = []
    for track in tracks.tracks:
        if track.speed_mps is None:
            continue
        payload = _meta(tracks, now, partial, late)
        payload.update({
            "track_id": track.track_id,
            "speed_mps": round(max(0.0, float(track.speed_mps)), 3),
            "speed_kmh": round(max(0.0, float(track.speed_mps)) * 3.6, 3),
            "confidence": round(min(1.0, max(0.0, float(track.confidence))), 3),
            "heading_deg": None if track.heading_deg is None else round(float(track.heading_deg), 1),
            "distance_m": None if track.distance_m is None else round(max(0.0, float(track.distance_m)), 3),
        })
        out.append(Analytics(type="speed", payload=payload, partial=partial).like(tracks))
    return out


def pose(poses: Poses, now: float, *, partial: bool = False, late: bool = False,
         size: tuple[int | None, int | None] = (None, None)) -> Analytics:
    """The ``pose`` message of one analysed frame (``size`` from the joined tracks' frame, when known)."""
    payload = _meta(poses, now, partial, late)
    payload["poses"] = [p.to_dict() for p in poses.poses]
    payload["width"], payload["height"] = size
    return Analytics(type="pose", payload=payload, partial=partial).like(poses)


def opportunity(anchor: Message, now: float, fields: dict[str, Any], *, partial: bool = False) -> Analytics:
    """A ``betting_opportunity`` message: the rule's record plus the anchor frame's metadata."""
    payload = _meta(anchor, now, partial, False)
    payload.update(fields)
    return Analytics(type="betting_opportunity", payload=payload, partial=partial).like(anchor)


def restamp(msg: Analytics, now: float, *, late: bool = False) -> Analytics:
    """An Analytics message from the ``analytics`` input, with the common fields filled in where missing."""
    payload = dict(msg.payload)
    for key, value in msg.meta().items():
        payload.setdefault(key, value)
    payload.setdefault("timestamp", now)
    if late:
        payload["late"] = True
    out = Analytics(type=msg.type, payload=payload, partial=msg.partial).like(msg)
    return out
