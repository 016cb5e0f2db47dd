"""Vertical ground-reaction force from the motion of the centre of mass: ``F = m * (g + a_up)``.

Newton's second law for the whole body: the ground pushes with whatever force makes the centre of mass
accelerate as observed, plus what holds the body against gravity. The acceleration comes from the image: the
centre of mass's vertical pixel track, scaled to metres with the person's stature in pixels and their real
height (a parameter), differentiated twice by a centred 5-point quadratic (Savitzky-Golay) fit. The estimate
therefore describes the moment two samples before the newest one, and at 25-30 fps it smooths impact peaks
(it is a trend, not a force plate). In flight the ground cannot pull: the force is clipped at zero.
"""

from __future__ import annotations

import numpy as np

from .smoothing import resample_uniform

G = 9.80665
_POINTS = 5
# Second derivative of a quadratic fitted to 5 equally spaced samples, at the middle one, times dt**2.
_SG5_D2 = np.array([2.0, -1.0, -2.0, -1.0, 2.0]) / 7.0


def vertical_acceleration(times: np.ndarray, y_px: np.ndarray, m_per_px: float) -> tuple[float, float] | None:
    """Upward acceleration (m/s^2) of a pixel track, and the time it refers to; None without 5 good samples.

    Image y grows downwards, so upward acceleration is minus the second derivative of y.
    """
    times = np.asarray(times, dtype=np.float64)
    y = np.asarray(y_px, dtype=np.float64)
    ok = np.isfinite(y)
    if ok.sum() < _POINTS or m_per_px <= 0:
        return None
    t, y = times[ok], y[ok]
    dt = float(np.median(np.diff(t[-_POINTS * 2:])))
    if dt <= 0:
        return None
    # Only the last few samples matter; resampling keeps dropped frames from skewing the finite difference.
    grid, ys = resample_uniform(t[t >= t[-1] - (_POINTS + 1) * dt], y[t >= t[-1] - (_POINTS + 1) * dt], 1.0 / dt)
    if len(ys) < _POINTS or not np.isfinite(ys[-_POINTS:]).all():
        return None
    d2 = float(np.dot(_SG5_D2, ys[-_POINTS:])) / (dt * dt)
    return -d2 * m_per_px, float(grid[-1 - _POINTS // 2])


def ground_reaction_force(mass_kg: float, a_up: float) -> tuple[float, float]:
    """``(newtons, body weights)`` of the vertical force the ground exerts, never below zero."""
    force = max(0.0, mass_kg * (G + a_up))
    return force, force / (mass_kg * G)
