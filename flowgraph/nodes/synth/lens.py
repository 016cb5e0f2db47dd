"""Radial lens distortion applied after rendering, so the picture is no longer an exact pinhole projection.

The scene's camera is a pinhole: the ground plane maps to the image by an exact homography, so a calibration fitted
from the scene's own points has zero error by construction. A real lens bends straight lines; an estimator that
fits a homography (as vibrio does) then carries a systematic error that grows towards the corners. This module
bends the rendered picture and every pixel-space truth field (boxes, keypoints, the image-plane joint angles
computed from them) the same way, with the first radial term of the Brown–Conrady
model (OpenCV's ``k1``), normalised here by the picture's half-diagonal rather than the focal length:

    p_d = c + (p - c) * (1 + k1 * r²),   r = |p - c| / half-diagonal

``k1 < 0`` is barrel distortion (wide-angle lenses, typical of sports cameras), ``k1 > 0`` pincushion. World-space
truth (foot position in metres, speed, heading) is untouched: it is what the estimator must recover.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .skeleton import BLAZEPOSE33, COCO_FROM_BLAZEPOSE, joint_angles

if TYPE_CHECKING:
    from .truth import FrameTruth, PersonTruth


class Lens:
    """The distortion of one ``width`` × ``height`` picture (maps built once)."""

    def __init__(self, k1: float, width: int, height: int) -> None:
        if not -0.3 <= k1 <= 0.3:
            raise ValueError(f"lens k1 must be within -0.3..0.3, got {k1}")
        self.k1 = k1
        self.width, self.height = width, height
        self._centre = np.array([width / 2.0, height / 2.0])
        self._scale = float(np.hypot(width, height) / 2.0)
        self._maps: tuple[np.ndarray, np.ndarray] | None = None

    def distort(self, uv: np.ndarray) -> np.ndarray:
        """Undistorted (pinhole) pixel positions (..., 2) → where the lens puts them."""
        uv = np.asarray(uv, dtype=float)
        d = (uv - self._centre) / self._scale
        r2 = np.sum(d * d, axis=-1, keepdims=True)
        return self._centre + d * (1.0 + self.k1 * r2) * self._scale

    def undistort(self, uv: np.ndarray, iterations: int = 8) -> np.ndarray:
        """Inverse of :meth:`distort` by fixed-point iteration (converges for the |k1| allowed here)."""
        target = (np.asarray(uv, dtype=float) - self._centre) / self._scale
        d = target.copy()
        for _ in range(iterations):
            r2 = np.sum(d * d, axis=-1, keepdims=True)
            d = target / (1.0 + self.k1 * r2)
        return self._centre + d * self._scale

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The picture as the lens records it: each output pixel samples the pinhole picture where it came from."""
        import cv2

        if self._maps is None:
            v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
            source = self.undistort(np.stack([u, v], axis=-1)).astype(np.float32)
            self._maps = (np.ascontiguousarray(source[..., 0]), np.ascontiguousarray(source[..., 1]))
        return cv2.remap(image, self._maps[0], self._maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def _box(self, box: tuple[float, float, float, float], clip: bool) -> tuple[float, float, float, float]:
        """A box's outline through the lens (edges sampled, not just corners: straight edges bow)."""
        x1, y1, x2, y2 = box
        t = np.linspace(0.0, 1.0, 9)
        outline = np.concatenate([
            np.stack([x1 + (x2 - x1) * t, np.full_like(t, y1)], axis=-1),
            np.stack([x1 + (x2 - x1) * t, np.full_like(t, y2)], axis=-1),
            np.stack([np.full_like(t, x1), y1 + (y2 - y1) * t], axis=-1),
            np.stack([np.full_like(t, x2), y1 + (y2 - y1) * t], axis=-1),
        ])
        bent = self.distort(outline)
        lo, hi = bent.min(axis=0), bent.max(axis=0)
        if clip:
            lo = np.maximum(lo, 0.0)
            hi = np.minimum(hi, [float(self.width), float(self.height)])
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    def person(self, p: PersonTruth) -> PersonTruth:
        """One person's pixel-space truth through the lens (world-space fields unchanged)."""
        names = list(p.keypoints)
        points = self.distort(np.array([[x, y] for x, y, _ in p.keypoints.values()]))
        keypoints = {n: (float(xy[0]), float(xy[1]), p.keypoints[n][2]) for n, xy in zip(names, points, strict=True)}
        foot = self.distort(np.array(p.foot_px))
        return replace(p, bbox=self._box(p.bbox_full, clip=True), bbox_full=self._box(p.bbox_full, clip=False),
                       foot_px=(float(foot[0]), float(foot[1])), keypoints=keypoints,
                       coco17=[keypoints[BLAZEPOSE33[j]] for j in COCO_FROM_BLAZEPOSE],
                       joint_angles=joint_angles({n: (x, y) for n, (x, y, _) in keypoints.items()}))

    def truth(self, truth: FrameTruth) -> FrameTruth:
        return replace(truth, people=[self.person(p) for p in truth.people])
