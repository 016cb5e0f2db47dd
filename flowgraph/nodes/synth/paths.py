"""Ground paths (polylines parametrised by arc length) and speed profiles with closed-form distance.

Heading convention (ground truth ``heading_deg``): degrees in the ground plane, 0 = world +X (to the right in
the picture), 90 = world +Y (away from the camera), range (-180, 180].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class Path:
    """A polyline on the ground (metres) walked by arc length ``s``; fine sampling makes arcs exact to < 1 mm."""

    def __init__(self, points: np.ndarray) -> None:
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
            raise ValueError(f"a path needs at least two (X, Y) points, got shape {pts.shape}")
        seg = np.diff(pts, axis=0)
        seg_len = np.hypot(seg[:, 0], seg[:, 1])
        keep = np.concatenate([[True], seg_len > 1e-9])
        self.points = pts[keep]
        seg = np.diff(self.points, axis=0)
        self._seg_len = np.hypot(seg[:, 0], seg[:, 1])
        self._s = np.concatenate([[0.0], np.cumsum(self._seg_len)])
        self._seg_heading = np.arctan2(seg[:, 1], seg[:, 0])
        self.length = float(self._s[-1])

    @classmethod
    def line(cls, start: tuple[float, float], end: tuple[float, float]) -> Path:
        return cls(np.array([start, end], dtype=np.float64))

    @classmethod
    def arc(cls, center: tuple[float, float], radius: float, start_deg: float, sweep_deg: float) -> Path:
        """A circular arc; positive ``sweep_deg`` runs counter-clockwise seen from above."""
        n = max(2, int(abs(math.radians(sweep_deg)) * radius / 0.05) + 1)
        a = np.radians(start_deg + np.linspace(0.0, sweep_deg, n))
        return cls(np.stack([center[0] + radius * np.cos(a), center[1] + radius * np.sin(a)], axis=1))

    def point(self, s: float) -> np.ndarray:
        """Ground point (X, Y) at arc length ``s`` (clamped to the path)."""
        s = min(max(s, 0.0), self.length)
        i = int(np.clip(np.searchsorted(self._s, s, side="right") - 1, 0, len(self._seg_len) - 1))
        u = (s - self._s[i]) / self._seg_len[i]
        return self.points[i] + u * (self.points[i + 1] - self.points[i])

    def heading(self, s: float) -> float:
        """Direction of travel in radians at ``s``, interpolated between segment midpoints (smooth on arcs)."""
        s = min(max(s, 0.0), self.length)
        mids = (self._s[:-1] + self._s[1:]) / 2.0
        if len(mids) == 1:
            return float(self._seg_heading[0])
        unwrapped = np.unwrap(self._seg_heading)
        return float(np.interp(s, mids, unwrapped))

    def sub(self, s0: float, s1: float) -> Path:
        """The part of the path between arc lengths ``s0`` < ``s1``."""
        inner = self.points[(self._s > s0) & (self._s < s1)]
        return Path(np.vstack([self.point(s0), inner, self.point(s1)]))


@dataclass(frozen=True, slots=True)
class SpeedProfile:
    """``v(t) = v0 (1 + amp sin(2π t / period + phase))``, ``t`` in seconds since the person started walking."""

    v0: float
    amp: float = 0.0
    period: float = 6.0
    phase: float = 0.0

    def speed(self, t: float) -> float:
        return self.v0 * (1.0 + self.amp * math.sin(2 * math.pi * t / self.period + self.phase))

    def distance(self, t: float) -> float:
        """Metres covered after ``t`` seconds (the exact integral of :meth:`speed`)."""
        w = 2 * math.pi / self.period
        return self.v0 * t + self.v0 * self.amp / w * (math.cos(self.phase) - math.cos(w * t + self.phase))

    def time_at(self, s: float) -> float:
        """Seconds needed to cover ``s`` metres (Newton on the monotone distance function)."""
        t = s / self.v0
        for _ in range(30):
            err = self.distance(t) - s
            if abs(err) < 1e-9:
                break
            t -= err / max(self.speed(t), 1e-6)
        return t
