"""Motion backend: background model, shadows, ghosts, per-stream state, and the CUDA-path labeller on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowgraph.nodes.vibrio.detector import DetectorConfig
from flowgraph.nodes.vibrio.motion import MotionDetector

GRASS = (60, 140, 60)


def field(width: int = 320, height: int = 180, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = GRASS
    return np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)


def with_person(background: np.ndarray, x: int, y: int = 60, w: int = 14, h: int = 40,
                colour: tuple[int, int, int] = (40, 90, 200)) -> np.ndarray:
    image = background.copy()
    image[y:y + h, x:x + w] = colour
    return image


def detector(labeller: str = "auto", **overrides: float) -> MotionDetector:
    config = DetectorConfig(backend="motion", motion_warmup=5, motion_width=320, **overrides)  # type: ignore[arg-type]
    return MotionDetector(config, labeller=labeller)


def test_a_moving_person_is_boxed_after_warm_up() -> None:
    det, bg = detector(), field()
    outputs = [det.detect(with_person(bg, 20 + 3 * i), "cam") for i in range(12)]
    assert all(len(o) == 0 for o in outputs[:5])  # warm-up builds the background
    box = outputs[-1]
    assert len(box) == 1
    np.testing.assert_allclose(box[0, :4], [20 + 3 * 11, 60, 20 + 3 * 11 + 14, 100], atol=1.5)
    assert 0.5 < box[0, 4] <= 1


def test_hue_change_at_equal_brightness_is_foreground() -> None:
    """A shirt with the grass's grey level but another hue is still seen (per-channel difference)."""
    det, bg = detector(), field()
    grey = int(0.299 * GRASS[0] + 0.587 * GRASS[1] + 0.114 * GRASS[2])
    teal = (0, grey, grey + 40)
    for i in range(12):
        out = det.detect(with_person(bg, 20 + 3 * i, colour=teal))
    assert len(out) == 1


def test_cast_shadows_are_not_people() -> None:
    det, bg = detector(), field()
    for _ in range(5):
        det.detect(bg)  # empty field while the background is learnt
    for i in range(12):
        image = with_person(bg, 20 + 3 * i)
        shadow = image[100:108, 10 + 3 * i:60 + 3 * i].astype(np.float32) * 0.6  # grass dimmed evenly
        image[100:108, 10 + 3 * i:60 + 3 * i] = shadow.astype(np.uint8)
        out = det.detect(image)
    assert len(out) == 1 and out[0, 3] <= 101  # the box stops at the feet, not at the shadow's far edge


def test_ghost_of_someone_present_during_warm_up_fades() -> None:
    det, bg = detector(), field()
    for _ in range(5):
        det.detect(with_person(bg, 200))  # stands still through warm-up: baked into the background
    counts = [len(det.detect(bg)) for _ in range(60)]  # then leaves
    assert counts[0] == 1  # the hole they left is first seen as foreground ...
    assert counts[-1] == 0  # ... and absorbed within two seconds


def test_streams_have_their_own_background() -> None:
    det = detector()
    for i in range(12):
        a = det.detect(with_person(field(seed=1), 20 + 3 * i), "a")
        b = det.detect(field(seed=2), "b")
    assert len(a) == 1 and len(b) == 0
    det.forget("a")
    assert "a" not in det.models and "b" in det.models


def test_kornia_labeller_matches_opencv() -> None:
    """The CUDA path's labelling, run on the CPU, finds the same blobs as the CPU path."""
    cv, kn, bg = detector("cv2"), detector("kornia"), field()
    for i in range(12):
        image = with_person(with_person(bg, 20 + 3 * i), 250 - 4 * i, y=90, colour=(220, 60, 60))
        a, b = cv.detect(image), kn.detect(image)
    assert len(a) == 2
    np.testing.assert_allclose(a[np.argsort(a[:, 0])], b[np.argsort(b[:, 0])], atol=1.0)


def test_channels_first_tensor_and_resizing() -> None:
    det = MotionDetector(DetectorConfig(backend="motion", motion_warmup=3, motion_width=160))
    bg = field(640, 360)
    for _ in range(3):
        det.detect(torch.from_numpy(bg).permute(2, 0, 1))
    for i in range(8):
        out = det.detect(torch.from_numpy(with_person(bg, 40 + 8 * i, y=120, w=28, h=80)).permute(2, 0, 1))
    assert len(out) == 1
    np.testing.assert_allclose(out[0, :4], [40 + 8 * 7, 120, 40 + 8 * 7 + 28, 200], atol=4.5)  # 4 px per cell


@pytest.mark.parametrize("warmup", [1, 2])
def test_short_warm_up(warmup: int) -> None:
    det = MotionDetector(DetectorConfig(backend="motion", motion_warmup=warmup, motion_width=320))
    bg = field()
    outs = [det.detect(with_person(bg, 20 + 5 * i)) for i in range(6)]
    assert len(outs[-1]) >= 1
