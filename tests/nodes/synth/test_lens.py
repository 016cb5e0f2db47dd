"""Lens distortion on rendered scenes: the picture and its pixel-space truth bend together; the world does not."""

from __future__ import annotations

import numpy as np
import pytest

from flowgraph.nodes.synth import Scene, SceneConfig
from flowgraph.nodes.synth.lens import Lens
from flowgraph.nodes.synth.people import Walker
from flowgraph.nodes.vibrio.calibration import fit_ground_plane


def test_distort_and_undistort_are_inverse_and_barrel_pulls_corners_in() -> None:
    lens = Lens(-0.1, 640, 360)
    points = np.array([[0.0, 0.0], [640.0, 360.0], [320.0, 180.0], [100.0, 300.0]])
    bent = lens.distort(points)
    np.testing.assert_allclose(lens.undistort(bent), points, atol=1e-3)
    np.testing.assert_allclose(bent[2], [320.0, 180.0])  # the centre stays
    assert bent[0, 0] > 0 and bent[0, 1] > 0  # a corner moves towards the centre
    assert bent[1, 0] < 640 and bent[1, 1] < 360
    np.testing.assert_allclose(Lens(0.0, 640, 360).distort(points), points)


def test_out_of_range_k1_is_refused_with_its_value() -> None:
    with pytest.raises(ValueError, match=r"lens_k1 must be -0\.3\.\.0\.3, got 0\.5"):
        SceneConfig(lens_k1=0.5)


def _one_walker(lens_k1: float) -> Scene:
    walker = Walker.scripted([(-7.0, 9.0), (7.0, 9.0)], 1.4, gait="walk", start_s=0.0)
    return Scene(SceneConfig(width=640, height=360, fps=30.0, walkers=(walker,), background="plain",
                             lens_k1=lens_k1))


def _drawn_box(scene: Scene, index: int) -> tuple[int, int, int, int]:
    image, _ = scene.render(index)
    background = scene.lens.apply(scene.background) if scene.lens is not None else scene.background
    changed = np.abs(image.astype(int) - background.astype(int)).max(axis=-1) > 24
    rows, cols = np.nonzero(changed)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def test_the_truth_box_follows_the_bent_picture() -> None:
    """Near the edge of the picture (where a barrel lens moves things most) the drawn person's pixels sit in the
    lens truth box, not where the pinhole would have put them."""
    bent, straight = _one_walker(-0.15), _one_walker(0.0)
    index = 20  # the walker is near the left edge
    (person,) = bent.truth(index).people
    (pinhole,) = straight.truth(index).people
    moved = max(abs(a - b) for a, b in zip(person.bbox, pinhole.bbox, strict=True))
    assert moved > 4, "the lens should move this box by several pixels"
    # the drawn pixels (the shadow adds a few) fit the lens truth box, and clearly better than the pinhole's box
    drawn = _drawn_box(bent, index)
    off_lens = np.abs(np.subtract(drawn, person.bbox))
    off_pinhole = np.abs(np.subtract(drawn, pinhole.bbox))
    assert off_lens.max() <= 5, (drawn, person.bbox)
    assert off_lens.sum() + 4 < off_pinhole.sum(), (drawn, person.bbox, pinhole.bbox)
    assert person.foot_world == pinhole.foot_world and person.speed_mps == pinhole.speed_mps


def _worst_ground_error_m(scene: Scene) -> float:
    """Ground positions over the people's area, seen through the scene's lens, mapped back by a homography
    fitted to the scene's calibration points: the largest error in metres."""
    plane = fit_ground_plane(scene.calibration)
    st = scene.stage
    world = np.array([[x, y] for y in np.linspace(st.near_y, st.far_y, 6)
                      for x in np.linspace(*scene._visible_x(y, 0.02), 7)])
    image = np.array([scene.camera.ground_to_image(p) for p in world])
    if scene.lens is not None:
        image = scene.lens.distort(image)
    return float(np.hypot(*(plane.to_world(image) - world).T).max())


def test_a_homography_cannot_absorb_the_lens() -> None:
    """The estimator's model (a ground homography) maps the pinhole's ground exactly and the lens's only
    approximately: calibration error is no longer zero by construction."""
    config = SceneConfig(width=640, height=360, people=3, seed=1)
    assert _worst_ground_error_m(Scene(config)) < 0.01
    assert _worst_ground_error_m(Scene(config, lens_k1=-0.08)) > 0.1


def test_measured_calibration_is_noisy_but_deterministic() -> None:
    scene = Scene(SceneConfig(width=640, height=360, people=3, seed=1))
    exact = np.array([p["image"] for p in scene.calibration])
    first = np.array([p["image"] for p in scene.measured_calibration(2.0, seed=4)])
    again = np.array([p["image"] for p in scene.measured_calibration(2.0, seed=4)])
    np.testing.assert_array_equal(first, again)
    offsets = first - exact
    assert 0.3 < float(np.abs(offsets).mean()) < 5.0
    assert [p["world"] for p in scene.measured_calibration(2.0, seed=4)] == [p["world"] for p in scene.calibration]
