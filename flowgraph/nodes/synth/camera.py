"""A pinhole camera looking down at a flat ground plane, and the ground-plane homography it implies.

World frame (metres): X to the right across the view, Y away from the camera along the ground, Z up. The ground
is Z = 0. The camera stands at ``(0, -distance, height)`` above the ground, turned by ``yaw_deg`` about Z (positive
turns to the left) and pitched down by ``pitch_deg``; it has no roll and no lens distortion, so the ground plane
maps to the image by an exact homography.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """Where the camera is and how wide it sees. ``hfov_deg`` is the horizontal field of view."""

    height: float = 5.0
    distance: float = 6.0
    pitch_deg: float = 14.0
    yaw_deg: float = 0.0
    hfov_deg: float = 50.0


class Camera:
    """Projection world → image for one picture size, and the ground-plane homographies."""

    def __init__(self, config: CameraConfig, width: int, height: int) -> None:
        self.config = config
        self.width = width
        self.height = height
        f = (width / 2.0) / math.tan(math.radians(config.hfov_deg) / 2.0)
        self.focal_px = f
        self.K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
        pitch = math.radians(config.pitch_deg)
        yaw = math.radians(config.yaw_deg)
        # Camera axes in world coordinates before yaw: x right, y down (image rows), z forward (optical axis).
        x_c = np.array([1.0, 0.0, 0.0])
        y_c = np.array([0.0, -math.sin(pitch), -math.cos(pitch)])
        z_c = np.array([0.0, math.cos(pitch), -math.sin(pitch)])
        rz = np.array([[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        self.R = np.stack([rz @ x_c, rz @ y_c, rz @ z_c])  # rows: camera axes -> world→camera rotation
        self.center = np.array([0.0, -config.distance, config.height])
        self.t = -self.R @ self.center
        h = self.K @ np.column_stack([self.R[:, 0], self.R[:, 1], self.t])
        self.world_to_image = h / h[2, 2]
        inv = np.linalg.inv(self.world_to_image)
        self.image_to_world = inv / inv[2, 2]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points ``(..., 3)`` to pixels ``(..., 2)``; also returns their depth along the axis (m)."""
        cam = (points - self.center) @ self.R.T
        depth = cam[..., 2]
        safe = np.where(depth > 1e-6, depth, 1e-6)
        u = self.K[0, 0] * cam[..., 0] / safe + self.K[0, 2]
        v = self.K[1, 1] * cam[..., 1] / safe + self.K[1, 2]
        return np.stack([u, v], axis=-1), depth

    def ground_to_image(self, xy: np.ndarray) -> np.ndarray:
        """Ground points ``(..., 2)`` in metres → pixels ``(..., 2)`` through the homography."""
        return _apply_h(self.world_to_image, xy)

    def image_to_ground(self, uv: np.ndarray) -> np.ndarray:
        """Pixels ``(..., 2)`` → ground points ``(..., 2)`` in metres (valid below the horizon only)."""
        return _apply_h(self.image_to_world, uv)

    def horizon_v(self, u: float | None = None) -> float:
        """Image row of the horizon (the vanishing line of the ground plane) at column ``u``."""
        # Lines map by the inverse transpose: the ground's line at infinity (0, 0, 1) becomes the horizon.
        vanishing = np.linalg.inv(self.world_to_image).T @ np.array([0.0, 0.0, 1.0])
        a, b, c = vanishing
        uu = self.width / 2.0 if u is None else u
        return float(-(a * uu + c) / b) if abs(b) > 1e-12 else float("-inf")

    def distance_to(self, xy: np.ndarray) -> np.ndarray:
        """Distance on the ground (m) from the point below the camera to ground points ``(..., 2)``."""
        return np.hypot(xy[..., 0] - self.center[0], xy[..., 1] - self.center[1])


def _apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64)
    homog = pts @ h[:, :2].T + h[:, 2]
    return homog[..., :2] / homog[..., 2:3]
