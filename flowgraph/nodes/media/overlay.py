"""Burned-in overlays for viewers that cannot draw: track boxes with ids, skeletons, speed labels.

Keeps the newest analytics of one stream (``detection``, ``pose``, ``speed`` messages of the analytics contract)
and draws them on a picture. Coordinates are in the analysed frame's pixels (payload ``width``/``height``) and
are scaled to the picture being encoded. Anything older than ``max_age_s`` is not drawn, so overlays vanish when
the analytics branch stalls instead of freezing on screen.
"""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np

from flowgraph.messages import Analytics

BLAZEPOSE_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13), (13, 15),
    (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20), (11, 23),
    (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28), (27, 29), (28, 30), (29, 31), (30, 32), (27, 31),
    (28, 32),
)
COCO17_EDGES = (
    (0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12), (11, 13),
    (13, 15), (12, 14), (14, 16),
)
MIN_SCORE = 0.3


def _colour(track_id: Any) -> tuple[int, int, int]:
    """A stable, saturated RGB colour per track id."""
    if track_id is None:
        return (255, 255, 255)
    hue = (int(track_id) * 47) % 180
    hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


class OverlayState:
    """Newest analytics of one stream, and how to draw them."""

    def __init__(self, max_age_s: float = 0.5) -> None:
        self.max_age_s = max_age_s
        self._latest: dict[str, tuple[float, dict[str, Any]]] = {}
        self._speeds: dict[int, tuple[float, float]] = {}

    def update(self, msg: Analytics) -> None:
        now = time.monotonic()
        if msg.type == "speed":
            track_id, kmh = msg.payload.get("track_id"), msg.payload.get("speed_kmh")
            if isinstance(track_id, int) and isinstance(kmh, int | float):
                self._speeds[track_id] = (now, float(kmh))
        elif msg.type in ("detection", "pose"):
            self._latest[msg.type] = (now, msg.payload)

    def _fresh(self, kind: str, now: float) -> dict[str, Any] | None:
        entry = self._latest.get(kind)
        if entry is None or now - entry[0] > self.max_age_s:
            return None
        return entry[1]

    def has_content(self) -> bool:
        now = time.monotonic()
        return any(self._fresh(kind, now) is not None for kind in ("detection", "pose"))

    def draw(self, image: np.ndarray) -> np.ndarray:
        """Draw onto ``image`` (RGB or BGR uint8, writable) in place; returns it."""
        now = time.monotonic()
        height, width = image.shape[:2]
        thickness = max(1, round(height / 360))
        detection = self._fresh("detection", now)
        if detection is not None:
            sx, sy = _scale(detection, width, height)
            for track in detection.get("tracks", []):
                self._draw_track(image, track, sx, sy, thickness, now)
        pose = self._fresh("pose", now)
        if pose is not None:
            sx, sy = _scale(pose, width, height)
            for person in pose.get("poses", []):
                _draw_pose(image, person, sx, sy, thickness)
        return image

    def _draw_track(self, image: np.ndarray, track: dict[str, Any], sx: float, sy: float, thickness: int,
                    now: float) -> None:
        bbox = track.get("bbox")
        if not bbox or len(bbox) != 4:
            return
        x1, y1, x2, y2 = (round(v * s) for v, s in zip(bbox, (sx, sy, sx, sy), strict=True))
        colour = _colour(track.get("track_id"))
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
        label = f"#{track.get('track_id')}"
        speed = track.get("speed_kmh")
        track_id = track.get("track_id")
        if isinstance(track_id, int) and track_id in self._speeds and now - self._speeds[track_id][0] <= 1.0:
            speed = self._speeds[track_id][1]
        if isinstance(speed, int | float):
            label += f" {speed:.1f} km/h"
        scale = 0.4 * thickness + 0.1
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(0, y1 - th - 4 * thickness)
        cv2.rectangle(image, (x1, top), (x1 + tw + 4, top + th + 4 * thickness), colour, -1)
        cv2.putText(image, label, (x1 + 2, top + th + thickness), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    thickness, cv2.LINE_AA)


def _scale(payload: dict[str, Any], width: int, height: int) -> tuple[float, float]:
    pw, ph = payload.get("width"), payload.get("height")
    sx = width / pw if isinstance(pw, int | float) and pw > 0 else 1.0
    sy = height / ph if isinstance(ph, int | float) and ph > 0 else 1.0
    return sx, sy


def _draw_pose(image: np.ndarray, person: dict[str, Any], sx: float, sy: float, thickness: int) -> None:
    keypoints = person.get("keypoints") or []
    edges = COCO17_EDGES if person.get("skeleton") == "coco17" or len(keypoints) == 17 else BLAZEPOSE_EDGES
    points: list[tuple[int, int] | None] = []
    for kp in keypoints:
        if kp is None or len(kp) < 2 or kp[0] is None or kp[1] is None or (len(kp) > 2 and (kp[2] or 0) < MIN_SCORE):
            points.append(None)
        else:
            points.append((round(kp[0] * sx), round(kp[1] * sy)))
    colour = _colour(person.get("track_id"))
    for a, b in edges:
        if a < len(points) and b < len(points):
            pa, pb = points[a], points[b]
            if pa is not None and pb is not None:
                cv2.line(image, pa, pb, colour, thickness, cv2.LINE_AA)
    for point in points:
        if point is not None:
            cv2.circle(image, point, thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
