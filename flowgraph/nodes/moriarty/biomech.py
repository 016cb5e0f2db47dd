"""Per-person biomechanics over time: smoothing, joint angles and their velocities, centre of mass, gait, GRF.

:class:`PersonMotion` holds one person's bounded history and turns each new (gated) pose into smoothed
keypoints, joint angles and a metrics dict. :class:`MotionRegistry` keeps one per ``(stream_id, track_id)``,
bounded in count and evicting people not seen for a while, so a long stream with thousands of passers-by
holds memory for only the current few.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .angles import ANGLE_NAMES, angular_velocities, joint_angles
from .com import centre_of_mass, stature_px
from .gait import GaitConfig, GaitMetrics, analyse_gait
from .grf import ground_reaction_force, vertical_acceleration
from .skeleton import Skeleton
from .smoothing import OneEuro


@dataclass
class MotionConfig:
    """The node params that shape biomechanics (see the node's Params for meanings)."""

    smoothing: str = "one_euro"
    min_cutoff: float = 1.5
    beta: float = 0.3
    history_s: float = 8.0
    gait_every_s: float = 0.25
    height_m: float = 1.75
    body_mass_kg: float = 0.0
    gait: GaitConfig = field(default_factory=GaitConfig)


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


class PersonMotion:
    """One tracked person's history and the figures derived from it."""

    def __init__(self, skeleton: Skeleton, cfg: MotionConfig, max_samples: int = 1024) -> None:
        self.skeleton = skeleton
        self.cfg = cfg
        self.filter = OneEuro(cfg.min_cutoff, cfg.beta)
        self.times: deque[float] = deque(maxlen=max_samples)
        self.keypoints: deque[np.ndarray] = deque(maxlen=max_samples)
        self.angles: deque[dict[str, float | None]] = deque(maxlen=max_samples)
        self.com: deque[np.ndarray] = deque(maxlen=max_samples)
        self.foot_world: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self.statures: deque[float] = deque(maxlen=64)
        self._gait = GaitMetrics()
        self._gait_at = -math.inf
        self.last_seen = time.monotonic()

    def reset(self) -> None:
        for d in (self.times, self.keypoints, self.angles, self.com, self.foot_world, self.statures):
            d.clear()
        self.filter.reset()
        self._gait = GaitMetrics()
        self._gait_at = -math.inf

    def _trim(self, now: float) -> None:
        while self.times and self.times[0] < now - self.cfg.history_s:
            for d in (self.times, self.keypoints, self.angles, self.com, self.foot_world):
                d.popleft()

    def stature(self) -> float | None:
        """Median body height in pixels over recent frames (single frames are noisy)."""
        return float(np.median(self.statures)) if self.statures else None

    def update(self, t: float, keypoints: np.ndarray, foot_world: tuple[float, float] | None = None
               ) -> tuple[np.ndarray, dict[str, float | None], dict[str, Any]]:
        """Add a gated pose seen at media time ``t`` (seconds): smoothed keypoints, joint angles, metrics."""
        self.last_seen = time.monotonic()
        if self.times and t <= self.times[-1]:
            if t < self.times[-1] - 1.0:  # time went backwards (new stream, seek): start over
                self.reset()
            else:  # the same or an older frame again: nothing new to learn from it
                t = self.times[-1] + 1e-6
        smoothed = np.array(keypoints, dtype=np.float64, copy=True)
        if self.cfg.smoothing == "one_euro":
            smoothed[:, :2] = self.filter(t, keypoints[:, :2])
        angles = joint_angles(smoothed, self.skeleton)
        com = centre_of_mass(smoothed, self.skeleton)
        height = stature_px(smoothed, self.skeleton)
        if height is not None:
            self.statures.append(height)
        self.times.append(t)
        self.keypoints.append(smoothed)
        self.angles.append(angles)
        self.com.append(com if com is not None else np.full(2, np.nan))
        self.foot_world.append(foot_world if foot_world is not None else (math.nan, math.nan))
        self._trim(t)
        return smoothed, angles, self._metrics(t, smoothed, com)

    def _metrics(self, t: float, keypoints: np.ndarray, com: np.ndarray | None) -> dict[str, Any]:
        times = np.fromiter(self.times, dtype=np.float64, count=len(self.times))
        history = {n: np.array([a[n] if a[n] is not None else np.nan for a in self.angles]) for n in ANGLE_NAMES}
        velocity = angular_velocities(times, history)
        visible = np.isfinite(keypoints[:, 0])
        metrics: dict[str, Any] = {
            "visible": _r(float(visible.mean())),
            "score": _r(float(keypoints[visible, 2].mean()) if visible.any() else None),
            "angular_velocity": {k: _r(v, 1) for k, v in velocity.items()},
            "centre_of_mass": None if com is None else [_r(com[0], 2), _r(com[1], 2)],
            "stature_px": _r(self.stature(), 1),
        }
        if t - self._gait_at >= self.cfg.gait_every_s:  # gait needs seconds of history; no need to redo it per frame
            self._gait_at = t
            self._gait = self._analyse_gait(times)
        metrics.update(self._gait.as_dict())
        if self.cfg.body_mass_kg > 0:
            metrics.update(self._grf(times))
        return metrics

    def _analyse_gait(self, times: np.ndarray) -> GaitMetrics:
        kps = np.stack(list(self.keypoints))
        world = np.array(self.foot_world, dtype=np.float64)
        has_world = bool(np.isfinite(world).all(axis=1).any())
        return analyse_gait(times, self.skeleton.points(kps, "left_ankle"), self.skeleton.points(kps, "right_ankle"),
                            self.stature(), world if has_world else None, self.cfg.gait)

    def _grf(self, times: np.ndarray) -> dict[str, Any]:
        height = self.stature()
        com_y = np.array([c[1] for c in self.com])
        found = None if height is None else vertical_acceleration(times, com_y, self.cfg.height_m / height)
        if found is None:
            return {"grf_n": None, "grf_bw": None, "com_accel_mps2": None, "grf_time_s": None}
        a_up, at = found
        newtons, weights = ground_reaction_force(self.cfg.body_mass_kg, a_up)
        return {"grf_n": _r(newtons, 1), "grf_bw": _r(weights), "com_accel_mps2": _r(a_up), "grf_time_s": _r(at, 4)}


class MotionRegistry:
    """``PersonMotion`` per key, at most ``max_people``, forgetting people unseen for ``stale_s`` seconds."""

    def __init__(self, skeleton: Skeleton, cfg: MotionConfig, max_people: int = 64, stale_s: float = 5.0) -> None:
        self.skeleton = skeleton
        self.cfg = cfg
        self.max_people = max(1, max_people)
        self.stale_s = stale_s
        self._people: OrderedDict[Hashable, PersonMotion] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._people)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._people

    def get(self, key: Hashable) -> PersonMotion:
        person = self._people.pop(key, None)
        if person is None:
            person = PersonMotion(self.skeleton, self.cfg)
        self._people[key] = person  # most recently used last
        return person

    def forget_stream(self, stream_id: str) -> int:
        """Drop every person of one stream (keys are ``(stream_id, track_id)``); returns how many."""
        gone = [k for k in self._people if isinstance(k, tuple) and k and k[0] == stream_id]
        for k in gone:
            del self._people[k]
        return len(gone)

    def evict(self, now: float | None = None) -> list[Hashable]:
        """Drop stale people and the least recently used beyond the cap; returns the keys dropped."""
        now = time.monotonic() if now is None else now
        gone = [k for k, p in self._people.items() if now - p.last_seen > self.stale_s]
        for k in gone:
            del self._people[k]
        while len(self._people) > self.max_people:
            k, _ = self._people.popitem(last=False)
            gone.append(k)
        self.evicted += len(gone)
        return gone
