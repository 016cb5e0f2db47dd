"""appearance="photo": real upper bodies cut out of shipped photos, composited on the walking figures."""

import numpy as np
import pytest

from flowgraph.nodes.synth import Scene, SceneConfig
from flowgraph.nodes.synth.photo import SOURCES, sprite


@pytest.mark.parametrize("index", range(len(SOURCES)))
def test_cut_outs_are_person_sized_silhouettes(index: int) -> None:
    rgb, alpha = sprite(index)
    assert rgb.shape[:2] == alpha.shape and rgb.dtype == np.uint8
    assert 0.4 < alpha.mean() < 0.9          # a silhouette, not the whole photo nor a speck
    assert 0.5 < rgb.shape[1] / rgb.shape[0] < 1.0
    assert alpha[-1].max() < 0.05            # the waist edge fades out
    lower = rgb[rgb.shape[0] // 2:][alpha[alpha.shape[0] // 2:] > 0.9].astype(int)
    if SOURCES[index].file == "astronaut.png":
        assert (lower[:, 0] - lower[:, 2] > 80).mean() > 0.5   # the orange suit
    else:
        assert (lower.max(axis=1) < 70).mean() > 0.5           # the dark coat


def test_photo_people_are_drawn_inside_their_boxes_with_leg_truth_only() -> None:
    scene = Scene(SceneConfig(width=1280, height=720, people=5, seed=4, appearance="photo", background="photo"))
    img, truth = scene.render(0)
    sources = {p.walker.person_id: p.walker.appearance.photo for p in scene.posed(0)}
    assert len(set(sources.values())) == 2  # both photos are in use in this scene
    for p in truth.people:
        x1, y1, x2, y2 = (int(v) for v in p.bbox)
        top = img[y1:y1 + (y2 - y1) // 3, x1:x2].reshape(-1, 3).astype(int)
        if SOURCES[sources[p.person_id]].file == "astronaut.png":
            assert ((top[:, 0] - top[:, 2] > 80) & (top[:, 0] > 150)).mean() > 0.03
        else:
            assert (top.max(axis=1) < 60).mean() > 0.1
        assert not p.keypoints["nose"][2] and not p.keypoints["left_wrist"][2]
        assert p.keypoints["left_knee"][2] or p.keypoints["right_knee"][2]
    assert scene.truth(0).to_dict() == truth.to_dict()
