"""Whole-body centre of mass and body size from 2D keypoints, with a standard segment model.

Segment mass fractions and centre-of-mass positions along each segment follow the classic anthropometric
tables (Dempster, as tabulated by Winter, *Biomechanics and Motor Control of Human Movement*): head+neck 8.1 %,
trunk 49.7 %, upper arm 2.8 %, forearm 1.6 %, hand 0.6 %, thigh 10 %, shank 4.65 %, foot 1.45 % of body mass.
The centre of mass is the mass-weighted mean of the segment centres that are visible; when less than
``min_mass`` of the body is visible it is ``None`` rather than a guess from half a body.
"""

from __future__ import annotations

import numpy as np

from .skeleton import Skeleton

# (mass fraction, proximal joints, distal joints, fraction of the way from proximal to distal)
# Joint groups are averaged (e.g. the two hips give the pelvis centre); "hand"/"foot" use the richer BlazePose
# points when present and fall back to the wrist/ankle.
_SEGMENTS: tuple[tuple[float, tuple[str, ...], tuple[str, ...], float], ...] = (
    (0.081, ("left_ear", "right_ear"), ("left_ear", "right_ear"), 0.0),
    (0.497, ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), 0.5),
    (0.028, ("left_shoulder",), ("left_elbow",), 0.436),
    (0.028, ("right_shoulder",), ("right_elbow",), 0.436),
    (0.016, ("left_elbow",), ("left_wrist",), 0.430),
    (0.016, ("right_elbow",), ("right_wrist",), 0.430),
    (0.006, ("left_wrist",), ("left_index", "left_pinky"), 0.5),
    (0.006, ("right_wrist",), ("right_index", "right_pinky"), 0.5),
    (0.100, ("left_hip",), ("left_knee",), 0.433),
    (0.100, ("right_hip",), ("right_knee",), 0.433),
    (0.0465, ("left_knee",), ("left_ankle",), 0.433),
    (0.0465, ("right_knee",), ("right_ankle",), 0.433),
    (0.0145, ("left_heel",), ("left_foot_index",), 0.5),
    (0.0145, ("right_heel",), ("right_foot_index",), 0.5),
)

# Fallback single points for segments whose joints a skeleton lacks (COCO-17 has no hand or foot points).
_FALLBACK: dict[int, tuple[str, ...]] = {0: ("nose",), 6: ("left_wrist",), 7: ("right_wrist",),
                                         12: ("left_ankle",), 13: ("right_ankle",)}

#: Ankle -> knee -> hip -> shoulder -> nose, summed, as a fraction of stature (Drillis & Contini proportions:
#: shank 0.246, thigh 0.245, hip-shoulder 0.288, shoulder-nose about 0.10).
CHAIN_OF_STATURE = 0.879


def _mean_point(keypoints: np.ndarray, skeleton: Skeleton, names: tuple[str, ...]) -> np.ndarray | None:
    pts = [p for p in (skeleton.point(keypoints, n) for n in names) if p is not None]
    if len(pts) != len(names):
        return None
    return np.mean(pts, axis=0)


def centre_of_mass(keypoints: np.ndarray, skeleton: Skeleton, min_mass: float = 0.8) -> np.ndarray | None:
    """``(x, y)`` of the body's centre of mass in pixels, or None when under ``min_mass`` of it is visible."""
    total = 0.0
    acc = np.zeros(2)
    for i, (mass, proximal, distal, along) in enumerate(_SEGMENTS):
        p = _mean_point(keypoints, skeleton, proximal)
        d = _mean_point(keypoints, skeleton, distal)
        if (p is None or d is None) and i in _FALLBACK:
            p = d = _mean_point(keypoints, skeleton, _FALLBACK[i])
        if p is None or d is None:
            continue
        acc += mass * (p + along * (d - p))
        total += mass
    if total < min_mass:
        return None
    return acc / total


def _length(keypoints: np.ndarray, skeleton: Skeleton, a: tuple[str, ...], b: tuple[str, ...]) -> float | None:
    pa, pb = _mean_point(keypoints, skeleton, a), _mean_point(keypoints, skeleton, b)
    return None if pa is None or pb is None else float(np.hypot(*(pa - pb)))


def stature_px(keypoints: np.ndarray, skeleton: Skeleton) -> float | None:
    """Body height in pixels from the ankle-knee-hip-shoulder-nose chain (robust to bent knees and hips).

    Uses the longer of the two legs (the nearer one is foreshortened less); None when a link is missing.
    """
    legs = []
    for side in ("left", "right"):
        shank = _length(keypoints, skeleton, (f"{side}_ankle",), (f"{side}_knee",))
        thigh = _length(keypoints, skeleton, (f"{side}_knee",), (f"{side}_hip",))
        if shank is not None and thigh is not None:
            legs.append(shank + thigh)
    trunk = _length(keypoints, skeleton, ("left_hip", "right_hip"), ("left_shoulder", "right_shoulder"))
    neck = _length(keypoints, skeleton, ("left_shoulder", "right_shoulder"), ("nose",))
    if not legs or trunk is None or neck is None:
        return None
    return (max(legs) + trunk + neck) / CHAIN_OF_STATURE
