"""Heatmap and SimCC decoding to sub-cell precision, in continuous input coordinates."""

from __future__ import annotations

import numpy as np
import pytest

from flowgraph.nodes.moriarty.decode import decode, decode_heatmaps, decode_simcc, detect_layout


def gaussian_heatmaps(points: np.ndarray, h: int, w: int, sigma: float = 2.0) -> np.ndarray:
    """(1, K, h, w) Gaussians centred on ``points`` given in heatmap-cell continuous coordinates."""
    ys, xs = np.mgrid[0:h, 0:w] + 0.5  # cell centres
    out = [np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2)) for x, y in points]
    return np.array(out, dtype=np.float32)[None]


def test_heatmap_peaks_are_found_between_cells() -> None:
    rng = np.random.default_rng(0)
    cells = rng.uniform([3, 3], [45, 61], size=(17, 2))  # (x, y) within a 48 x 64 heatmap
    out = decode_heatmaps(gaussian_heatmaps(cells, 64, 48), input_w=192, input_h=256)
    assert out.shape == (1, 17, 3)
    assert np.abs(out[0, :, :2] - cells * 4).max() < 0.05 * 4  # within 5 % of a cell, in input pixels
    assert np.all(out[0, :, 2] > 0.85)


def test_heatmap_peak_on_the_border_and_zero_map() -> None:
    maps = gaussian_heatmaps(np.array([[0.5, 10.5]]), 16, 12)
    out = decode_heatmaps(maps, 48, 64)
    assert abs(out[0, 0, 0] - 2.0) < 1e-6  # cell 0 centre = input x 2.0 (stride 4), no refinement at the edge
    zero = decode_heatmaps(np.zeros((2, 3, 8, 8), np.float32), 32, 32)
    assert np.all(zero[..., 2] == 0) and np.isfinite(zero).all()


def test_simcc_bins_map_to_input_pixels() -> None:
    split = 2.0
    targets = np.array([[10.3, 200.7], [150.0, 33.25]])  # input-pixel (x, y)
    bins_x = np.arange(int(192 * split)) + 0.5
    bins_y = np.arange(int(256 * split)) + 0.5
    sx = np.array([[np.exp(-(bins_x - x * split) ** 2 / 8) for x, _ in targets]])
    sy = np.array([[np.exp(-(bins_y - y * split) ** 2 / 8) for _, y in targets]])
    out = decode_simcc(sx, sy, split)
    assert np.abs(out[0, :, :2] - targets).max() < 0.05
    both = decode([sx, sy], "auto", 192, 256, split)
    assert np.array_equal(both, out)


def test_layout_detection_and_errors() -> None:
    assert detect_layout([np.zeros((1, 17, 64, 48))]) == "heatmap"
    assert detect_layout([np.zeros((1, 17, 384)), np.zeros((1, 17, 512))]) == "simcc"
    with pytest.raises(ValueError, match="cannot tell"):
        detect_layout([np.zeros((1, 17))])
    with pytest.raises(ValueError, match="two outputs"):
        decode([np.zeros((1, 17, 384))], "simcc", 192, 256, 2.0)
