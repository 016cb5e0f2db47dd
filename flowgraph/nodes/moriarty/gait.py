"""Stride events from ankle-speed minima: cadence, stride length, ground-contact time, left/right asymmetry.

A planted foot does not move, so in a fixed camera each foot's ankle speed drops to a valley once per stride
(the stance phase). Per foot, over a sliding window of history:

1. resample the ankle track to a uniform grid (frames may have been dropped) and low-pass it (zero phase);
2. speed in statures per second (body-size independent), valleys found as prominent minima
   (``scipy.signal.find_peaks`` on the negated speed);
3. around each valley the contact phase is where speed stays under a threshold between the window's low and
   high speed levels; its two threshold crossings are interpolated between samples. The event time is the
   middle of that contact phase (sub-frame precise), the contact time its length;
4. the stride period is the slope of a line through event times against stride number (a missed valley just
   skips a number), and cadence is two steps per stride: ``120 / period`` steps per minute.

Pose models swap left and right legs in side views (MediaPipe did so in a third of the frames of a rendered
walker), which scrambles per-foot events. The distance between the two ankles peaks once per step whichever
leg is which, so its autocorrelation gives a step period that no swap can change. When the per-foot stride
period agrees with neither that step period nor twice it, the labels are not trusted: cadence comes from the
step period, stride length from the distance travelled per stride, and per-foot figures (left/right contact,
asymmetry) are left out.

Stride length is the distance the body travelled between two contacts of the same foot: in metres from vibrio's
``foot_world`` (ground-plane homography) when given, and always in the image as statures. Assumes overground
movement seen by a camera that does not pan; on a treadmill the planted foot moves and valleys mean nothing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy import signal

from .smoothing import resample_uniform, smooth_series


@dataclass
class FootEvents:
    """Contact phases of one foot inside the analysed window (seconds)."""

    times: list[float] = field(default_factory=list)  # middle of each contact phase
    contacts: list[float] = field(default_factory=list)  # duration of each complete contact phase


@dataclass
class GaitMetrics:
    """What one window of gait says; every figure is None until enough strides were seen."""

    cadence_spm: float | None = None
    stride_time_s: float | None = None
    stride_length_m: float | None = None
    stride_length_statures: float | None = None
    contact_time_s: float | None = None
    contact_time_left_s: float | None = None
    contact_time_right_s: float | None = None
    contact_asymmetry_pct: float | None = None
    step_time_asymmetry_pct: float | None = None
    strides: int = 0

    def as_dict(self) -> dict[str, float | int | None]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class GaitConfig:
    """Tunables of the stride detector (the defaults suit walking to sprinting at 25-60 fps)."""

    cutoff_hz: float = 8.0  # low-pass of the ankle tracks
    min_stride_s: float = 0.4  # shortest stride of one foot (~300 steps/min)
    max_stride_s: float = 2.5  # longer gaps than this are not one stride
    contact_level: float = 0.15  # contact threshold, as a fraction between low and high speed
    min_valid: float = 0.7  # share of samples with both ankles visible needed to analyse


def _crossing(t: np.ndarray, v: np.ndarray, i: int, j: int, level: float) -> float:
    """Time where ``v`` crosses ``level`` between samples ``i`` and ``j`` (linear)."""
    dv = v[j] - v[i]
    if abs(dv) < 1e-12:
        return float(t[i])
    return float(t[i] + (level - v[i]) / dv * (t[j] - t[i]))


def foot_events(t: np.ndarray, speed: np.ndarray, rate: float, cfg: GaitConfig) -> FootEvents:
    """Contact phases of one foot from its (uniformly sampled, smoothed) speed."""
    ev = FootEvents()
    if len(speed) < 5:
        return ev
    low, high = np.percentile(speed, [5, 95])
    span = high - low
    if span <= 1e-6:
        return ev
    level = low + cfg.contact_level * span
    valleys, _ = signal.find_peaks(-speed, distance=max(1, int(cfg.min_stride_s * rate)), prominence=0.5 * span)
    for k in valleys:
        if speed[k] > level:
            continue
        i = k
        while i > 0 and speed[i] <= level:
            i -= 1
        j = k
        while j < len(speed) - 1 and speed[j] <= level:
            j += 1
        start_ok = speed[i] > level
        end_ok = speed[j] > level
        start = _crossing(t, speed, i, i + 1, level) if start_ok else float(t[i])
        end = _crossing(t, speed, j - 1, j, level) if end_ok else float(t[j])
        if start_ok and end_ok:
            ev.times.append((start + end) / 2)
            ev.contacts.append(end - start)
        # A contact cut by the window's edge has no reliable middle: it counts for neither time nor duration.
    return ev


def stride_period(times: list[float], cfg: GaitConfig) -> tuple[float | None, int]:
    """Seconds per stride from event times (a fitted slope), and how many strides that spans."""
    if len(times) < 2:
        return None, 0
    e = np.asarray(times)
    diffs = np.diff(e)
    typical = float(np.median(diffs))
    if typical < cfg.min_stride_s * 0.8 or typical > cfg.max_stride_s:
        return None, 0
    index = np.round((e - e[0]) / typical)
    if len(np.unique(index)) != len(index):
        return None, 0
    if len(e) == 2:
        return float(diffs[0] / max(index[1], 1)), int(index[-1])
    slope, _ = np.polyfit(index, e, 1)
    return float(slope), int(index[-1])


def step_period(ankles: np.ndarray, rate: float, cfg: GaitConfig) -> float | None:
    """Seconds per step from the ankle separation's autocorrelation (``ankles`` ``(T, 4)``: left x, y, right
    x, y on a uniform grid), or None when the separation shows no clear rhythm."""
    separation = np.hypot(ankles[:, 0] - ankles[:, 2], ankles[:, 1] - ankles[:, 3])
    s = separation - separation.mean()
    energy = float(np.dot(s, s))
    if energy <= 1e-9:
        return None
    ac = np.correlate(s, s, "full")[len(s) - 1:] / energy
    shortest, longest = int(cfg.min_stride_s / 2 * rate), int(cfg.max_stride_s / 2 * rate)
    longest = min(longest, len(ac) // 4)  # a rhythm needs four steps in the window to count
    peaks, _ = signal.find_peaks(ac[: longest + 2])
    peaks = [int(k) for k in peaks if shortest <= k <= longest and ac[k] >= 0.3]
    if not peaks:
        return None
    k = peaks[0]
    y0, y1, y2 = ac[k - 1], ac[k], ac[k + 1]
    bend = y0 - 2 * y1 + y2
    offset = 0.5 * (y0 - y2) / bend if bend < 0 else 0.0  # the parabola through the peak's three samples
    return float((k + offset) / rate)


def _speed(t: np.ndarray, track: np.ndarray) -> float | None:
    """Ground speed of a track (units per second) from a straight-line fit of each coordinate against time."""
    ok = np.isfinite(track).all(axis=1)
    if ok.sum() < 3 or t[ok][-1] - t[ok][0] <= 0:
        return None
    vx = np.polyfit(t[ok], track[ok, 0], 1)[0]
    vy = np.polyfit(t[ok], track[ok, 1], 1)[0]
    return float(np.hypot(vx, vy))


def _asymmetry(left: float | None, right: float | None) -> float | None:
    if left is None or right is None or left + right <= 0:
        return None
    return 100.0 * abs(left - right) / ((left + right) / 2)


def _step_times(left: list[float], right: list[float]) -> tuple[float | None, float | None]:
    """Mean time from the other foot's contact to this foot's next one, per foot."""
    merged = sorted([(t, "L") for t in left] + [(t, "R") for t in right])
    steps: dict[str, list[float]] = {"L": [], "R": []}
    for (t0, f0), (t1, f1) in itertools.pairwise(merged):
        if f0 != f1:
            steps[f1].append(t1 - t0)
    mean = {f: (float(np.mean(v)) if v else None) for f, v in steps.items()}
    return mean["L"], mean["R"]


def _stride_lengths(times: list[float], t: np.ndarray, track: np.ndarray, period: float) -> list[float]:
    """Distances ``track`` covers between consecutive events of one foot that are one stride apart."""
    out = []
    for a, b in itertools.pairwise(times):
        if abs((b - a) - period) > 0.3 * period:
            continue  # a missed contact in between: not one stride
        pa = np.array([np.interp(a, t, track[:, d]) for d in range(2)])
        pb = np.array([np.interp(b, t, track[:, d]) for d in range(2)])
        if np.isfinite(pa).all() and np.isfinite(pb).all():
            out.append(float(np.hypot(*(pb - pa))))
    return out


def analyse_gait(times: np.ndarray, left_ankle: np.ndarray, right_ankle: np.ndarray, stature: float | None,
                 foot_world: np.ndarray | None = None, cfg: GaitConfig | None = None) -> GaitMetrics:
    """Gait metrics of one person over a history window.

    ``times`` ``(T,)`` seconds; ``left_ankle``/``right_ankle`` ``(T, 2)`` pixels (NaN where gated);
    ``stature`` body height in pixels; ``foot_world`` ``(T, 2)`` metres on the ground plane, or None.
    """
    cfg = cfg or GaitConfig()
    out = GaitMetrics()
    times = np.asarray(times, dtype=np.float64)
    if len(times) < 10 or stature is None or stature <= 0 or times[-1] - times[0] < cfg.min_stride_s * 2:
        return out
    valid = np.isfinite(left_ankle).all(axis=1) & np.isfinite(right_ankle).all(axis=1)
    if valid.mean() < cfg.min_valid:
        return out
    rate = float(np.clip(1.0 / np.median(np.diff(times)), 10.0, 240.0))
    grid, ankles = resample_uniform(times[valid], np.concatenate([left_ankle, right_ankle], axis=1)[valid], rate)
    if len(grid) < 10 or not np.isfinite(ankles).all():
        return out
    ankles = smooth_series(ankles, rate, min(cfg.cutoff_hz, 0.45 * rate))
    velocity = np.gradient(ankles, 1.0 / rate, axis=0) / stature
    events = [foot_events(grid, np.hypot(velocity[:, 0], velocity[:, 1]), rate, cfg),
              foot_events(grid, np.hypot(velocity[:, 2], velocity[:, 3]), rate, cfg)]
    periods = [stride_period(e.times, cfg) for e in events]
    total = sum(n for _, n in periods)
    per_foot = sum(p * n for p, n in periods if p is not None) / total if total else None
    step = step_period(ankles, rate, cfg)
    # the separation may lock onto whole strides when left and right steps look different (one leg nearer the
    # camera): per-foot events are trusted when they agree with either reading
    labelled = per_foot is not None and (step is None or min(abs(per_foot - 2 * step), abs(per_foot - step))
                                         <= 0.1 * per_foot)
    if labelled:
        assert per_foot is not None
        period = per_foot
    elif step is not None:
        period = 2 * step
        total = int((grid[-1] - grid[0]) / period)
    else:
        return out
    out.strides = total
    out.stride_time_s = period
    out.cadence_spm = 120.0 / period
    contact = [float(np.mean(e.contacts)) if e.contacts else None for e in events]
    known = [c for c in contact if c is not None]
    out.contact_time_s = float(np.mean(known)) if known else None
    if labelled:
        out.contact_time_left_s, out.contact_time_right_s = contact
        out.contact_asymmetry_pct = _asymmetry(*contact)
        out.step_time_asymmetry_pct = _asymmetry(*_step_times(events[0].times, events[1].times))
    world = None
    if foot_world is not None:
        world = np.asarray(foot_world, dtype=np.float64)
        if np.isfinite(world).all(axis=1).sum() < 2:
            world = None
    if labelled:
        image_strides = [s for e, d in zip(events, (0, 2), strict=True)
                         for s in _stride_lengths(e.times, grid, ankles[:, d:d + 2], period)]
        if image_strides:
            out.stride_length_statures = float(np.median(image_strides)) / stature
        if world is not None:
            ok = np.isfinite(world).all(axis=1)
            world_strides = [s for e in events for s in _stride_lengths(e.times, times[ok], world[ok], period)]
            if world_strides:
                out.stride_length_m = float(np.median(world_strides))
    else:  # labels swap: the body's speed times the stride period (the ankles' midpoint is swap-free)
        image_speed = _speed(grid, (ankles[:, 0:2] + ankles[:, 2:4]) / 2)
        if image_speed is not None:
            out.stride_length_statures = image_speed * period / stature
        world_speed = None if world is None else _speed(times, world)
        if world_speed is not None:
            out.stride_length_m = world_speed * period
    return out
