"""Camera model: projection, ground homography and calibration points agree to well under a centimetre."""

import numpy as np
import pytest

from flowgraph.nodes.synth import Camera, CameraConfig, Scene, SceneConfig


@pytest.mark.parametrize("cfg", [CameraConfig(), CameraConfig(height=8.0, distance=2.0, pitch_deg=25.0,
                                                               yaw_deg=12.0, hfov_deg=70.0)])
def test_homography_round_trip_under_1cm(cfg: CameraConfig) -> None:
    cam = Camera(cfg, 1280, 720)
    rng = np.random.default_rng(0)
    world = np.column_stack([rng.uniform(-15, 15, 500), rng.uniform(4, 40, 500)])
    uv = cam.ground_to_image(world)
    back = cam.image_to_ground(uv)
    assert np.abs(back - world).max() < 0.01
    # The homography is the pinhole projection restricted to Z = 0.
    proj, depth = cam.project(np.column_stack([world, np.zeros(len(world))]))
    assert (depth > 0).all()
    assert np.abs(proj - uv).max() < 1e-6


def test_points_above_ground_project_higher_in_the_image() -> None:
    cam = Camera(CameraConfig(), 1280, 720)
    (uv, _) = cam.project(np.array([[0.0, 10.0, 0.0], [0.0, 10.0, 1.75]]))
    assert uv[1, 1] < uv[0, 1]
    assert abs(uv[1, 0] - uv[0, 0]) < 1e-6  # no roll: a vertical stays vertical at the image centre column
    assert cam.horizon_v() < uv[1, 1]


def test_calibration_points_match_the_homography() -> None:
    scene = Scene(SceneConfig(width=640, height=360))
    cal = scene.calibration
    assert len(cal) >= 4
    h = scene.image_to_world
    for point in cal:
        u, v = point["image"]
        x, y, w = h @ np.array([u, v, 1.0])
        assert abs(x / w - point["world"][0]) < 0.01 and abs(y / w - point["world"][1]) < 0.01
        assert 0 <= u <= 640 and 0 <= v <= 360
    # Not collinear: the points span an area on the ground.
    world = np.array([p["world"] for p in cal])
    assert np.ptp(world[:, 0]) > 2 and np.ptp(world[:, 1]) > 2
