"""Stride events from ankle-speed minima: cadence within 2 %, stride length, contact time, asymmetry."""

from __future__ import annotations

import numpy as np

from flowgraph.nodes.moriarty.biomech import MotionConfig, PersonMotion
from flowgraph.nodes.moriarty.gait import GaitConfig, analyse_gait, stride_period
from flowgraph.nodes.moriarty.skeleton import BLAZEPOSE33, gate

WALK = dict(cadence_spm=110, speed_mps=1.4, duty=0.62, lift_m=0.2, lean_deg=2, elbow_deg=150)


def series(g, seconds: float = 8.0, fps: float = 30.0, drop: float = 0.0, seed: int = 0):
    """Times, ankles, stature and world track; ``drop`` = share of frames lost (latest-frame policy)."""
    rng = np.random.default_rng(seed)
    times = [i / fps for i in range(int(seconds * fps)) if rng.random() >= drop]
    kps = np.stack([g.keypoints(t) for t in times])
    left = BLAZEPOSE33.points(kps, "left_ankle")
    right = BLAZEPOSE33.points(kps, "right_ankle")
    world = np.array([g.foot_world(t) for t in times])
    return np.array(times), left, right, g.stature_m * g.px_per_m, world


def test_cadence_and_stride_of_a_runner_and_a_walker(gait) -> None:
    report = {}
    for name, kw in {"run": {}, "walk": WALK, "sprint": dict(cadence_spm=200, speed_mps=7.0, duty=0.25)}.items():
        g = gait(noise_px=1.0, seed=1, **kw)
        m = analyse_gait(*series(g))
        assert m.cadence_spm is not None and m.stride_length_m is not None and m.contact_time_s is not None
        cadence_err = abs(m.cadence_spm - g.cadence_spm) / g.cadence_spm
        stride_err = abs(m.stride_length_m - g.stride_m) / g.stride_m
        contact_err = abs(m.contact_time_s - g.contact_time_s()) / g.contact_time_s()
        report[name] = (round(cadence_err * 100, 3), round(stride_err * 100, 3), round(contact_err * 100, 1))
        assert cadence_err <= 0.02, report
        assert stride_err <= 0.03, report
        assert contact_err <= 0.15, report  # the threshold sits on the take-off and touch-down speed ramps
        assert m.stride_length_statures is not None
        assert abs(m.stride_length_statures - g.stride_m / g.stature_m) / (g.stride_m / g.stature_m) < 0.05
        assert m.contact_asymmetry_pct is not None and m.contact_asymmetry_pct < 3
        assert m.step_time_asymmetry_pct is not None and m.step_time_asymmetry_pct < 3
    print("cadence / stride length / contact time error (%):", report)


def test_dropped_frames_and_25_fps(gait) -> None:
    g = gait(noise_px=1.0, seed=2)
    m = analyse_gait(*series(g, fps=25.0, drop=0.2, seed=5))
    assert m.cadence_spm is not None
    assert abs(m.cadence_spm - g.cadence_spm) / g.cadence_spm <= 0.02


def test_a_limp_shows_as_contact_asymmetry(gait) -> None:
    g = gait(duty=0.55, duty_left=0.68, cadence_spm=110, speed_mps=1.3, lift_m=0.2)
    m = analyse_gait(*series(g))
    expected = 100 * abs(0.68 - 0.55) / ((0.68 + 0.55) / 2)
    assert m.contact_asymmetry_pct is not None and abs(m.contact_asymmetry_pct - expected) < 0.35 * expected
    assert m.contact_time_left_s > m.contact_time_right_s
    assert m.cadence_spm is not None and abs(m.cadence_spm - 110) / 110 <= 0.02


def test_without_calibration_there_is_no_metre_figure(gait) -> None:
    t, left, right, stature, _ = series(gait())
    m = analyse_gait(t, left, right, stature, None)
    assert m.stride_length_m is None and m.stride_length_statures is not None


def test_not_enough_to_go_on_gives_none(gait) -> None:
    t, left, right, stature, world = series(gait(), seconds=0.5)
    assert analyse_gait(t, left, right, stature, world).cadence_spm is None
    t, left, right, stature, world = series(gait())
    left[::2] = np.nan  # the left ankle is gated out half the time
    assert analyse_gait(t, left, right, stature, world).cadence_spm is None
    assert analyse_gait(t, right, right, None, world).cadence_spm is None
    still = np.tile([[300.0, 600.0]], (len(t), 1))
    assert analyse_gait(t, still, still, stature, world).cadence_spm is None


def test_stride_period_skips_a_missed_contact() -> None:
    period, strides = stride_period([0.0, 0.7, 2.1, 2.8], GaitConfig())
    assert period is not None and abs(period - 0.7) < 1e-9 and strides == 4


def test_per_person_metrics_through_motion_history(gait) -> None:
    g = gait(noise_px=1.0)
    motion = PersonMotion(BLAZEPOSE33, MotionConfig())
    metrics = {}
    for i in range(240):
        t = i / 30
        _, _, metrics = motion.update(t, gate(g.keypoints(t), 0.5), g.foot_world(t))
    assert abs(metrics["cadence_spm"] - 170) / 170 <= 0.02
    assert abs(metrics["stride_length_m"] - g.stride_m) < 0.05
    assert metrics["strides"] >= 4
    assert set(metrics["angular_velocity"]) >= {"left_knee", "trunk_lean"}
