"""A kinematic gait model: 3D keypoints of a walking or running person as a function of gait phase.

Sagittal joint-angle curves (hip, knee, ankle; arm swing and elbow flexion follow the legs) are authored as
keyframes resembling textbook gait-lab curves and smoothed into 4-harmonic Fourier series, so they are periodic,
smooth and cheap to evaluate. The hip range is scaled with stride length so faster people take longer steps.

Definitions used in the ground truth (and by the ``gait`` helpers below):

- phase: 0..1 over one stride (gait cycle); 0 = right-foot initial contact; the left leg runs half a cycle later.
- cadence_spm: steps per minute (two steps per stride).
- stride_length_m: distance covered in one stride = two steps. Hence ``speed = cadence/60 × stride_length/2``.
- contact: a foot is in contact during the stance part of its cycle (duty factor 0.62 walking, about 0.35
  running).

Body frame: metres, origin on the ground below the mid-hip, axes (forward, left, up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .skeleton import BLAZEPOSE_INDEX

_HARMONICS = 4


def _fourier(keyframes: list[tuple[float, float]]) -> np.ndarray:
    """Least-squares Fourier coefficients of a periodic curve given as (phase, value) keyframes."""
    ph = np.array([k[0] for k in keyframes])
    val = np.array([k[1] for k in keyframes])
    # Densify by periodic linear interpolation first so the fit follows the keyframes' shape, not just the knots.
    dense = np.linspace(0.0, 1.0, 200, endpoint=False)
    ext_ph = np.concatenate([ph - 1.0, ph, ph + 1.0])
    ext_val = np.concatenate([val, val, val])
    y = np.interp(dense, ext_ph, ext_val)
    cols = [np.ones_like(dense)]
    for h in range(1, _HARMONICS + 1):
        cols += [np.cos(2 * np.pi * h * dense), np.sin(2 * np.pi * h * dense)]
    coef, *_ = np.linalg.lstsq(np.stack(cols, axis=1), y, rcond=None)
    return coef


def _eval(coef: np.ndarray, phase: np.ndarray) -> np.ndarray:
    out = np.full_like(phase, coef[0], dtype=np.float64)
    for h in range(1, _HARMONICS + 1):
        out += coef[2 * h - 1] * np.cos(2 * np.pi * h * phase) + coef[2 * h] * np.sin(2 * np.pi * h * phase)
    return out


@dataclass(frozen=True)
class GaitStyle:
    """Angle curves (degrees) and timing for one kind of gait."""

    name: str
    hip: np.ndarray      # thigh angle from vertical, + = knee forward
    knee: np.ndarray     # knee flexion, 0 = straight
    ankle: np.ndarray    # ankle dorsiflexion, + = toes up
    duty: float          # stance fraction of the cycle
    arm_gain: float      # shoulder swing per degree of (hip - mean hip), opposite sign
    arm_offset: float    # mean shoulder flexion
    elbow_mean: float
    elbow_swing: float
    lean_base: float     # trunk lean (deg) at the nominal speed
    lean_per_mps: float
    hip_gain: float      # hip excursion multiplier at the nominal speed (tuned so stance feet slip little)
    cadence_a: float     # cadence_spm = a + b * speed
    cadence_b: float


WALK = GaitStyle(
    name="walk",
    hip=_fourier([(0.0, 25), (0.1, 22), (0.3, 6), (0.5, -10), (0.6, -6), (0.75, 14), (0.87, 27)]),
    knee=_fourier([(0.0, 4), (0.12, 17), (0.25, 10), (0.4, 5), (0.55, 24), (0.63, 42), (0.72, 60),
                   (0.82, 42), (0.92, 10)]),
    ankle=_fourier([(0.0, 0), (0.08, -6), (0.2, 5), (0.45, 12), (0.6, -15), (0.68, -8), (0.8, 2)]),
    duty=0.62, arm_gain=0.55, arm_offset=-2.0, elbow_mean=22.0, elbow_swing=10.0,
    lean_base=4.0, lean_per_mps=1.0, hip_gain=1.1, cadence_a=70.0, cadence_b=32.0,
)

RUN = GaitStyle(
    name="run",
    hip=_fourier([(0.0, 30), (0.15, 15), (0.38, -12), (0.5, -5), (0.7, 30), (0.85, 44), (0.95, 36)]),
    knee=_fourier([(0.0, 16), (0.15, 40), (0.38, 18), (0.55, 72), (0.7, 105), (0.85, 60), (0.95, 24)]),
    ankle=_fourier([(0.0, 5), (0.15, 18), (0.38, -25), (0.5, -15), (0.7, 0), (0.9, 5)]),
    duty=0.36, arm_gain=0.8, arm_offset=-8.0, elbow_mean=78.0, elbow_swing=15.0,
    lean_base=7.0, lean_per_mps=1.2, hip_gain=1.45, cadence_a=150.0, cadence_b=6.0,
)

STYLES: dict[str, GaitStyle] = {"walk": WALK, "run": RUN}
_NOMINAL_SPEED = {"walk": 1.35, "run": 4.0}


def cadence_spm(style: GaitStyle, speed_mps: float) -> float:
    """Steps per minute at ``speed_mps`` (linear in speed: cadence_a + cadence_b × speed)."""
    return style.cadence_a + style.cadence_b * speed_mps


def stride_length_m(style: GaitStyle, speed_mps: float) -> float:
    """Metres per stride (two steps) at ``speed_mps``: speed / stride frequency."""
    return 120.0 * speed_mps / cadence_spm(style, speed_mps)


# Body proportions as fractions of standing height (after Winter's anthropometric tables).
SEG = {
    "shoulder_z": 0.818, "shoulder_half": 0.125, "hip_z": 0.530, "hip_half": 0.085,
    "thigh": 0.245, "shank": 0.246, "ankle_z": 0.039, "heel": 0.04, "toe": 0.095,
    "upper_arm": 0.186, "forearm": 0.146, "hand": 0.06, "head_r": 0.062, "head_z": 0.935,
}


def pose_3d(style: GaitStyle, phase: float, speed_mps: float, height_m: float) -> tuple[np.ndarray, bool, bool]:
    """33 BlazePose keypoints ``(33, 3)`` in the body frame, and (left_contact, right_contact)."""
    hgt = height_m
    leg = (SEG["thigh"] + SEG["shank"] + SEG["ankle_z"]) * hgt
    nominal = stride_length_m(style, _NOMINAL_SPEED[style.name]) / leg
    actual = stride_length_m(style, speed_mps) / leg
    # Scale hip excursion with stride so the stance foot roughly keeps pace with the ground (less foot slip).
    scale = float(np.clip(style.hip_gain * actual / max(nominal, 1e-6), 0.4, 2.0))
    ph = np.array([phase % 1.0, (phase + 0.5) % 1.0])  # right, left
    hip_mean = style.hip[0]
    hip = hip_mean + (_eval(style.hip, ph) - hip_mean) * scale
    knee = np.maximum(_eval(style.knee, ph) * (0.7 + 0.3 * scale), 0.0)
    ankle = _eval(style.ankle, ph)
    th, sig = np.radians(hip), np.radians(hip - knee)
    foot_ang = np.radians(np.degrees(sig) + ankle)
    thigh, shank = SEG["thigh"] * hgt, SEG["shank"] * hgt
    # Sagittal (forward, up) positions relative to the hip joint.
    knee_p = np.stack([thigh * np.sin(th), -thigh * np.cos(th)], axis=1)
    ankle_p = knee_p + np.stack([shank * np.sin(sig), -shank * np.cos(sig)], axis=1)
    ca, sa = np.cos(foot_ang), np.sin(foot_ang)

    def foot_point(along: float, below: float) -> np.ndarray:
        # A rigid foot: offsets in the foot's own frame rotated by the foot angle.
        x, y = along * hgt, -below * hgt
        return ankle_p + np.stack([x * ca - y * sa, x * sa + y * ca], axis=1)

    heel_p = foot_point(-SEG["heel"], 0.8 * SEG["ankle_z"])
    toe_p = foot_point(SEG["toe"], 0.8 * SEG["ankle_z"])
    lowest = np.minimum(heel_p[:, 1], toe_p[:, 1])
    contact = ph < style.duty
    # The lower foot rests on the ground (never below it); in a running flight phase the body rises a little.
    hip_z = -float(np.min(lowest))
    if not contact.any() and style.name == "run":
        u = ((phase % 0.5) - style.duty) / max(0.5 - style.duty, 1e-6)
        hip_z += 0.04 * hgt / 1.75 * float(np.sin(np.pi * np.clip(u, 0.0, 1.0)))
    lean = np.radians(style.lean_base + style.lean_per_mps * (speed_mps - _NOMINAL_SPEED[style.name]))
    lean = float(np.clip(lean, 0.0, np.radians(16.0)))
    trunk_len = (SEG["shoulder_z"] - SEG["hip_z"]) * hgt
    sh_up, sh_fwd = hip_z + trunk_len * np.cos(lean), trunk_len * np.sin(lean)  # mid-shoulder
    pts = np.zeros((33, 3))
    idx = BLAZEPOSE_INDEX
    for side, k in (("right", 0), ("left", 1)):
        lat = (1.0 if side == "left" else -1.0)
        hl = lat * SEG["hip_half"] * hgt
        for name, p in (("hip", (0.0, 0.0)), ("knee", knee_p[k]), ("ankle", ankle_p[k]), ("heel", heel_p[k]),
                        ("foot_index", toe_p[k])):
            # Feet sit slightly inside the hip line, as in normal gait.
            inset = 0.0 if name == "hip" else -lat * 0.015 * hgt
            pts[idx[f"{side}_{name}"]] = (p[0], hl + inset, hip_z + p[1])
        # Arms: swing opposite to the same-side leg.
        sh = np.radians(style.arm_offset - style.arm_gain * (hip[k] - hip_mean) * scale)
        elb = np.radians(style.elbow_mean + style.elbow_swing * np.sin(2 * np.pi * ph[k] + np.pi / 2))
        shoulder = np.array([sh_fwd, lat * SEG["shoulder_half"] * hgt, sh_up])
        ua = SEG["upper_arm"] * hgt
        elbow = shoulder + ua * np.array([np.sin(sh + lean * 0.5), lat * 0.03, -np.cos(sh + lean * 0.5)])
        fa_ang = sh + lean * 0.5 + elb  # forearm folds forward
        forearm = np.array([np.sin(fa_ang), lat * 0.02, -np.cos(fa_ang)])
        wrist = elbow + SEG["forearm"] * hgt * forearm
        hand = SEG["hand"] * hgt
        pts[idx[f"{side}_shoulder"]] = shoulder
        pts[idx[f"{side}_elbow"]] = elbow
        pts[idx[f"{side}_wrist"]] = wrist
        pts[idx[f"{side}_index"]] = wrist + hand * forearm + np.array([0.0, lat * 0.005 * hgt, 0.0])
        pts[idx[f"{side}_pinky"]] = wrist + hand * 0.85 * forearm + np.array([-0.01 * hgt, lat * 0.012 * hgt, 0.0])
        pts[idx[f"{side}_thumb"]] = wrist + hand * 0.6 * forearm + np.array([0.015 * hgt, -lat * 0.01 * hgt, 0.0])
    # Head: upright above the (leaning) shoulders, looking forward.
    head = np.array([sh_fwd + 0.01 * hgt, 0.0, (SEG["head_z"] - SEG["shoulder_z"]) * hgt + sh_up])
    face = {
        "nose": (0.062, 0.0, -0.008), "left_eye_inner": (0.052, 0.012, 0.012), "left_eye": (0.050, 0.022, 0.012),
        "left_eye_outer": (0.046, 0.032, 0.012), "right_eye_inner": (0.052, -0.012, 0.012),
        "right_eye": (0.050, -0.022, 0.012), "right_eye_outer": (0.046, -0.032, 0.012),
        "left_ear": (-0.004, 0.052, 0.0), "right_ear": (-0.004, -0.052, 0.0),
        "mouth_left": (0.052, 0.016, -0.032), "mouth_right": (0.052, -0.016, -0.032),
    }
    for name, off in face.items():
        pts[idx[name]] = head + np.array(off) * hgt
    return pts, bool(contact[1]), bool(contact[0])


def head_center(pts: np.ndarray) -> np.ndarray:
    """Centre of the head sphere, from the ears (both sit on the head's transverse axis)."""
    return (pts[BLAZEPOSE_INDEX["left_ear"]] + pts[BLAZEPOSE_INDEX["right_ear"]]) / 2.0
