"""Keypoint naming and the contract's 2D joint-angle definitions on hand-made poses."""

import pytest

from flowgraph.nodes.synth.skeleton import BLAZEPOSE33, COCO17, COCO_FROM_BLAZEPOSE, angle_at, joint_angles


def test_names_and_coco_mapping() -> None:
    assert len(BLAZEPOSE33) == 33 and len(set(BLAZEPOSE33)) == 33
    assert BLAZEPOSE33[0] == "nose" and BLAZEPOSE33[32] == "right_foot_index"
    assert [BLAZEPOSE33[i] for i in COCO_FROM_BLAZEPOSE] == list(COCO17)
    assert COCO_FROM_BLAZEPOSE[:5] == (0, 2, 5, 7, 8)


def _standing() -> dict[str, tuple[float, float]]:
    """Upright, arms hanging, legs straight (image y grows downwards)."""
    pts = {}
    for side, x in (("left", 110.0), ("right", 90.0)):
        pts[f"{side}_shoulder"] = (x, 100.0)
        pts[f"{side}_elbow"] = (x, 150.0)
        pts[f"{side}_wrist"] = (x, 200.0)
        pts[f"{side}_hip"] = (x, 200.0)
        pts[f"{side}_knee"] = (x, 260.0)
        pts[f"{side}_ankle"] = (x, 320.0)
    return pts


def test_standing_pose_angles() -> None:
    a = joint_angles(_standing())
    for name in ("left_knee", "right_knee", "left_hip", "right_hip", "left_elbow", "right_elbow"):
        assert a[name] == pytest.approx(180.0)
    assert a["left_shoulder"] == pytest.approx(0.0)
    assert a["trunk_lean"] == pytest.approx(0.0)


def test_bent_pose_angles() -> None:
    pts = _standing()
    pts["left_ankle"] = (170.0, 260.0)        # shank horizontal: 90 degree knee
    pts["right_elbow"] = (40.0, 100.0)        # arm raised sideways: 90 degree shoulder
    pts["right_wrist"] = (40.0, 50.0)         # forearm up: 90 degree elbow
    pts["left_shoulder"] = (160.0, 100.0)     # mid-shoulder moves right by 25 px over 100 px of trunk
    a = joint_angles(pts)
    assert a["left_knee"] == pytest.approx(90.0)
    assert a["right_shoulder"] == pytest.approx(90.0)
    assert a["right_elbow"] == pytest.approx(90.0)
    assert a["trunk_lean"] == pytest.approx(14.036, abs=1e-3)  # atan(25/100)
    assert angle_at((0, 0), (1, 0), (-1, 0)) == pytest.approx(180.0)
