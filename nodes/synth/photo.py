"""``appearance="photo"``: a real photographed person composited onto the moving figure.

The only people photos that installed packages ship are upper-body portraits (scikit-image's ``astronaut.png``,
the cameraman in ``camera.png`` — cut off by the frame edge —, matplotlib's ``grace_hopper.jpg``); no full-body
photo is on disk. So a photo person is the astronaut's real upper body (head to waist, cut out once with a
hand-made polygon refined by GrabCut, edges feathered) scaled by perspective onto the figure, above the rendered
pelvis and walking legs. Box, foot point, path, speed and leg keypoints stay exact; the face and arm keypoints
(and the shoulder/elbow angles) describe the hidden model, not the photo, so they are marked not visible.
"""

from __future__ import annotations

import functools
import os

import cv2
import numpy as np

from .body import Part, Posed, parts_bbox
from .render import draw_part

# Polygon around the astronaut in astronaut.png (512x512), drawn by hand; GrabCut refines the edge.
_ASTRONAUT_POLY = [(225, 12), (270, 18), (298, 50), (300, 110), (294, 150), (305, 200), (303, 250), (340, 280),
                   (358, 320), (360, 345), (312, 368), (287, 408), (279, 512), (20, 512), (22, 420), (30, 320),
                   (58, 268), (118, 228), (148, 160), (152, 110), (148, 60), (185, 22)]
#: The sprite spans from the head top (1.0 × height) down to this fraction of standing height (the waist).
SPRITE_BOTTOM = 0.585
_HIDDEN_GROUPS = ("head", "left_arm", "right_arm")


@functools.lru_cache(maxsize=1)
def sprite() -> tuple[np.ndarray, np.ndarray]:
    """The cut-out (RGB uint8, alpha float32 0..1), cropped to the person. Raises if scikit-image is missing."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("appearance='photo' needs scikit-image (its astronaut.png is the photo used)")
    path = os.path.join(next(iter(spec.submodule_search_locations)), "data", "astronaut.png")
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise RuntimeError(f"cannot read {path}")
    poly = np.array(_ASTRONAUT_POLY, np.int32)
    inside = np.zeros(bgr.shape[:2], np.uint8)
    cv2.fillPoly(inside, [poly], 1)
    mask = np.full(bgr.shape[:2], cv2.GC_BGD, np.uint8)
    mask[cv2.dilate(inside, np.ones((9, 9), np.uint8)) == 1] = cv2.GC_PR_BGD
    mask[inside == 1] = cv2.GC_PR_FGD
    mask[cv2.erode(inside, np.ones((25, 25), np.uint8)) == 1] = cv2.GC_FGD
    cv2.setRNGSeed(0)  # GrabCut's GMM initialisation draws from OpenCV's RNG: fix it for determinism
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(bgr, mask, (0, 0, 0, 0), bgd, fgd, 4, cv2.GC_INIT_WITH_MASK)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8) * 255
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    alpha = cv2.GaussianBlur(fg, (5, 5), 0).astype(np.float32) / 255.0
    ys, xs = np.nonzero(fg)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    rgb = np.ascontiguousarray(bgr[y0:y1, x0:x1, ::-1])
    return rgb, np.ascontiguousarray(alpha[y0:y1, x0:x1])


@functools.lru_cache(maxsize=1)
def _sprite_hull() -> np.ndarray:
    """Convex hull of the cut-out, in sprite pixels, for occlusion and box geometry."""
    _, alpha = sprite()
    pts = np.column_stack(np.nonzero(alpha > 0.5)[::-1]).astype(np.float32)
    return cv2.convexHull(pts).reshape(-1, 2).astype(np.float64)


def sprite_box(p: Posed) -> tuple[float, float, float, float]:
    """Where the photo goes for posed person ``p``: (x1, y1, x2, y2) in pixels."""
    rgb, _ = sprite()
    bottom, top = p.axis_px[1], p.axis_px[2]
    height = max(bottom[1] - top[1], 1.0)
    width = height * rgb.shape[1] / rgb.shape[0]
    cx = (top[0] + bottom[0]) / 2.0
    return cx - width / 2.0, top[1], cx + width / 2.0, bottom[1]


def apply_photo(p: Posed) -> None:
    """Swap the figure's head, arms and chest for the photo's silhouette (in place): box and occlusion follow."""
    rgb, _ = sprite()
    x1, y1, x2, y2 = sprite_box(p)
    hull = _sprite_hull()
    if np.cos(p.heading) < 0:
        hull = np.column_stack([rgb.shape[1] - hull[:, 0], hull[:, 1]])
    scale = np.array([(x2 - x1) / rgb.shape[1], (y2 - y1) / rgb.shape[0]])
    px_hull = np.array([x1, y1]) + hull * scale
    kept = [q for q in p.parts if q.group not in _HIDDEN_GROUPS and q.colour != "shirt"]
    # Drawn last of this person: the photo is in front of the pelvis it overlaps.
    photo = Part("poly", "torso", "photo", min((q.depth for q in kept), default=p.root_depth) - 0.01,
                 px_hull.mean(axis=0), hull=px_hull)
    p.parts = [*kept, photo]
    p.bbox_full = parts_bbox(p.parts)
    p.photo = True


def draw_photo_person(img: np.ndarray, p: Posed) -> None:
    """Draw legs and pelvis as a figure, then blend the photo upper body over them (after apply_photo)."""
    look = p.walker.appearance
    colours = {"skin": look.skin, "hair": look.hair, "shirt": look.shirt, "legs": look.legs, "shoes": look.shoes}
    for part in p.parts:
        if part.colour != "photo":
            draw_part(img, part, colours[part.colour])
    rgb, alpha = sprite()
    x1, y1, x2, y2 = sprite_box(p)
    w, h = round(x2 - x1), round(y2 - y1)
    if w < 2 or h < 2:
        return
    ix, iy = round(x1), round(y1)
    # Mirror the portrait when the person walks left so the lighting and pose flip with them.
    src, a = (rgb[:, ::-1], alpha[:, ::-1]) if np.cos(p.heading) < 0 else (rgb, alpha)
    interp = cv2.INTER_AREA if h < rgb.shape[0] else cv2.INTER_LINEAR
    small = cv2.resize(np.ascontiguousarray(src), (w, h), interpolation=interp)
    small_a = cv2.resize(np.ascontiguousarray(a), (w, h), interpolation=interp)
    img_h, img_w = img.shape[:2]
    ox0, oy0, ox1, oy1 = max(ix, 0), max(iy, 0), min(ix + w, img_w), min(iy + h, img_h)
    if ox1 <= ox0 or oy1 <= oy0:
        return
    sx0, sy0 = ox0 - ix, oy0 - iy
    roi = img[oy0:oy1, ox0:ox1]
    aa = small_a[sy0:sy0 + (oy1 - oy0), sx0:sx0 + (ox1 - ox0), None]
    ss = small[sy0:sy0 + (oy1 - oy0), sx0:sx0 + (ox1 - ox0)]
    roi[:] = (roi * (1.0 - aa) + ss * aa).astype(np.uint8)
