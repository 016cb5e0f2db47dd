"""Model outputs -> keypoints: heatmaps (SimpleBaseline/ViTPose/HRNet style) and SimCC (RTMPose style).

Both return ``(N, K, 3)`` arrays of ``x, y, score`` in continuous coordinates of the model's input crop (see
``crops.py``), refined below one heatmap cell / SimCC bin by fitting a parabola through the peak and its two
neighbours along each axis (on the log of positive values, which is exact for a Gaussian peak).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Layout = Literal["heatmap", "simcc"]


def _refine(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Sub-bin offsets (-0.5..0.5) of the maxima ``index`` along the last axis of ``values``."""
    n = values.shape[-1]
    i = np.clip(index, 1, n - 2)
    left = np.take_along_axis(values, (i - 1)[..., None], -1)[..., 0]
    mid = np.take_along_axis(values, i[..., None], -1)[..., 0]
    right = np.take_along_axis(values, (i + 1)[..., None], -1)[..., 0]
    positive = (left > 0) & (mid > 0) & (right > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ll, lm, lr = (np.log(np.where(positive, v, 1.0)) for v in (left, mid, right))
    left, mid, right = (np.where(positive, lg, v) for lg, v in ((ll, left), (lm, mid), (lr, right)))
    denom = left - 2 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(denom < 0, 0.5 * (left - right) / denom, 0.0)
    offset = np.clip(np.nan_to_num(offset), -0.5, 0.5)
    # at the borders the parabola would be fitted around a neighbour: no refinement there
    return np.where((index >= 1) & (index <= n - 2), offset, 0.0)


def decode_heatmaps(heatmaps: np.ndarray, input_w: int, input_h: int) -> np.ndarray:
    """``(N, K, h, w)`` heatmaps -> ``(N, K, 3)``; score is the peak value."""
    hm = np.asarray(heatmaps, dtype=np.float32)
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, -1)
    peak = flat.argmax(-1)
    score = np.take_along_axis(flat, peak[..., None], -1)[..., 0]
    py, px = np.divmod(peak, w)
    rows = np.take_along_axis(hm, py[..., None, None].repeat(w, -1), 2)[:, :, 0, :]  # (N, K, w) through the peak
    cols = np.take_along_axis(hm, px[..., None, None].repeat(h, -2), 3)[..., 0]  # (N, K, h)
    fx = px + _refine(rows, px)
    fy = py + _refine(cols, py)
    out = np.empty((n, k, 3), dtype=np.float64)
    out[..., 0] = (fx + 0.5) * (input_w / w)
    out[..., 1] = (fy + 0.5) * (input_h / h)
    out[..., 2] = score
    return out


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float) -> np.ndarray:
    """``(N, K, Wx)`` and ``(N, K, Hy)`` 1-D classifications -> ``(N, K, 3)``; score is the lower peak."""
    sx = np.asarray(simcc_x, dtype=np.float32)
    sy = np.asarray(simcc_y, dtype=np.float32)
    ix = sx.argmax(-1)
    iy = sy.argmax(-1)
    vx = np.take_along_axis(sx, ix[..., None], -1)[..., 0]
    vy = np.take_along_axis(sy, iy[..., None], -1)[..., 0]
    out = np.empty((*ix.shape, 3), dtype=np.float64)
    out[..., 0] = (ix + _refine(sx, ix) + 0.5) / split_ratio
    out[..., 1] = (iy + _refine(sy, iy) + 0.5) / split_ratio
    out[..., 2] = np.minimum(vx, vy)
    return out


def detect_layout(outputs: list[np.ndarray]) -> Layout:
    """Which decoder fits a model's outputs: one 4-D tensor is heatmaps, two 3-D tensors are SimCC."""
    shapes = [tuple(o.shape) for o in outputs]
    if len(outputs) >= 1 and len(shapes[0]) == 4:
        return "heatmap"
    if len(outputs) >= 2 and len(shapes[0]) == 3 and len(shapes[1]) == 3:
        return "simcc"
    raise ValueError(f"cannot tell heatmap from SimCC outputs with shapes {shapes}: expected one (N, K, h, w) "
                     "tensor or two (N, K, bins) tensors")


def decode(outputs: list[np.ndarray], layout: Layout | Literal["auto"], input_w: int, input_h: int,
           split_ratio: float) -> np.ndarray:
    """Decode raw model outputs with the given (or detected) layout."""
    if layout == "auto":
        layout = detect_layout(outputs)
    if layout == "heatmap":
        return decode_heatmaps(outputs[0], input_w, input_h)
    if len(outputs) < 2:
        raise ValueError("a SimCC model must return two outputs (x and y classifications)")
    return decode_simcc(outputs[0], outputs[1], split_ratio)
