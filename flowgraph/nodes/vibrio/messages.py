"""Vibrio's messages: detections and tracks (who is where, how fast) for one analysed frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowgraph.messages import Message, VideoFrame


@dataclass(slots=True, kw_only=True, eq=False)
class Detection:
    """One detected object: ``bbox`` is ``(x1, y1, x2, y2)`` in pixels."""

    bbox: tuple[float, float, float, float]
    score: float
    label: str = "person"

    def to_dict(self) -> dict[str, Any]:
        return {"bbox": [round(v, 2) for v in self.bbox], "score": round(self.score, 4), "label": self.label}


@dataclass(slots=True, kw_only=True, eq=False)
class Track:
    """A tracked person in one frame, with ground-plane motion when known."""

    track_id: int
    bbox: tuple[float, float, float, float]
    score: float = 1.0
    age: int = 0
    foot_px: tuple[float, float] | None = None
    foot_world: tuple[float, float] | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None
    distance_m: float | None = None
    #: 0..1 trust in the speed figure: low when uncalibrated, gated by physics limits.
    confidence: float = 0.0

    @property
    def speed_kmh(self) -> float | None:
        return None if self.speed_mps is None else self.speed_mps * 3.6

    def to_dict(self) -> dict[str, Any]:
        def r(v: Any, n: int = 3) -> Any:
            if v is None:
                return None
            if isinstance(v, tuple | list):
                return [round(float(x), n) for x in v]
            return round(float(v), n)

        return {
            "track_id": self.track_id,
            "bbox": r(self.bbox, 2),
            "score": r(self.score, 4),
            "age": self.age,
            "foot_px": r(self.foot_px, 2),
            "foot_world": r(self.foot_world),
            "speed_mps": r(self.speed_mps),
            "speed_kmh": r(self.speed_kmh),
            "heading_deg": r(self.heading_deg, 1),
            "distance_m": r(self.distance_m),
            "confidence": r(self.confidence),
        }


@dataclass(slots=True, kw_only=True, eq=False)
class Tracks(Message):
    """Vibrio's answer for one analysed frame: who is where and how fast.

    ``frame`` references the analysed picture (no copy) so a downstream node that needs pixels for exactly these
    tracks — moriarty's crops — has them without re-joining by ``frame_id``.
    """

    detections: list[Detection] = field(default_factory=list)
    tracks: list[Track] = field(default_factory=list)
    frame: VideoFrame | None = None
    process_ms: float = 0.0
    calibrated: bool = False
