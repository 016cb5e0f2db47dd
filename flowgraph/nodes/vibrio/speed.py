"""Ground speed per track: foot-point trajectory in metres → smoothed velocity → physics limits → confidence.

Each track keeps the last ``smoothing_s`` seconds of foot positions with their timestamps (stretched back to its
last four positions, up to four times as long, when frames are analysed too seldom for four inside it). Velocity is
the slope of a least-squares polynomial fit (order 1 or 2) evaluated at the newest sample — a Savitzky–Golay
derivative that takes the real timestamps, so frames skipped by a ``latest`` edge simply leave gaps. The estimate is
then held to the context's physics: a speed above ``max_speed`` is clamped, a change faster than ``max_accel`` is
rate-limited, and either lowers the confidence.

Positions come from the ground-plane homography when calibrated. Uncalibrated, image displacements are scaled by
the person-height prior (m/px at the person's depth) and accumulated into a pseudo-ground track: motion across the
image is measured, motion towards or away from the camera is foreshortened, so those speeds are capped at
``UNCALIBRATED_CONFIDENCE``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Limits:
    """What a person can physically do in a context."""

    max_speed: float  # m/s
    max_accel: float  # m/s²


#: Physics limits per context (the running figures are the Morphine document's: 55 km/h, 10 m/s²).
CONTEXTS: dict[str, Limits] = {
    "walking": Limits(3.5, 3.0),
    "running": Limits(55 / 3.6, 10.0),
    "football": Limits(11.5, 9.0),
    "cycling": Limits(25.0, 6.0),
    "generic": Limits(40.0, 20.0),
}

UNCALIBRATED_CONFIDENCE = 0.4
#: Fit residual (m, RMS) at which the fit-quality factor halves the confidence.
RESIDUAL_SCALE_M = 0.15
#: Minimum samples and time span before a speed is reported.
MIN_SAMPLES, MIN_SPAN_S = 4, 0.25
#: When frames are analysed too seldom for ``MIN_SAMPLES`` inside ``smoothing_s`` (a slow host behind a ``latest``
#: edge: one analysed frame a second), the window stretches back to the last ``MIN_SAMPLES`` samples, up to this
#: many times ``smoothing_s``; the confidence drops by the stretch.
MAX_STRETCH = 4.0


@dataclass
class SpeedConfig:
    context: str = "running"
    smoothing_s: float = 1.0
    order: int = 1
    max_speed: float = 0.0  # 0 = from context
    max_accel: float = 0.0  # 0 = from context
    person_height_m: float = 1.75
    #: Forget a track's history after this many seconds without an update.
    forget_after_s: float = 5.0

    def limits(self) -> Limits:
        base = CONTEXTS.get(self.context)
        if base is None:
            raise ValueError(f"unknown speed context {self.context!r} (expected one of {', '.join(CONTEXTS)})")
        return Limits(self.max_speed or base.max_speed, self.max_accel or base.max_accel)


@dataclass
class SpeedEstimate:
    speed_mps: float | None
    heading_deg: float | None
    distance_m: float
    confidence: float


@dataclass
class TrackMotion:
    """One track's recent ground positions and running estimates."""

    samples: deque[tuple[float, float, float]] = field(default_factory=lambda: deque(maxlen=512))
    speed: float | None = None
    velocity: tuple[float, float] = (0.0, 0.0)
    distance: float = 0.0
    last_time: float = 0.0
    last_foot_px: tuple[float, float] | None = None
    pseudo: tuple[float, float] = (0.0, 0.0)


def heading_deg(vx: float, vy: float) -> float:
    """Direction of travel in degrees: 0 = world +X, 90 = world +Y, range (-180, 180] (synth's convention)."""
    angle = math.degrees(math.atan2(vy, vx))
    return 180.0 if angle == -180.0 else angle


def fit_velocity(samples: np.ndarray, order: int) -> tuple[np.ndarray, float]:
    """Velocity (2,) at the newest sample and RMS residual (m) of a polynomial fit of ``(t, x, y)`` rows."""
    t = samples[:, 0] - samples[-1, 0]
    order = min(order, len(samples) - 2)
    design = np.vander(t, order + 1, increasing=True)  # columns 1, t, t²: the t coefficient is d/dt at t = 0
    coef, *_ = np.linalg.lstsq(design, samples[:, 1:], rcond=None)
    residual = samples[:, 1:] - design @ coef
    return coef[1], float(np.sqrt((residual**2).sum(axis=1).mean()))


class SpeedEstimator:
    """Speeds for all tracks of one stream."""

    def __init__(self, config: SpeedConfig | None = None) -> None:
        self.config = config or SpeedConfig()
        self.limits = self.config.limits()
        self.tracks: dict[int, TrackMotion] = {}

    def update(self, track_id: int, now: float, *, world: tuple[float, float] | None = None,
               foot_px: tuple[float, float] | None = None, box_height_px: float = 0.0) -> SpeedEstimate:
        """Add one observation of ``track_id`` at ``now`` (seconds) and return the current estimate.

        Pass ``world`` (metres) when calibrated; otherwise ``foot_px`` and ``box_height_px`` for the prior.
        """
        c = self.config
        motion = self.tracks.get(track_id)
        if motion is None:
            motion = self.tracks[track_id] = TrackMotion()
        calibrated = world is not None
        if calibrated:
            assert world is not None
            position = world
        elif foot_px is not None:
            position = self._pseudo_position(motion, foot_px, box_height_px)
        else:
            return SpeedEstimate(motion.speed, None, motion.distance, 0.0)
        if not (math.isfinite(position[0]) and math.isfinite(position[1])):
            return SpeedEstimate(motion.speed, None, motion.distance, 0.0)
        if motion.samples and now <= motion.samples[-1][0]:
            return self._estimate(motion, calibrated, 0.0, 1.0)  # same or older timestamp: nothing new
        motion.samples.append((now, position[0], position[1]))
        while len(motion.samples) > MIN_SAMPLES and motion.samples[0][0] < now - c.smoothing_s:
            motion.samples.popleft()
        while motion.samples and motion.samples[0][0] < now - MAX_STRETCH * c.smoothing_s:
            motion.samples.popleft()
        previous_time, motion.last_time = motion.last_time, now
        if len(motion.samples) < MIN_SAMPLES or now - motion.samples[0][0] < MIN_SPAN_S:
            return SpeedEstimate(None, None, motion.distance, 0.0)
        velocity, residual = fit_velocity(np.asarray(motion.samples), c.order)
        speed = float(np.hypot(*velocity))
        physics = 1.0
        if speed > self.limits.max_speed:
            velocity = velocity * (self.limits.max_speed / speed)
            speed, physics = self.limits.max_speed, 0.2
        if motion.speed is not None and previous_time:
            dt = now - previous_time
            allowed = self.limits.max_accel * dt
            if abs(speed - motion.speed) > allowed:
                limited = motion.speed + math.copysign(allowed, speed - motion.speed)
                velocity = velocity * (limited / speed) if speed > 0 else velocity
                speed, physics = limited, min(physics, 0.5)
            motion.distance += 0.5 * (speed + motion.speed) * dt
        motion.speed = speed
        motion.velocity = (float(velocity[0]), float(velocity[1]))
        span = now - motion.samples[0][0]
        maturity = min(1.0, span / max(c.smoothing_s * 0.9, 1e-6), c.smoothing_s / span)  # short or stretched
        quality = 1.0 / (1.0 + residual / RESIDUAL_SCALE_M)
        return self._estimate(motion, calibrated, maturity * quality, physics)

    def _estimate(self, motion: TrackMotion, calibrated: bool, fit: float, physics: float) -> SpeedEstimate:
        ceiling = 1.0 if calibrated else UNCALIBRATED_CONFIDENCE
        heading = heading_deg(*motion.velocity) if motion.speed else None
        return SpeedEstimate(motion.speed, heading, motion.distance, round(ceiling * fit * physics, 4))

    def _pseudo_position(self, motion: TrackMotion, foot_px: tuple[float, float],
                         box_height_px: float) -> tuple[float, float]:
        """Accumulate image displacement × local m/px into a pseudo-ground track (uncalibrated)."""
        if motion.last_foot_px is not None:
            scale = self.config.person_height_m / max(box_height_px, 1.0)
            dx = (foot_px[0] - motion.last_foot_px[0]) * scale
            dy = -(foot_px[1] - motion.last_foot_px[1]) * scale  # image y grows downwards; world y away
            motion.pseudo = (motion.pseudo[0] + dx, motion.pseudo[1] + dy)
        motion.last_foot_px = foot_px
        return motion.pseudo

    def prune(self, now: float) -> None:
        """Forget tracks not seen for ``forget_after_s`` (keeps memory bounded on long streams)."""
        stale = [tid for tid, m in self.tracks.items() if now - m.last_time > self.config.forget_after_s]
        for tid in stale:
            del self.tracks[tid]
