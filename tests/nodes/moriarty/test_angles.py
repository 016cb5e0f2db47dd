"""Joint angles by the contract's definitions, on hand-made poses and on the synthetic runner with noise."""

from __future__ import annotations

import math

import numpy as np

from flowgraph.nodes.moriarty.angles import angle_at, angular_velocities, joint_angles, slope, trunk_lean
from flowgraph.nodes.moriarty.biomech import MotionConfig, PersonMotion
from flowgraph.nodes.moriarty.skeleton import BLAZEPOSE33, COCO17, gate


def standing(skeleton=COCO17) -> np.ndarray:
    """Upright, legs straight, arms hanging along the trunk (image y down)."""
    pts = {"nose": (100, 40), "left_shoulder": (110, 80), "right_shoulder": (90, 80), "left_elbow": (110, 130),
           "right_elbow": (90, 130), "left_wrist": (110, 180), "right_wrist": (90, 180), "left_hip": (110, 180),
           "right_hip": (90, 180), "left_knee": (110, 260), "right_knee": (90, 260), "left_ankle": (110, 340),
           "right_ankle": (90, 340), "left_eye": (104, 36), "right_eye": (96, 36), "left_ear": (110, 40),
           "right_ear": (90, 40)}
    kps = np.full((len(skeleton), 3), np.nan)
    for name, i in skeleton.index.items():
        if name in pts:
            kps[i] = (*pts[name], 0.9)
    return kps


def test_standing_pose_has_the_reference_angles() -> None:
    a = joint_angles(standing(), COCO17)
    for side in ("left", "right"):
        assert abs(a[f"{side}_knee"] - 180) < 1e-6
        assert abs(a[f"{side}_elbow"] - 180) < 1e-6
        assert a[f"{side}_shoulder"] < 1e-6
        assert abs(a[f"{side}_hip"] - 180) < 1e-6
    assert a["trunk_lean"] is not None and a["trunk_lean"] < 1e-6


def test_right_angles_and_lean_direction_is_absolute() -> None:
    assert abs(angle_at(np.array([0.0, 10.0]), np.zeros(2), np.array([10.0, 0.0])) - 90) < 1e-9
    assert angle_at(np.zeros(2), np.zeros(2), np.ones(2)) is None
    kps = standing()
    kps[COCO17.index["left_shoulder"], :2] += (30, 0)
    kps[COCO17.index["right_shoulder"], :2] += (30, 0)
    forward = trunk_lean(kps, COCO17)
    kps[COCO17.index["left_shoulder"], :2] -= (60, 0)
    kps[COCO17.index["right_shoulder"], :2] -= (60, 0)
    backward = trunk_lean(kps, COCO17)
    assert forward is not None and backward is not None
    assert abs(forward - math.degrees(math.atan2(30, 100))) < 1e-6 and abs(forward - backward) < 1e-9


def test_gated_joints_give_none_not_a_guess() -> None:
    kps = standing()
    kps[COCO17.index["left_knee"], 2] = 0.1
    a = joint_angles(gate(kps, 0.5), COCO17)
    assert a["left_knee"] is None and a["left_hip"] is None
    assert a["right_knee"] is not None


def test_angular_velocity_is_the_fitted_rate() -> None:
    t = np.arange(0, 1, 1 / 30)
    history = {"left_knee": 120 + 90 * t, "right_knee": np.full_like(t, np.nan)}
    v = angular_velocities(t, history)
    assert v["left_knee"] is not None and abs(v["left_knee"] - 90) < 1e-6
    assert v["right_knee"] is None
    assert slope(np.array([0.0, 1.0]), np.array([0.0, 1.0])) is None  # too few samples


def test_runner_angles_within_3_degrees_with_keypoint_noise(gait) -> None:
    """Accuracy target: synthetic skeletons with known joint angles -> mean angle error <= 3 degrees.

    1 px Gaussian noise on every keypoint of a ~300 px tall person, through moriarty's smoothing.
    """
    report = {}
    for name, kw in {"run": {}, "walk": dict(cadence_spm=110, speed_mps=1.4, duty=0.62, lift_m=0.2, lean_deg=2,
                                              elbow_deg=150)}.items():
        g = gait(noise_px=1.0, seed=3, **kw)
        motion = PersonMotion(BLAZEPOSE33, MotionConfig())
        errors: dict[str, list[float]] = {}
        for i in range(180):
            t = i / 30
            _, angles, _ = motion.update(t, gate(g.keypoints(t), 0.5))
            if i < 10:  # filter warm-up
                continue
            for k, v in g.truth_angles(t).items():
                errors.setdefault(k, []).append(abs(angles[k] - v))
        for k, e in errors.items():
            report[f"{name}/{k}"] = (round(float(np.mean(e)), 2), round(float(np.percentile(e, 95)), 2))
            assert np.mean(e) <= 3.0, (name, k, report[f"{name}/{k}"])
    print("mean / p95 angle error (deg):", report)
