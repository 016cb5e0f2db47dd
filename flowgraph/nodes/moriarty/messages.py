"""Moriarty's messages: the poses (keypoints, joint angles, motion metrics) of one analysed frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowgraph.messages import Message


@dataclass(slots=True, kw_only=True, eq=False)
class Pose:
    """Keypoints of one person: ``keypoints`` is a list of ``(x, y, score)`` in frame pixels.

    A keypoint the model was not confident about is ``None`` (``null`` on the wire): gated, never guessed.
    """

    track_id: int | None
    keypoints: list[tuple[float, float, float] | None]
    skeleton: str = "blazepose33"
    bbox: tuple[float, float, float, float] | None = None
    joint_angles: dict[str, float | None] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "skeleton": self.skeleton,
            "bbox": None if self.bbox is None else [round(float(v), 2) for v in self.bbox],
            "keypoints": [None if k is None else [round(float(k[0]), 2), round(float(k[1]), 2), round(float(k[2]), 3)]
                          for k in self.keypoints],
            "joint_angles": {k: None if v is None else round(float(v), 2) for k, v in self.joint_angles.items()},
            "metrics": self.metrics,
        }


@dataclass(slots=True, kw_only=True, eq=False)
class Poses(Message):
    """Moriarty's answer for one analysed frame."""

    poses: list[Pose] = field(default_factory=list)
    process_ms: float = 0.0
