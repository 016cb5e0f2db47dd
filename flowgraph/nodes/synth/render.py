"""Drawing posed figures with OpenCV: filled, shaded body parts, far to near.

Every part is drawn in three layers (a dark rim, the base colour shifted toward the light, a small highlight) so
limbs read as rounded solids rather than flat sticks — HOG and real detectors respond to the resulting
silhouette edges. Coordinates use OpenCV's fixed-point ``shift`` for sub-pixel placement.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .body import Part, Posed
from .people import Appearance

_SHIFT = 4
_ONE = 1 << _SHIFT
# Light from the upper left: layers move this way (in units of the part's radius).
_LIGHT = np.array([-0.55, -0.85])
_LIGHT_XY = (-0.55, -0.85)


def _shade(colour: tuple[int, int, int], k: float, add: float = 0.0) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, c * k + add))) for c in colour)  # type: ignore[return-value]


def _fix(p: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(p) * _ONE).astype(np.int32)


def _capsule(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, r0: float, r1: float,
             colour: tuple[int, int, int], aa: bool) -> None:
    """A tapered capsule: a quad between two circles. Plain floats: this runs ~50 times per person per frame."""
    line = cv2.LINE_AA if aa else cv2.LINE_8
    dx, dy = x1 - x0, y1 - y0
    n = math.hypot(dx, dy)
    if n > 1e-6:
        nx, ny = -dy / n, dx / n
        quad = np.array([[x0 + nx * r0, y0 + ny * r0], [x1 + nx * r1, y1 + ny * r1],
                         [x1 - nx * r1, y1 - ny * r1], [x0 - nx * r0, y0 - ny * r0]]) * _ONE
        cv2.fillConvexPoly(img, quad.astype(np.int32), colour, line, _SHIFT)
    if r0 >= 0.5:
        cv2.circle(img, (round(x0 * _ONE), round(y0 * _ONE)), round(r0 * _ONE), colour, -1, line, _SHIFT)
    if r1 >= 0.5:
        cv2.circle(img, (round(x1 * _ONE), round(y1 * _ONE)), round(r1 * _ONE), colour, -1, line, _SHIFT)


def draw_part(img: np.ndarray, part: Part, colour: tuple[int, int, int]) -> None:
    dark, light = _shade(colour, 0.7), _shade(colour, 1.12, 28)  # a soft rim: harsher outlines cut HOG recall
    if part.kind == "capsule":
        assert part.p1 is not None
        r0, r1 = part.r0, part.r1
        x0, y0 = float(part.p0[0]), float(part.p0[1])
        x1, y1 = float(part.p1[0]), float(part.p1[1])
        lx, ly = _LIGHT_XY
        _capsule(img, x0, y0, x1, y1, r0, r1, dark, True)
        k = 0.14
        _capsule(img, x0 + lx * k * r0, y0 + ly * k * r0, x1 + lx * k * r1, y1 + ly * k * r1, r0 * 0.78, r1 * 0.78,
                 colour, False)
        if r0 > 2.5:
            k = 0.4
            _capsule(img, x0 + lx * k * r0, y0 + ly * k * r0, x1 + lx * k * r1, y1 + ly * k * r1, r0 * 0.3,
                     r1 * 0.3, light, False)
    elif part.kind == "poly":
        assert part.hull is not None
        hull = part.hull
        c = hull.mean(axis=0)
        size = float(np.sqrt(max(np.ptp(hull[:, 0]) * np.ptp(hull[:, 1]), 1.0)))
        cv2.fillConvexPoly(img, _fix(hull), dark, cv2.LINE_AA, _SHIFT)
        inner = c + (hull - c) * 0.86 + _LIGHT * 0.05 * size
        cv2.fillConvexPoly(img, _fix(inner), colour, cv2.LINE_8, _SHIFT)
        hi = c + (hull - c) * 0.35 + _LIGHT * 0.18 * size
        cv2.fillConvexPoly(img, _fix(hi), _shade(colour, 1.06, 14), cv2.LINE_8, _SHIFT)
    else:
        ax, ay = part.axes
        centre = _fix(part.p0)
        cv2.ellipse(img, (int(centre[0]), int(centre[1])), (int(ax * _ONE), int(ay * _ONE)), 0, 0, 360,
                    dark if part.colour != "hair" else colour, -1, cv2.LINE_AA, _SHIFT)
        if part.colour != "hair" and ax > 2:
            c2 = _fix(part.p0 + _LIGHT * 0.12 * ax)
            cv2.ellipse(img, (int(c2[0]), int(c2[1])), (int(ax * 0.8 * _ONE), int(ay * 0.82 * _ONE)), 0, 0,
                        360, colour, -1, cv2.LINE_8, _SHIFT)


def draw_person(img: np.ndarray, posed: Posed) -> None:
    """Draw one posed figure into ``img`` (RGB, modified in place); parts are already sorted far to near."""
    look: Appearance = posed.walker.appearance
    colours = {"skin": look.skin, "hair": look.hair, "shirt": look.shirt, "legs": look.legs, "shoes": look.shoes}
    x1, y1, x2, y2 = posed.bbox_full
    h, w = img.shape[:2]
    if x2 < 0 or y2 < 0 or x1 >= w or y1 >= h:
        return
    _shadow(img, posed)
    for part in posed.parts:
        draw_part(img, part, colours[part.colour])


def _shadow(img: np.ndarray, posed: Posed) -> None:
    """A soft dark ellipse on the ground under the person (blended in the box around it only)."""
    x1, _, x2, y2 = posed.bbox_full
    bw = x2 - x1
    cx, cy = (x1 + x2) / 2.0, y2 - 0.01 * bw
    ax, ay = 0.55 * bw, 0.1 * bw
    h, w = img.shape[:2]
    ix1, iy1 = max(int(cx - ax) - 1, 0), max(int(cy - ay) - 1, 0)
    ix2, iy2 = min(int(cx + ax) + 2, w), min(int(cy + ay) + 2, h)
    if ix2 <= ix1 or iy2 <= iy1 or ax < 1 or ay < 1:
        return
    roi = img[iy1:iy2, ix1:ix2]
    mask = np.zeros(roi.shape[:2], np.uint8)
    c = _fix(np.array([cx - ix1, cy - iy1]))
    cv2.ellipse(mask, (int(c[0]), int(c[1])), (int(ax * _ONE), int(ay * _ONE)), 0, 0, 360, 90, -1, cv2.LINE_AA,
                _SHIFT)
    k = 1.0 - mask.astype(np.float32)[..., None] / 255.0
    roi[:] = (roi * k).astype(np.uint8)
