"""Crop geometry for top-down pose: person boxes -> model-sized crops, and crop coordinates -> frame pixels.

Coordinates are *continuous*: ``x`` runs from 0 at the left edge of the image to ``W`` at its right edge, so the
centre of pixel ``i`` is ``i + 0.5`` (MediaPipe's normalised landmarks times the size are in this convention).
A crop is the axis-aligned frame region ``(cx, cy, w, h)`` mapped onto ``out_w x out_h`` pixels with one scale
``s = w / out_w = h / out_h``: frame ``x = cx - w/2 + u * s`` for crop coordinate ``u``.
"""

from __future__ import annotations

import cv2
import numpy as np


def crop_regions(boxes: np.ndarray, out_w: int, out_h: int, padding: float = 1.25) -> np.ndarray:
    """``(N, 4)`` crop regions ``(cx, cy, w, h)``: each box grown by ``padding`` to the model's aspect ratio.

    Growing (never squashing) keeps the person's proportions, which top-down models are trained on.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 1.0)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
    aspect = out_w / out_h
    w, h = np.where(w > h * aspect, w, h * aspect), np.where(w > h * aspect, w / aspect, h)
    return np.stack([cx, cy, w * padding, h * padding], axis=1)


def frame_to_crop_matrix(region: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """The 2x3 affine that ``cv2.warpAffine`` needs (it works in pixel-centre coordinates)."""
    cx, cy, w, _ = (float(v) for v in region)
    s = w / out_w
    x0 = cx - w / 2
    y0 = cy - region[3] / 2
    # continuous u = (x - x0) / s; in pixel-centre terms u_pc + 0.5 = (x_pc + 0.5 - x0) / s
    return np.array([[1 / s, 0.0, (0.5 - x0) / s - 0.5], [0.0, 1 / s, (0.5 - y0) / s - 0.5]])


def warp_crops(image: np.ndarray, regions: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """``(N, out_h, out_w, 3)`` uint8 crops; outside the frame is black."""
    crops = np.zeros((len(regions), out_h, out_w, image.shape[2]), dtype=np.uint8)
    for i, region in enumerate(regions):
        cv2.warpAffine(image, frame_to_crop_matrix(region, out_w, out_h), (out_w, out_h), dst=crops[i],
                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return crops


def crop_to_frame(points: np.ndarray, region: np.ndarray, out_w: int) -> np.ndarray:
    """Map ``(K, >=2)`` crop coordinates (continuous) back to frame pixels; extra columns are kept."""
    cx, cy, w, h = (float(v) for v in region)
    s = w / out_w
    out = np.array(points, dtype=np.float64, copy=True)
    out[:, 0] = cx - w / 2 + out[:, 0] * s
    out[:, 1] = cy - h / 2 + out[:, 1] * s
    return out


def affine_grid_theta(regions: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(N, 2, 3)`` thetas for ``torch.nn.functional.affine_grid`` (``align_corners=False``).

    With ``align_corners=False`` the normalised coordinate -1..1 spans the continuous 0..W range, so crop
    normalised ``a`` maps to frame normalised ``(cx + a * w / 2) / W * 2 - 1``.
    """
    regions = np.asarray(regions, dtype=np.float64)
    theta = np.zeros((len(regions), 2, 3))
    theta[:, 0, 0] = regions[:, 2] / width
    theta[:, 0, 2] = regions[:, 0] / width * 2 - 1
    theta[:, 1, 1] = regions[:, 3] / height
    theta[:, 1, 2] = regions[:, 1] / height * 2 - 1
    return theta
