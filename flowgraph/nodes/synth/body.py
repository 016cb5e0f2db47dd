"""A walker posed at one instant: 3D keypoints in the world, their projection, and the body's solid parts.

Parts are what the renderer fills and what the ground truth uses for bounding boxes, occlusion and keypoint
visibility: tapered capsules for limbs and neck, convex hulls of projected elliptic cross-sections for the chest
and pelvis, ellipses for head and hair. Geometry only (no drawing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .camera import Camera
from .gait import SEG, STYLES, cadence_spm, pose_3d, stride_length_m
from .people import Walker
from .skeleton import BLAZEPOSE_INDEX as IX


@dataclass(slots=True)
class Part:
    """One solid piece of a figure in pixels. ``kind``: capsule (p0, p1, r0, r1), poly (hull), ellipse."""

    kind: str
    group: str          # head, torso, left_arm, right_arm, left_leg, right_leg
    colour: str         # key into the appearance: skin, hair, shirt, legs, shoes
    depth: float        # metres along the optical axis; far parts are drawn first
    p0: np.ndarray
    p1: np.ndarray | None = None
    r0: float = 0.0
    r1: float = 0.0
    hull: np.ndarray | None = None
    axes: tuple[float, float] = (0.0, 0.0)   # ellipse semi-axes (horizontal, vertical) in px

    def extent(self) -> tuple[float, float, float, float]:
        if self.kind == "capsule":
            assert self.p1 is not None
            r = max(self.r0, self.r1)
            return (min(self.p0[0], self.p1[0]) - r, min(self.p0[1], self.p1[1]) - r,
                    max(self.p0[0], self.p1[0]) + r, max(self.p0[1], self.p1[1]) + r)
        if self.kind == "poly":
            assert self.hull is not None
            lo, hi = self.hull.min(axis=0), self.hull.max(axis=0)
            return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])
        return (self.p0[0] - self.axes[0], self.p0[1] - self.axes[1],
                self.p0[0] + self.axes[0], self.p0[1] + self.axes[1])

    def covers(self, pts: np.ndarray) -> np.ndarray:
        """Which of the pixel points ``(N, 2)`` lie inside this part."""
        if self.kind == "capsule":
            assert self.p1 is not None
            d = self.p1 - self.p0
            dd = float(d @ d)
            u = np.clip(((pts - self.p0) @ d) / dd, 0.0, 1.0) if dd > 1e-9 else np.zeros(len(pts))
            closest = self.p0 + u[:, None] * d
            r = self.r0 + (self.r1 - self.r0) * u
            return np.hypot(*(pts - closest).T) <= r
        if self.kind == "poly":
            assert self.hull is not None
            a = self.hull
            b = np.roll(a, -1, axis=0)
            cross = (b[:, 0] - a[:, 0])[None, :] * (pts[:, 1:2] - a[:, 1][None, :]) - (
                b[:, 1] - a[:, 1])[None, :] * (pts[:, 0:1] - a[:, 0][None, :])
            return np.all(cross >= 0, axis=1) | np.all(cross <= 0, axis=1)
        ax, ay = max(self.axes[0], 1e-6), max(self.axes[1], 1e-6)
        return ((pts[:, 0] - self.p0[0]) / ax) ** 2 + ((pts[:, 1] - self.p0[1]) / ay) ** 2 <= 1.0


@dataclass(slots=True)
class Posed:
    """A walker at scene time ``t``: kinematics, keypoints and parts."""

    walker: Walker
    t_local: float
    distance_m: float
    speed_mps: float
    heading: float        # radians, world frame (see paths.py)
    cadence_spm: float
    stride_length_m: float
    phase: float
    left_contact: bool
    right_contact: bool
    root: np.ndarray      # ground point (X, Y) below the mid-hip: the person's "foot point"
    world: np.ndarray     # (33, 3)
    uv: np.ndarray        # (33, 2) pixels
    depth: np.ndarray     # (33,) metres along the optical axis
    root_depth: float
    parts: list[Part]
    bbox_full: tuple[float, float, float, float]
    #: Set when the upper body is a photo cut-out (see photo.py): where it is drawn, (x1, y1, x2, y2) px.
    photo_box: tuple[float, float, float, float] | None = None

    @property
    def photo(self) -> bool:
        return self.photo_box is not None


def pose_walker(w: Walker, t: float, camera: Camera) -> Posed:
    """Pose ``w`` at scene time ``t`` (which must lie within its pass)."""
    style = STYLES[w.gait]
    tl = t - w.start_s
    s = w.speed.distance(tl)
    v = w.speed.speed(tl)
    # Gait phase integrates stride frequency = cadence/120 = (a + b·v)/120 over time: closed form via distance.
    phase = (w.phase0 + (style.cadence_a * tl + style.cadence_b * s) / 120.0) % 1.0
    root = w.path.point(s)
    heading = w.path.heading(s)
    body, left_c, right_c = pose_3d(style, phase, v, w.height_m)
    fwd = np.array([math.cos(heading), math.sin(heading), 0.0])
    left = np.array([-math.sin(heading), math.cos(heading), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    basis = np.stack([fwd, left, up])
    origin = np.array([root[0], root[1], 0.0])
    world = origin + body @ basis
    uv, depth = camera.project(world)
    (_, root_depth) = camera.project(np.array([root[0], root[1], w.height_m * SEG["hip_z"]]))
    parts = _parts(w, world, uv, depth, camera, fwd, left)
    bbox = parts_bbox(parts)
    return Posed(walker=w, t_local=tl, distance_m=s, speed_mps=v, heading=heading,
                 cadence_spm=cadence_spm(style, v), stride_length_m=stride_length_m(style, v), phase=phase,
                 left_contact=left_c, right_contact=right_c, root=root, world=world, uv=uv, depth=depth,
                 root_depth=float(root_depth), parts=parts, bbox_full=bbox)


def parts_bbox(parts: list[Part]) -> tuple[float, float, float, float]:
    ext = np.array([p.extent() for p in parts])
    return float(ext[:, 0].min()), float(ext[:, 1].min()), float(ext[:, 2].max()), float(ext[:, 3].max())


# (group, colour, from, to, r0, r1 as fractions of height); forearm/shank colours depend on the appearance.
_LIMBS = (
    ("arm", "shirt", "shoulder", "elbow", 0.039, 0.031),
    ("arm", "skin", "elbow", "wrist", 0.029, 0.023),
    ("arm", "skin", "wrist", "index", 0.024, 0.019),
    ("leg", "legs", "hip", "knee", 0.068, 0.049),
    ("leg", "legs", "knee", "ankle", 0.047, 0.033),
    ("leg", "shoes", "heel", "foot_index", 0.028, 0.022),
)


def _parts(w: Walker, world: np.ndarray, uv: np.ndarray, depth: np.ndarray, camera: Camera,
           fwd: np.ndarray, left: np.ndarray) -> list[Part]:
    hgt = w.height_m
    f = camera.focal_px
    parts: list[Part] = []

    def px(r_m: float, d: float) -> float:
        return r_m * f / max(d, 0.1)

    for side in ("left", "right"):
        for group, colour, a, b, r0, r1 in _LIMBS:
            ia, ib = IX[f"{side}_{a}"], IX[f"{side}_{b}"]
            if colour == "legs" and w.appearance.shorts:
                colour, r0, r1 = "skin", r0 * 0.88, r1 * 0.88  # bare legs are slimmer than trousers
            # A hair nearer than the torso at equal depth, so limbs at the body's sides draw on top.
            d = float(depth[ia] + depth[ib]) / 2.0 - 0.02
            parts.append(Part("capsule", f"{side}_{group}", colour, d, uv[ia].copy(), uv[ib].copy(),
                              px(r0 * hgt, depth[ia]), px(r1 * hgt, depth[ib])))
        if w.appearance.shorts:
            # Shorts: a wider, shorter capsule over the upper thigh.
            ih, ik = IX[f"{side}_hip"], IX[f"{side}_knee"]
            mid = world[ih] + 0.55 * (world[ik] - world[ih])
            (muv, mdep) = camera.project(mid)
            d = float(depth[ih] + depth[ik]) / 2.0 - 0.021
            parts.append(Part("capsule", f"{side}_leg", "legs", d, uv[ih].copy(), muv.copy(),
                              px(0.072 * hgt, depth[ih]), px(0.058 * hgt, float(mdep))))
    # Trunk: elliptic cross-sections along the (leaning) mid-hip → mid-shoulder line.
    mid_hip = (world[IX["left_hip"]] + world[IX["right_hip"]]) / 2.0
    mid_sh = (world[IX["left_shoulder"]] + world[IX["right_shoulder"]]) / 2.0
    axis = mid_sh - mid_hip
    ang = np.linspace(0.0, 2 * np.pi, 14, endpoint=False)
    ring = np.stack([np.cos(ang), np.sin(ang)], axis=1)

    def section(u: float, lateral: float, sagittal: float, dz: float = 0.0) -> np.ndarray:
        c = mid_hip + u * axis + np.array([0.0, 0.0, dz * hgt])
        return c + ring[:, :1] * (sagittal * hgt) * fwd + ring[:, 1:] * (lateral * hgt) * left

    def hull_part(colour: str, sections: list[np.ndarray], d_bias: float) -> Part:
        pts3 = np.concatenate(sections)
        p2, dep = camera.project(pts3)
        hull = _convex_hull(p2)
        return Part("poly", "torso", colour, float(dep.mean()) + d_bias, p2.mean(axis=0), hull=hull)

    pelvis = hull_part("legs", [section(0.0, 0.115, 0.08, -0.04), section(0.30, 0.10, 0.072)], 0.01)
    chest = hull_part("shirt", [section(0.28, 0.104, 0.07), section(0.75, 0.132, 0.078),
                                section(1.0, 0.125, 0.058, 0.022)], 0.0)
    parts += [pelvis, chest]
    # Neck and head (hair is an ellipse behind the face, shifted up and back, so it shows on top and behind).
    head = (world[IX["left_ear"]] + world[IX["right_ear"]]) / 2.0
    neck_base = mid_sh + np.array([0.0, 0.0, 0.01 * hgt])
    (nuv, ndep) = camera.project(np.stack([neck_base, head - np.array([0.0, 0.0, 0.03 * hgt])]))
    parts.append(Part("capsule", "head", "skin", float(ndep.mean()) - 0.005, nuv[0], nuv[1],
                      px(0.032 * hgt, ndep[0]), px(0.028 * hgt, ndep[1])))
    hair_c = head + np.array([0.0, 0.0, 0.016 * hgt]) - 0.02 * hgt * fwd
    (huv, hdep) = camera.project(np.stack([head, hair_c]))
    face_axes = (px(0.050 * hgt, hdep[0]), px(0.064 * hgt, hdep[0]))
    parts.append(Part("ellipse", "head", "hair", float(hdep[1]) - 0.006, huv[1],
                      axes=(face_axes[0] * 1.08, face_axes[1] * 0.95)))
    # The face always goes on top of its own hair.
    parts.append(Part("ellipse", "head", "skin", float(hdep[1]) - 0.0065, huv[0], axes=face_axes))
    parts.sort(key=lambda p: -p.depth)
    return parts


def _convex_hull(pts: np.ndarray) -> np.ndarray:
    """Convex hull of 2D points ``(N, 2)``, as ``(M, 2)`` float64 vertices in order."""
    return cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
