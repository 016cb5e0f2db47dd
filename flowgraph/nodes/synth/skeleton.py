"""Keypoint naming (BlazePose-33, COCO-17) and the 2D joint-angle definitions shared with moriarty.

The joint angles are measured in the IMAGE PLANE from projected keypoints (degrees), exactly as
``CONTRACTS.md`` states, so synth's ground truth and moriarty's estimates are comparable:

- knee: angle at the knee between knee→hip and knee→ankle (180 = straight leg)
- hip: angle at the hip between hip→shoulder and hip→knee (180 = upright and straight); same-side shoulder
- elbow: angle at the elbow between elbow→shoulder and elbow→wrist (180 = straight arm)
- shoulder: angle at the shoulder between shoulder→hip and shoulder→elbow (0 = arm along the trunk)
- trunk_lean: angle between mid-hip→mid-shoulder and image vertical (0 = upright), absolute value
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: The 33 BlazePose landmark names, in MediaPipe's index order.
BLAZEPOSE33: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
BLAZEPOSE_INDEX: dict[str, int] = {name: i for i, name in enumerate(BLAZEPOSE33)}

#: The 17 COCO keypoint names, in COCO's order.
COCO17: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
#: ``COCO_FROM_BLAZEPOSE[i]`` is the BlazePose index of COCO keypoint ``i`` (the names are the same).
COCO_FROM_BLAZEPOSE: tuple[int, ...] = tuple(BLAZEPOSE_INDEX[name] for name in COCO17)

#: Bones for drawing skeletons (BlazePose names).
BONES: tuple[tuple[str, str], ...] = (
    ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("left_ankle", "left_heel"),
    ("left_heel", "left_foot_index"), ("left_ankle", "left_foot_index"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("right_ankle", "right_heel"),
    ("right_heel", "right_foot_index"), ("right_ankle", "right_foot_index"),
    ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"),
)

JOINT_ANGLE_NAMES: tuple[str, ...] = (
    "left_knee", "right_knee", "left_hip", "right_hip", "left_elbow", "right_elbow",
    "left_shoulder", "right_shoulder", "trunk_lean",
)

#: name -> (vertex, end a, end b): the angle at ``vertex`` between vertex→a and vertex→b.
_THREE_POINT: dict[str, tuple[str, str, str]] = {
    "left_knee": ("left_knee", "left_hip", "left_ankle"),
    "right_knee": ("right_knee", "right_hip", "right_ankle"),
    "left_hip": ("left_hip", "left_shoulder", "left_knee"),
    "right_hip": ("right_hip", "right_shoulder", "right_knee"),
    "left_elbow": ("left_elbow", "left_shoulder", "left_wrist"),
    "right_elbow": ("right_elbow", "right_shoulder", "right_wrist"),
    "left_shoulder": ("left_shoulder", "left_hip", "left_elbow"),
    "right_shoulder": ("right_shoulder", "right_hip", "right_elbow"),
}


def angle_at(vertex: Sequence[float], a: Sequence[float], b: Sequence[float]) -> float:
    """Angle in degrees (0..180) at ``vertex`` between the vectors vertex→a and vertex→b."""
    ax, ay = a[0] - vertex[0], a[1] - vertex[1]
    bx, by = b[0] - vertex[0], b[1] - vertex[1]
    # atan2 of cross and dot stays accurate near 0 and 180 degrees, unlike acos of the normalised dot.
    return float(np.degrees(np.arctan2(abs(ax * by - ay * bx), ax * bx + ay * by)))


def trunk_lean(left_shoulder: Sequence[float], right_shoulder: Sequence[float],
               left_hip: Sequence[float], right_hip: Sequence[float]) -> float:
    """Angle in degrees between mid-hip→mid-shoulder and the image's upward vertical (0 = upright)."""
    dx = (left_shoulder[0] + right_shoulder[0] - left_hip[0] - right_hip[0]) / 2.0
    dy = (left_shoulder[1] + right_shoulder[1] - left_hip[1] - right_hip[1]) / 2.0
    # Image y grows downwards, so "up" is (0, -1).
    return float(np.degrees(np.arctan2(abs(dx), -dy)))


def joint_angles(points: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """The contract's joint angles from keypoints given as name -> (x, y[, ...]) in image pixels."""
    out = {name: angle_at(points[v], points[a], points[b]) for name, (v, a, b) in _THREE_POINT.items()}
    out["trunk_lean"] = trunk_lean(points["left_shoulder"], points["right_shoulder"],
                                   points["left_hip"], points["right_hip"])
    return out


def to_coco17(points: Mapping[str, tuple[float, float, bool]]) -> list[tuple[float, float, bool]]:
    """COCO-17 keypoints (x, y, visible) from BlazePose-named keypoints."""
    return [points[name] for name in COCO17]
