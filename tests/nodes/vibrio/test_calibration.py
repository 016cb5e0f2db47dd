"""Ground-plane homography from calibration points, and the person-height prior."""

from __future__ import annotations

import numpy as np
import pytest

from flowgraph.nodes.vibrio.calibration import CalibrationError, fit_ground_plane, prior_metres_per_pixel

# A camera 8 m up, pitched down, looking along +Y at a pitch: world (X, Y) metres → pixels.
WORLD_TO_IMAGE = np.array([[800.0, 150.0, 2000.0], [0.0, -200.0, 6400.0], [0.0, 0.5, 4.0]])


def project(world: np.ndarray) -> np.ndarray:
    h = np.c_[world, np.ones(len(world))] @ WORLD_TO_IMAGE.T
    return h[:, :2] / h[:, 2:]


def points(world: np.ndarray, noise_px: float = 0.0, seed: int = 0) -> list[dict]:
    image = project(world) + np.random.default_rng(seed).normal(0, noise_px, (len(world), 2))
    return [{"image": i.tolist(), "world": w.tolist()} for i, w in zip(image, world, strict=True)]


CORNERS = np.array([[-10.0, 2.0], [10.0, 2.0], [10.0, 40.0], [-10.0, 40.0]])


def test_four_exact_points_recover_the_plane() -> None:
    plane = fit_ground_plane(points(CORNERS))
    assert plane.points == 4 and plane.rms_error_m < 1e-6
    rng = np.random.default_rng(1)
    world = np.c_[rng.uniform(-10, 10, 50), rng.uniform(2, 40, 50)]
    np.testing.assert_allclose(plane.to_world(project(world)), world, atol=1e-6)
    np.testing.assert_allclose(plane.to_image(world), project(world), atol=1e-4)


def test_more_noisy_points_fit_in_the_least_squares_sense() -> None:
    grid = np.array([[x, y] for x in (-10, 0, 10) for y in (2, 15, 40)], dtype=float)
    plane = fit_ground_plane(points(grid, noise_px=0.5, seed=3))
    assert 0 < plane.rms_error_m < 0.1
    near = np.array([[0.0, 5.0], [3.0, 10.0]])
    np.testing.assert_allclose(plane.to_world(project(near)), near, atol=0.05)


def test_points_beyond_the_horizon_are_nan() -> None:
    plane = fit_ground_plane(points(CORNERS))
    # As Y → ∞, v = (−200 Y + 6400) / (0.5 Y + 4) → −400: the horizon row. Above it is sky, not ground.
    result = plane.to_world([[640.0, -1000.0], [640.0, -390.0], [640.0, 400.0]])
    assert np.isnan(result[0]).all()
    assert result[1, 1] > 1000 and np.isfinite(result[2]).all()


@pytest.mark.parametrize(("bad", "message"), [
    (points(CORNERS)[:3], "at least 4"),
    ([{"image": [i, 2 * i], "world": [i, i]} for i in range(5)], "one line"),
    ([{"image": [0, 0]}] * 4, "must be"),
    ([{"image": [0, float("nan")], "world": [0, 0]}] * 4, "finite"),
    ([{"image": [0, 0, 1], "world": [0, 0]}] * 4, "two image"),
])
def test_unusable_points_are_clear_errors(bad: list, message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        fit_ground_plane(bad)


def test_person_height_prior() -> None:
    assert prior_metres_per_pixel(175.0) == pytest.approx(0.01)
    assert prior_metres_per_pixel(180.0, 1.8) == pytest.approx(0.01)
    assert prior_metres_per_pixel(0.0) == pytest.approx(1.75)  # never divides by zero
