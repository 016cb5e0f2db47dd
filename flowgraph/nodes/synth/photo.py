"""``appearance="photo"``: a real photographed person composited onto the moving figure.

The only people photos that installed packages ship are upper-body pictures: scikit-image's ``astronaut.png``
(frontal, head to waist) and ``camera.png`` (the cameraman in profile, head to about the hips, his back cut by
the photo's left edge), and matplotlib's ``grace_hopper.jpg`` (a portrait); no full-body photo is on disk. So a
photo person is one of those two real upper bodies (cut out once with a hand-made polygon refined by GrabCut,
edges feathered), scaled by perspective onto the figure above the rendered pelvis and walking legs (dressed like
the photo: the astronaut's orange suit, the cameraman's dark coat). Box, foot point, path, speed and the hip/leg
keypoints stay exact; the face and arm keypoints (and shoulder/elbow angles) describe the hidden model, not the
photo, so they are marked not visible.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import cv2
import numpy as np

from .body import Part, Posed, parts_bbox
from .camera import Camera
from .render import draw_part


@dataclass(frozen=True)
class PhotoSource:
    """A person in a shipped photo: file, hand-made outline, and how it maps onto a standing figure."""

    file: str
    polygon: tuple[tuple[int, int], ...]
    bottom: float        # the cut-out spans from the head top (1.0 × height) down to this fraction of height
    faces_right: bool    # mirrored for people walking left so a profile faces the way they go


SOURCES: tuple[PhotoSource, ...] = (
    PhotoSource("astronaut.png", (
        (225, 12), (270, 18), (298, 50), (298, 100), (282, 128), (274, 158), (292, 174), (305, 200), (303, 250),
        (340, 280), (358, 320), (360, 345), (312, 368), (287, 408), (279, 512), (20, 512), (22, 420), (30, 320),
        (58, 268), (118, 228), (135, 190), (163, 172), (170, 140), (154, 110), (148, 60), (185, 22)),
        bottom=0.585, faces_right=True),
    PhotoSource("camera.png", (
        (195, 62), (235, 68), (262, 90), (268, 118), (258, 138), (325, 138), (332, 170), (330, 215), (310, 240),
        (282, 246), (262, 298), (232, 318), (190, 334), (156, 345), (152, 420), (150, 511), (0, 511), (0, 240),
        (40, 190), (90, 150), (130, 110), (160, 95), (172, 75)),
        bottom=0.57, faces_right=True),
)
_HIDDEN_GROUPS = ("head", "left_arm", "right_arm")


def _source_for(p: Posed) -> PhotoSource:
    return SOURCES[max(p.walker.appearance.photo, 0) % len(SOURCES)]


@functools.lru_cache(maxsize=len(SOURCES))
def sprite(index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cut-out ``index`` of :data:`SOURCES` (RGB uint8, alpha float32 0..1), cropped to the person.

    Raises RuntimeError if scikit-image (which ships the photos) is not installed.
    """
    import importlib.util

    src = SOURCES[index]
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("appearance='photo' needs scikit-image (its sample photos are the people used)")
    path = os.path.join(next(iter(spec.submodule_search_locations)), "data", src.file)
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise RuntimeError(f"cannot read {path}")
    poly = np.array(src.polygon, np.int32)
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
    alpha = np.ascontiguousarray(alpha[y0:y1, x0:x1])
    # The photo ends at the waist: fade its last rows into the rendered pelvis instead of a hard cut.
    fade = max(int(0.06 * alpha.shape[0]), 1)
    alpha[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    return rgb, alpha


@functools.lru_cache(maxsize=len(SOURCES))
def _sprite_hull(index: int) -> np.ndarray:
    """Convex hull of a cut-out, in sprite pixels, for occlusion and box geometry."""
    _, alpha = sprite(index)
    pts = np.column_stack(np.nonzero(alpha > 0.5)[::-1]).astype(np.float32)
    return cv2.convexHull(pts).reshape(-1, 2).astype(np.float64)


def _mirrored(p: Posed) -> bool:
    src = _source_for(p)
    left = bool(np.cos(p.heading) < 0)
    return left if src.faces_right else not left


def apply_photo(p: Posed, camera: Camera) -> None:
    """Swap the figure's head, arms and chest for a photo's silhouette (in place): box and occlusion follow."""
    index = max(p.walker.appearance.photo, 0) % len(SOURCES)
    src = SOURCES[index]
    rgb, _ = sprite(index)
    hgt = p.walker.height_m
    (axis, _) = camera.project(np.array([[p.root[0], p.root[1], hgt * src.bottom], [p.root[0], p.root[1], hgt]]))
    bottom, top = axis[0], axis[1]
    height = max(float(bottom[1] - top[1]), 1.0)
    width = height * rgb.shape[1] / rgb.shape[0]
    # Profile photos put the body axis at the middle of the torso, not the middle of the picture (the arms reach
    # forward): centre the cut-out's lower half on the axis instead.
    hull = _sprite_hull(index)
    mirrored = _mirrored(p)
    if mirrored:
        hull = np.column_stack([rgb.shape[1] - hull[:, 0], hull[:, 1]])
    _, alpha = sprite(index)
    low = alpha[alpha.shape[0] * 2 // 3:]
    cols = np.nonzero(low.max(axis=0) > 0.5)[0]
    centre = (cols.min() + cols.max()) / 2.0 if len(cols) else rgb.shape[1] / 2.0
    if mirrored:
        centre = rgb.shape[1] - centre
    cx = float(top[0] + bottom[0]) / 2.0
    x1 = cx - centre * width / rgb.shape[1]
    box = (x1, float(top[1]), x1 + width, float(bottom[1]))
    scale = np.array([width / rgb.shape[1], height / rgb.shape[0]])
    px_hull = np.array([box[0], box[1]]) + hull * scale
    kept = [q for q in p.parts if q.group not in _HIDDEN_GROUPS and q.colour != "shirt"]
    # Drawn last of this person: the photo is in front of the pelvis it overlaps.
    photo = Part("poly", "torso", "photo", min((q.depth for q in kept), default=p.root_depth) - 0.01,
                 px_hull.mean(axis=0), hull=px_hull)
    p.parts = [*kept, photo]
    p.bbox_full = parts_bbox(p.parts)
    p.photo_box = box


def draw_photo_person(img: np.ndarray, p: Posed) -> None:
    """Draw legs and pelvis as a figure, then blend the photo upper body over them (after apply_photo)."""
    look = p.walker.appearance
    colours = {"skin": look.skin, "hair": look.hair, "shirt": look.shirt, "legs": look.legs, "shoes": look.shoes}
    for part in p.parts:
        if part.colour != "photo":
            draw_part(img, part, colours[part.colour])
    if p.photo_box is None:
        return
    index = max(look.photo, 0) % len(SOURCES)
    rgb, alpha = sprite(index)
    x1, y1, x2, y2 = p.photo_box
    w, h = round(x2 - x1), round(y2 - y1)
    if w < 2 or h < 2:
        return
    ix, iy = round(x1), round(y1)
    src, a = (rgb[:, ::-1], alpha[:, ::-1]) if _mirrored(p) else (rgb, alpha)
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
