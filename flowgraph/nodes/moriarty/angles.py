"""Joint angles in the image plane (the definitions in CONTRACTS.md) and their angular velocities.

Every angle is in degrees. A joint angle is the angle at the middle joint between the vectors to its two
neighbours: knee (hip, knee, ankle; 180 = straight leg), hip (shoulder, hip, knee; 180 = upright), elbow
(shoulder, elbow, wrist), shoulder (hip, shoulder, elbow; 0 = arm along the trunk). ``trunk_lean`` is the
angle between mid-hip -> mid-shoulder and image vertical (0 = upright), as an absolute value. An angle whose
joints are not all visible is ``None``.
"""

from __future__ import annotations

import math

import numpy as np

from .skeleton import Skeleton

#: angle name -> (first neighbour, vertex, second neighbour)
ANGLE_JOINTS: dict[str, tuple[str, str, str]] = {
    "left_knee": ("left_hip", "left_knee", "left_ankle"),
    "right_knee": ("right_hip", "right_knee", "right_ankle"),
    "left_hip": ("left_shoulder", "left_hip", "left_knee"),
    "right_hip": ("right_shoulder", "right_hip", "right_knee"),
    "left_elbow": ("left_shoulder", "left_elbow", "left_wrist"),
    "right_elbow": ("right_shoulder", "right_elbow", "right_wrist"),
    "left_shoulder": ("left_hip", "left_shoulder", "left_elbow"),
    "right_shoulder": ("right_hip", "right_shoulder", "right_elbow"),
}

ANGLE_NAMES: tuple[str, ...] = (*ANGLE_JOINTS, "trunk_lean")


def angle_at(a: np.ndarray, vertex: np.ndarray, b: np.ndarray) -> float | None:
    """Angle in degrees at ``vertex`` between ``vertex->a`` and ``vertex->b``; None for a degenerate vector."""
    u = a - vertex
    v = b - vertex
    nu = math.hypot(u[0], u[1])
    nv = math.hypot(v[0], v[1])
    if nu < 1e-6 or nv < 1e-6:
        return None
    # atan2 of cross and dot is accurate near 0 and 180 degrees, where acos of the cosine is not.
    cross = u[0] * v[1] - u[1] * v[0]
    dot = u[0] * v[0] + u[1] * v[1]
    return math.degrees(math.atan2(abs(cross), dot))


def trunk_lean(keypoints: np.ndarray, skeleton: Skeleton) -> float | None:
    """Angle between mid-hip -> mid-shoulder and image vertical (up), absolute, degrees."""
    pts = [skeleton.point(keypoints, n) for n in ("left_hip", "right_hip", "left_shoulder", "right_shoulder")]
    lh, rh, ls, rs = pts
    if lh is None or rh is None or ls is None or rs is None:
        return None
    dx, dy = (ls + rs) / 2 - (lh + rh) / 2
    if math.hypot(dx, dy) < 1e-6:
        return None
    # image y grows downwards, so "up" is -y
    return math.degrees(math.atan2(abs(dx), -dy))


def joint_angles(keypoints: np.ndarray, skeleton: Skeleton) -> dict[str, float | None]:
    """All contract angles of one pose (``None`` where a joint is gated out)."""
    out: dict[str, float | None] = {}
    for name, (a, v, b) in ANGLE_JOINTS.items():
        pa, pv, pb = skeleton.point(keypoints, a), skeleton.point(keypoints, v), skeleton.point(keypoints, b)
        out[name] = None if pa is None or pv is None or pb is None else angle_at(pa, pv, pb)
    out["trunk_lean"] = trunk_lean(keypoints, skeleton)
    return out


def slope(times: np.ndarray, values: np.ndarray) -> float | None:
    """Least-squares rate of change (units per second) of the finite samples; None with fewer than 3."""
    ok = np.isfinite(values) & np.isfinite(times)
    if int(ok.sum()) < 3:
        return None
    t = times[ok] - times[ok].mean()
    denom = float((t * t).sum())
    if denom <= 0:
        return None
    return float((t * (values[ok] - values[ok].mean())).sum() / denom)


def angular_velocities(times: np.ndarray, history: dict[str, np.ndarray], window_s: float = 0.2
                       ) -> dict[str, float | None]:
    """deg/s of each angle: the slope of a line fitted to its samples in the last ``window_s`` seconds.

    A short least-squares fit rather than a two-point difference, because keypoint jitter of a pixel turns into
    tens of degrees per second between adjacent frames.
    """
    if len(times) == 0:
        return {name: None for name in history}
    recent = times >= times[-1] - window_s
    return {name: slope(times[recent], values[recent]) for name, values in history.items()}
