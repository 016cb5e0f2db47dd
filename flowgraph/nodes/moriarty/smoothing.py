"""Smoothing of keypoint tracks: a One-Euro filter for live data, scipy filters for short histories.

The One-Euro filter (Casiez, Roussel, Vogel 2012) is a low-pass filter whose cut-off rises with speed: still
joints are smoothed hard (no jitter), fast ones lightly (little lag). It is applied element-wise to a whole
``(K, 2)`` keypoint array per frame; an element that goes missing (NaN) is reset and restarts from its next value,
so a gated joint is never filled in from its past.

Histories for gait analysis are resampled to a uniform grid first (frames can be dropped under the latest policy)
and then filtered with Savitzky-Golay or a zero-phase Butterworth from scipy.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import signal


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    """Element-wise One-Euro filter over arrays of a fixed shape, with irregular time steps."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self._t: float | None = None
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def reset(self) -> None:
        self._t = self._x = self._dx = None

    def __call__(self, t: float, x: np.ndarray) -> np.ndarray:
        """Filtered copy of ``x`` observed at time ``t`` (seconds); NaN stays NaN."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or self._x.shape != x.shape or t <= self._t:
            self._t, self._x, self._dx = t, x.copy(), np.zeros_like(x)
            return x.copy()
        dt = t - self._t
        assert self._dx is not None
        prev = self._x
        fresh = np.isnan(prev) & ~np.isnan(x)  # joint (re)appeared: start from the measurement
        dx = (x - prev) / dt
        a_d = _alpha(self.d_cutoff, dt)
        dx_hat = np.where(np.isnan(self._dx), dx, a_d * dx + (1 - a_d) * self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(np.nan_to_num(dx_hat))
        a = _alpha(cutoff, dt)
        x_hat = a * x + (1 - a) * prev
        x_hat = np.where(fresh, x, x_hat)
        dx_hat = np.where(fresh, 0.0, dx_hat)
        self._t, self._x, self._dx = t, x_hat, dx_hat
        return np.array(x_hat, copy=True)


def resample_uniform(times: np.ndarray, values: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear resampling of ``values`` (``(T,)`` or ``(T, D)``) onto a uniform grid at ``rate_hz``.

    NaN samples are left out of the interpolation; a grid point with no finite neighbour stays NaN.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if len(times) < 2:
        return times.copy(), values.copy()
    count = int(np.floor((times[-1] - times[0]) * rate_hz + 1e-6)) + 1
    grid = np.minimum(times[0] + np.arange(count) / rate_hz, times[-1])  # no rounding past the last sample
    flat = values.reshape(len(times), -1)
    out = np.full((len(grid), flat.shape[1]), np.nan)
    for d in range(flat.shape[1]):
        ok = np.isfinite(flat[:, d])
        if ok.sum() >= 2:
            out[:, d] = np.interp(grid, times[ok], flat[ok, d], left=np.nan, right=np.nan)
    return grid, out.reshape((len(grid), *values.shape[1:]))


def smooth_series(values: np.ndarray, rate_hz: float, cutoff_hz: float = 6.0,
                  method: Literal["savgol", "butter"] = "butter") -> np.ndarray:
    """Zero-phase low-pass of a uniformly sampled series along axis 0 (NaNs must be absent)."""
    n = len(values)
    if method == "butter":
        wn = min(cutoff_hz / (rate_hz / 2.0), 0.99)
        b, a = signal.butter(2, wn)
        pad = min(3 * max(len(a), len(b)), n - 1)
        if n < 4 or pad < 1:
            return np.asarray(values, dtype=np.float64)
        return np.asarray(signal.filtfilt(b, a, values, axis=0, padlen=pad))
    window = round(rate_hz / cutoff_hz) | 1  # odd, about one cut-off period
    window = max(5, min(window, n - (1 - n % 2)))
    if n < 5 or window > n:
        return np.asarray(values, dtype=np.float64)
    return np.asarray(signal.savgol_filter(values, window, 2, axis=0))


def derivative(values: np.ndarray, rate_hz: float, order: int = 1) -> np.ndarray:
    """Central-difference derivative of a uniformly sampled series along axis 0."""
    out = np.asarray(values, dtype=np.float64)
    for _ in range(order):
        if len(out) < 2:
            return np.zeros_like(out)
        out = np.gradient(out, 1.0 / rate_hz, axis=0)
    return out
