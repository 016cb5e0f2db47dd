"""Crop geometry: boxes grown to the model's aspect, frame -> crop -> frame round trips, torch grid crops."""

from __future__ import annotations

import cv2
import numpy as np

from flowgraph.nodes.moriarty.crops import affine_grid_theta, crop_regions, crop_to_frame, warp_crops


def centroid(image: np.ndarray) -> np.ndarray:
    """Intensity centroid in continuous coordinates."""
    gray = image.astype(np.float64).sum(axis=2)
    ys, xs = np.mgrid[0:gray.shape[0], 0:gray.shape[1]] + 0.5
    return np.array([(xs * gray).sum() / gray.sum(), (ys * gray).sum() / gray.sum()])


def test_regions_keep_aspect_and_padding() -> None:
    regions = crop_regions(np.array([[100, 100, 140, 300], [0, 0, 300, 60]]), 192, 256, 1.25)
    for _, _, w, h in regions:
        assert abs(w / h - 192 / 256) < 1e-9
    assert np.allclose(regions[0], [120, 200, 187.5, 250])  # tall box: height padded, width follows
    assert np.allclose(regions[1, 2], 375)  # wide box: width padded, height follows


def test_dot_round_trip_through_a_crop() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    x, y = 333.3, 222.7
    cv2.circle(image, (round((x - 0.5) * 16), round((y - 0.5) * 16)), 5 * 16, (255, 255, 255), -1, cv2.LINE_AA, 4)
    truth = centroid(image)
    region = crop_regions(np.array([[280, 120, 400, 330]]), 96, 128, 1.25)
    crop = warp_crops(image, region, 96, 128)[0]
    back = crop_to_frame(centroid(crop)[None], region[0], 96)[0]
    assert np.abs(back - truth).max() < 0.15  # pixel-centre conventions line up to a fraction of a pixel


def test_out_of_frame_regions_are_black() -> None:
    image = np.full((100, 100, 3), 200, np.uint8)
    crops = warp_crops(image, np.array([[-500.0, -500.0, 50.0, 50.0]]), 32, 32)
    assert crops.shape == (1, 32, 32, 3) and crops.max() == 0


def test_torch_grid_crops_match_opencv() -> None:
    import torch
    from torch.nn import functional

    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (0, 0), 3)
    regions = crop_regions(np.array([[50, 40, 120, 200], [200, 10, 300, 230]]), 48, 64, 1.1)
    ref = warp_crops(image, regions, 48, 64).astype(np.float32)
    theta = torch.tensor(affine_grid_theta(regions, 320, 240), dtype=torch.float32)
    grid = functional.affine_grid(theta, [2, 3, 64, 48], align_corners=False)
    src = torch.from_numpy(image).permute(2, 0, 1).float()[None].expand(2, -1, -1, -1)
    got = functional.grid_sample(src, grid, align_corners=False).permute(0, 2, 3, 1).numpy()
    inside = (slice(None), slice(2, -2), slice(2, -2))  # borders differ by edge handling only
    assert np.abs(got[inside] - ref[inside]).mean() < 1.0
