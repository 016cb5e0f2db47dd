"""Ground speed from foot trajectories: smoothing, calibration, physics limits and confidence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flowgraph.nodes.vibrio.calibration import fit_ground_plane
from flowgraph.nodes.vibrio.speed import CONTEXTS, SpeedConfig, SpeedEstimator, heading_deg

from .test_calibration import CORNERS, points, project

FPS = 30.0


def run(estimator: SpeedEstimator, positions: np.ndarray, times: np.ndarray, track_id: int = 1):
    return [estimator.update(track_id, float(t), world=(float(x), float(y))) for t, (x, y) in zip(
        times, positions, strict=True)]


def test_constant_speed_with_noise_is_measured_within_two_percent() -> None:
    rng = np.random.default_rng(0)
    times = np.arange(120) / FPS
    heading = math.radians(30)
    truth = 4.0 * np.c_[np.cos(heading) * times, np.sin(heading) * times]
    estimates = run(SpeedEstimator(), truth + rng.normal(0, 0.03, truth.shape), times)
    settled = [e for e in estimates[30:]]
    errors = [abs(e.speed_mps - 4.0) / 4.0 for e in settled]
    assert np.median(errors) < 0.02
    assert all(abs(e.heading_deg - 30) < 5 for e in settled)
    assert estimates[-1].distance_m == pytest.approx(4.0 * (times[-1] - times[4]), rel=0.05)
    assert settled[-1].confidence > 0.7
    assert estimates[0].speed_mps is None and estimates[0].confidence == 0  # not enough history yet


def test_speed_through_a_calibrated_camera_with_pixel_noise() -> None:
    """World path → pixels (+1 px noise) → homography → speed: median error within 5 %."""
    plane = fit_ground_plane(points(CORNERS))
    rng = np.random.default_rng(1)
    times = np.arange(150) / FPS
    for start, velocity in [((-8.0, 5.0), (5.0, 0.0)), ((0.0, 30.0), (0.0, -6.0)), ((5.0, 10.0), (-2.0, 2.0))]:
        truth = np.asarray(start) + np.outer(times, velocity)
        pixels = project(truth) + rng.normal(0, 1.0, truth.shape)
        estimates = run(SpeedEstimator(), plane.to_world(pixels), times)
        true_speed = math.hypot(*velocity)
        errors = [abs(e.speed_mps - true_speed) / true_speed for e in estimates[30:]]
        assert np.median(errors) <= 0.05, (start, velocity, np.median(errors))


def test_dropped_frames_leave_gaps_not_errors() -> None:
    rng = np.random.default_rng(2)
    times = np.sort(rng.choice(np.arange(300), 120, replace=False)) / FPS  # irregular: 60 % dropped
    truth = np.c_[3.0 * times, np.zeros_like(times)]
    estimates = run(SpeedEstimator(), truth + rng.normal(0, 0.02, truth.shape), times)
    assert np.median([abs(e.speed_mps - 3.0) for e in estimates[20:]]) < 0.06


def test_seldom_analysed_frames_still_give_a_speed() -> None:
    """One analysed frame every 0.85 s (a slow host behind a ``latest`` edge): four positions never fall inside the
    1 s window, so no speed was ever reported; the window now stretches to the last four, with less confidence."""
    rng = np.random.default_rng(3)
    times = np.arange(12) * 0.85
    truth = np.c_[4.0 * times, 1.0 + 0.5 * times]
    estimates = run(SpeedEstimator(), truth + rng.normal(0, 0.03, truth.shape), times)
    assert all(e.speed_mps is None for e in estimates[:3])
    reported = estimates[3:]
    assert all(e.speed_mps == pytest.approx(math.hypot(4.0, 0.5), rel=0.05) for e in reported)
    fast = run(SpeedEstimator(), truth[:1] + np.outer(np.arange(60) / FPS, (4.0, 0.5)), np.arange(60) / FPS)
    assert 0 < reported[-1].confidence < fast[-1].confidence
    # a gap longer than the longest stretch starts the history afresh
    late = SpeedEstimator()
    run(late, truth[:4], times[:4])
    assert late.update(1, times[3] + 10.0, world=(50.0, 5.0)).speed_mps is None
    assert len(late.tracks[1].samples) == 1  # no position older than 4 s is fitted


def test_teleport_is_clamped_to_the_context_and_loses_confidence() -> None:
    estimator = SpeedEstimator(SpeedConfig(context="walking"))
    times = np.arange(60) / FPS
    path = np.c_[1.2 * times, np.zeros_like(times)]
    path[40:, 0] += 8.0  # a wrong association: the "person" jumps 8 m
    estimates = run(estimator, path, times)
    limit = CONTEXTS["walking"]
    assert all(e.speed_mps <= limit.max_speed + 1e-9 for e in estimates if e.speed_mps is not None)
    assert estimates[39].confidence > 0.6
    assert min(e.confidence for e in estimates[40:50]) <= 0.5 * estimates[39].confidence
    # Acceleration is limited too: one frame cannot add more than max_accel / fps.
    speeds = [e.speed_mps for e in estimates if e.speed_mps is not None]
    assert max(np.diff(speeds)) <= limit.max_accel / FPS + 1e-9


def test_overrides_and_unknown_context() -> None:
    assert SpeedConfig(context="cycling", max_speed=5.0).limits().max_speed == 5.0
    with pytest.raises(ValueError, match="unknown speed context"):
        SpeedEstimator(SpeedConfig(context="flying"))


def test_uncalibrated_prior_measures_lateral_motion_with_low_confidence() -> None:
    estimator = SpeedEstimator()
    times = np.arange(90) / FPS
    box_h = 175.0  # px: 1.75 m person → 0.01 m/px
    estimates = [estimator.update(7, float(t), foot_px=(100 + 300 * t, 500.0), box_height_px=box_h) for t in times]
    assert estimates[-1].speed_mps == pytest.approx(3.0, rel=0.02)  # 300 px/s × 0.01 m/px
    assert 0 < estimates[-1].confidence <= 0.4


def test_heading_convention_and_pruning() -> None:
    assert heading_deg(1, 0) == 0 and heading_deg(0, 1) == 90 and heading_deg(-1, 0) == 180
    assert heading_deg(0, -1) == -90
    estimator = SpeedEstimator(SpeedConfig(forget_after_s=1.0))
    estimator.update(1, 0.0, world=(0.0, 0.0))
    estimator.update(2, 5.0, world=(0.0, 0.0))
    estimator.prune(5.5)
    assert list(estimator.tracks) == [2]
