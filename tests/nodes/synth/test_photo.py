"""appearance="photo": the astronaut's real upper body composited on the walking figure."""

import numpy as np
from flowgraph.nodes.synth import Scene, SceneConfig
from flowgraph.nodes.synth.photo import sprite


def test_cut_out_is_a_person_sized_sprite() -> None:
    rgb, alpha = sprite()
    assert rgb.shape[:2] == alpha.shape and rgb.dtype == np.uint8
    assert 0.4 < alpha.mean() < 0.9          # a silhouette, not the whole photo nor a speck
    # The orange suit dominates the lower half of the cut-out.
    lower = rgb[rgb.shape[0] // 2:][alpha[alpha.shape[0] // 2:] > 0.9]
    assert (lower[:, 0].astype(int) - lower[:, 2] > 80).mean() > 0.5


def test_photo_people_are_drawn_inside_their_boxes_with_leg_truth_only() -> None:
    scene = Scene(SceneConfig(width=1280, height=720, people=3, seed=3, appearance="photo", background="photo"))
    img, truth = scene.render(0)
    assert truth.people
    for p in truth.people:
        x1, y1, x2, y2 = (int(v) for v in p.bbox)
        top = img[y1:y1 + (y2 - y1) // 3, x1:x2].reshape(-1, 3).astype(int)
        orange = (top[:, 0] - top[:, 2] > 80) & (top[:, 0] > 150)
        assert orange.mean() > 0.03, "the photo's suit shows in the upper part of the box"
        assert not p.keypoints["nose"][2] and not p.keypoints["left_wrist"][2]
        assert p.keypoints["left_knee"][2] or p.keypoints["right_knee"][2]
    assert scene.truth(0).to_dict() == truth.to_dict()
