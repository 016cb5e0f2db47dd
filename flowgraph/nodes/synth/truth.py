"""Ground truth per frame: what every person is, where, how fast and how they hold their limbs.

Definitions (all documented for the workstreams that test against this):

- ``bbox``: the silhouette's box in pixels (x1, y1, x2, y2), clipped to the picture; ``bbox_full`` unclipped.
- ``visible_fraction``: share of the person's silhouette (sampled on a grid) that is inside the picture and not
  covered by a nearer person.
- ``foot_world``: the ground point below the mid-hip (the point that moves along the path at ``speed_mps``);
  ``foot_px`` is its projection. The bbox bottom centre (what a detector gives) lies within 20 % of the box
  height of it horizontally and 15 % vertically, typically 3-4 % below it (a stride spreads the feet and the
  front foot is nearer the camera).
- ``keypoints``: BlazePose-33 name -> (x, y, visible) in pixels (may lie outside the picture); ``visible`` is
  False when the point is outside the picture
  or covered by another person or by one of the person's own body parts nearer to the camera (e.g. the far
  arm behind the chest), not counting the limb the point belongs to.
- ``joint_angles``: computed from the projected keypoints with :func:`skeleton.joint_angles` (image plane).
- ``speed_mps``: ground speed along the path; ``heading_deg``: direction of travel on the ground, 0 = world +X
  (right in the picture), 90 = world +Y (away from the camera); ``distance_m``: metres along the path since the
  person appeared (they start 1.5 m or more outside the picture).
- ``cadence_spm``: steps per minute; ``stride_length_m``: metres per stride (= two steps), so
  ``speed_mps = cadence_spm / 60 × stride_length_m / 2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .body import Posed
from .camera import Camera
from .skeleton import BLAZEPOSE33, COCO_FROM_BLAZEPOSE, joint_angles

_ARM = ("elbow", "wrist", "pinky", "index", "thumb")
_LEG = ("knee", "ankle", "heel", "foot_index")


def _own_groups(name: str) -> set[str]:
    """Part groups that never hide keypoint ``name``: a knee is not "behind" its own thigh."""
    side, _, joint = name.partition("_")
    if joint == "shoulder":
        return {"torso", f"{side}_arm"}
    if joint == "hip":
        return {"torso", f"{side}_leg"}
    if joint in _ARM:
        return {f"{side}_arm"}
    if joint in _LEG:
        return {f"{side}_leg"}
    return {"head"}


_OWN_GROUPS = {name: _own_groups(name) for name in BLAZEPOSE33}
#: Keypoints that a photo cut-out upper body hides (only the legs and hips stay the model's own).
_PHOTO_HIDDEN = np.array([not n.endswith(("hip", "knee", "ankle", "heel", "foot_index")) for n in BLAZEPOSE33])
#: group -> which of the 33 keypoints that group's parts may not hide
_GROUP_MEMBERS = {g: np.array([g in _OWN_GROUPS[n] for n in BLAZEPOSE33])
                  for g in ("head", "torso", "left_arm", "right_arm", "left_leg", "right_leg")}


@dataclass(slots=True)
class PersonTruth:
    """Ground truth of one person in one frame (see the module docstring for definitions)."""

    person_id: int
    bbox: tuple[float, float, float, float]
    bbox_full: tuple[float, float, float, float]
    visible_fraction: float
    foot_px: tuple[float, float]
    foot_world: tuple[float, float]
    speed_mps: float
    heading_deg: float
    distance_m: float
    keypoints: dict[str, tuple[float, float, bool]]
    coco17: list[tuple[float, float, bool]]
    joint_angles: dict[str, float]
    cadence_spm: float
    stride_length_m: float
    left_contact: bool
    right_contact: bool
    gait: str = "walk"
    phase: float = 0.0
    height_m: float = 1.75
    camera_distance_m: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        def r(v: float, n: int = 3) -> float:
            return round(float(v), n)

        return {
            "person_id": self.person_id,
            "bbox": [r(v, 2) for v in self.bbox],
            "bbox_full": [r(v, 2) for v in self.bbox_full],
            "visible_fraction": r(self.visible_fraction),
            "foot_px": [r(v, 2) for v in self.foot_px],
            "foot_world": [r(v, 4) for v in self.foot_world],
            "speed_mps": r(self.speed_mps, 4),
            "heading_deg": r(self.heading_deg, 2),
            "distance_m": r(self.distance_m, 4),
            "keypoints": {k: [r(x, 2), r(y, 2), bool(vis)] for k, (x, y, vis) in self.keypoints.items()},
            "coco17": [[r(x, 2), r(y, 2), bool(vis)] for x, y, vis in self.coco17],
            "joint_angles": {k: r(v, 3) for k, v in self.joint_angles.items()},
            "cadence_spm": r(self.cadence_spm, 3),
            "stride_length_m": r(self.stride_length_m, 4),
            "left_contact": self.left_contact,
            "right_contact": self.right_contact,
            "gait": self.gait,
            "phase": r(self.phase, 4),
            "height_m": r(self.height_m, 3),
            "camera_distance_m": r(self.camera_distance_m, 3),
        }


@dataclass(slots=True)
class FrameTruth:
    """Ground truth of one frame: people sorted far to near (drawing order)."""

    frame_id: int
    time_s: float
    width: int
    height: int
    people: list[PersonTruth] = field(default_factory=list)
    t_capture_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"frame_id": self.frame_id, "time_s": round(self.time_s, 6), "width": self.width,
                "height": self.height, "t_capture_ms": self.t_capture_ms,
                "people": [p.to_dict() for p in self.people]}


def frame_truth(frame_id: int, time_s: float, posed: list[Posed], camera: Camera,
                grid: int = 16) -> FrameTruth:
    """Ground truth for people already sorted far to near; people wholly outside the picture are left out."""
    w, h = camera.width, camera.height
    out = FrameTruth(frame_id=frame_id, time_s=time_s, width=w, height=h)
    for i, p in enumerate(posed):
        x1, y1, x2, y2 = p.bbox_full
        cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
        if cx2 <= cx1 or cy2 <= cy1:
            continue
        nearer = [q for q in posed[i + 1:] if _overlap(q.bbox_full, p.bbox_full)]
        inside = x1 >= 0 and y1 >= 0 and x2 <= w and y2 <= h
        vis_frac = 1.0 if inside and not nearer else _visible_fraction(p, nearer, w, h, grid)
        kp_vis = _keypoint_visibility(p, nearer, w, h)
        if p.photo:
            kp_vis &= ~_PHOTO_HIDDEN
        kps = {name: (float(p.uv[j, 0]), float(p.uv[j, 1]), bool(kp_vis[j])) for j, name in enumerate(BLAZEPOSE33)}
        angles = joint_angles({name: (v[0], v[1]) for name, v in kps.items()})
        foot_px = camera.ground_to_image(p.root)
        cam_dist = float(camera.distance_to(p.root))
        out.people.append(PersonTruth(
            person_id=p.walker.person_id, bbox=(cx1, cy1, cx2, cy2), bbox_full=p.bbox_full,
            visible_fraction=vis_frac, foot_px=(float(foot_px[0]), float(foot_px[1])),
            foot_world=(float(p.root[0]), float(p.root[1])), speed_mps=p.speed_mps,
            heading_deg=_heading_deg(p.heading), distance_m=p.distance_m, keypoints=kps,
            coco17=[kps[BLAZEPOSE33[j]] for j in COCO_FROM_BLAZEPOSE], joint_angles=angles,
            cadence_spm=p.cadence_spm, stride_length_m=p.stride_length_m, left_contact=p.left_contact,
            right_contact=p.right_contact, gait=p.walker.gait, phase=p.phase, height_m=p.walker.height_m,
            camera_distance_m=cam_dist))
    return out


def _visible_fraction(p: Posed, nearer: list[Posed], w: int, h: int, grid: int) -> float:
    """Share of silhouette samples (a grid over the full box, kept where the person's parts cover it) that are
    inside the picture and not covered by a nearer person."""
    x1, y1, x2, y2 = p.bbox_full
    gx = np.linspace(x1, x2, grid)
    gy = np.linspace(y1, y2, grid * 2)
    pts = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
    own = np.zeros(len(pts), dtype=bool)
    for part in p.parts:
        own |= part.covers(pts)
    sil = pts[own]
    if not len(sil):
        return 0.0
    seen = (sil[:, 0] >= 0) & (sil[:, 0] < w) & (sil[:, 1] >= 0) & (sil[:, 1] < h)
    for q in nearer:
        for part in q.parts:
            seen &= ~part.covers(sil)
    return float(seen.mean())


def _keypoint_visibility(p: Posed, nearer: list[Posed], w: int, h: int) -> np.ndarray:
    uv = p.uv
    vis = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    for q in nearer:
        for part in q.parts:
            vis &= ~part.covers(uv)
    # Self-occlusion: a part nearer than the keypoint (and not of its own limb) hides it.
    for part in p.parts:
        cand = vis & (part.depth < p.depth - 0.03) & ~_GROUP_MEMBERS[part.group]
        if cand.any():
            vis[cand] &= ~part.covers(uv[cand])
    return vis


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _heading_deg(rad: float) -> float:
    deg = math.degrees(math.atan2(math.sin(rad), math.cos(rad)))
    return 180.0 if deg == -180.0 else deg
