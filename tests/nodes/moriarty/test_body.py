"""Centre of mass, stature and the ground-reaction-force estimate; skeleton helpers."""

from __future__ import annotations

import math

import numpy as np

from flowgraph.nodes.moriarty.biomech import MotionConfig, PersonMotion
from flowgraph.nodes.moriarty.com import centre_of_mass, stature_px
from flowgraph.nodes.moriarty.grf import G, ground_reaction_force, vertical_acceleration
from flowgraph.nodes.moriarty.skeleton import BLAZEPOSE33, COCO17, as_wire, gate, to_coco17


def test_centre_of_mass_of_a_standing_person(gait) -> None:
    g = gait(speed_mps=0.001, bounce_m=0.0, lean_deg=0.0, arm_swing_deg=0.0)
    kps = g.keypoints(0.0)
    com = centre_of_mass(kps, BLAZEPOSE33)
    assert com is not None
    pts = g.image_points(0.0)
    hip_y, shoulder_y = pts["left_hip"][1], pts["left_shoulder"][1]
    # the centre of mass sits a little above the hips (about 55 % of stature from the ground)
    assert shoulder_y < com[1] < hip_y + 0.05 * g.stature_m * g.px_per_m
    coco = centre_of_mass(to_coco17(kps, BLAZEPOSE33), COCO17)  # no hand/foot points: wrist/ankle stand in
    assert coco is not None and np.hypot(*(coco - com)) < 5
    half = gate(kps, 0.5)
    half[BLAZEPOSE33.index["left_shoulder"], :2] = np.nan  # the trunk is half the body: no estimate without it
    assert centre_of_mass(half, BLAZEPOSE33) is None


def test_stature_from_the_joint_chain(gait) -> None:
    g = gait()
    heights = [stature_px(g.keypoints(t), BLAZEPOSE33) for t in np.arange(0, 1, 0.1)]
    assert all(h is not None and abs(h - g.stature_m * g.px_per_m) / (g.stature_m * g.px_per_m) < 0.06
               for h in heights)


def test_force_of_a_still_body_is_its_weight_and_flight_is_zero() -> None:
    t = np.arange(0, 1, 1 / 30)
    found = vertical_acceleration(t, np.full_like(t, 300.0), 0.005)
    assert found is not None and abs(found[0]) < 1e-9
    assert ground_reaction_force(70.0, 0.0) == (70.0 * G, 1.0)
    assert ground_reaction_force(70.0, -12.0)[0] == 0.0
    assert vertical_acceleration(t[:3], np.zeros(3), 0.005) is None


def test_vertical_acceleration_of_a_bouncing_body() -> None:
    rate, amp_m, freq, m_per_px = 30.0, 0.04, 2.8, 0.006
    t = np.arange(0, 2, 1 / rate)
    y_px = 300 - amp_m * np.sin(2 * np.pi * freq * t) / m_per_px  # image y down: up is minus
    a_up, at = vertical_acceleration(t, y_px, m_per_px)
    truth = -amp_m * (2 * np.pi * freq) ** 2 * math.sin(2 * math.pi * freq * at)
    peak = amp_m * (2 * np.pi * freq) ** 2
    assert abs(a_up - truth) < 0.15 * peak  # a 5-point fit at 30 fps smooths a 2.8 Hz bounce by ~12 %
    assert abs(at - (t[-1] - 2 / rate)) < 1e-9


def test_running_grf_averages_body_weight(gait) -> None:
    g = gait(bounce_m=0.04)
    motion = PersonMotion(BLAZEPOSE33, MotionConfig(body_mass_kg=70.0, height_m=g.stature_m))
    forces = []
    for i in range(300):
        t = i / 30
        _, _, m = motion.update(t, gate(g.keypoints(t), 0.5))
        if i >= 30 and m["grf_bw"] is not None:
            forces.append(m["grf_bw"])
    forces_arr = np.array(forces)
    assert abs(forces_arr.mean() - 1.0) < 0.1  # impulse over whole strides = body weight x time
    assert forces_arr.max() > 1.3  # the bounce shows


def test_wire_form_marks_gated_joints_none() -> None:
    kps = np.array([[1.0, 2.0, 0.9], [3.0, 4.0, 0.2], [np.nan, 1.0, 0.9], [600.0, 5.0, 0.9]])
    wire = as_wire(gate(kps, 0.5, (640, 480)))
    assert wire[0] == (1.0, 2.0, 0.9) and wire[1] is None and wire[2] is None and wire[3] == (600.0, 5.0, 0.9)
    assert as_wire(gate(kps, 0.5, (320, 240)))[3] is None  # outside the picture
    assert len(BLAZEPOSE33) == 33 and len(COCO17) == 17
    assert to_coco17(np.arange(33 * 3, dtype=float).reshape(33, 3), BLAZEPOSE33)[5, 0] == 11 * 3  # left shoulder
