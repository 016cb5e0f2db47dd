"""Burned-in overlays for viewers that cannot draw: track boxes with ids, skeletons, speed labels.

Each picture is drawn with the analytics *of that picture*: ``detection``, ``pose`` and ``speed`` messages of the
analytics contract are kept per stream in pts order, and a picture at source time ``t`` gets, per type, the
message whose pts is ``t``. Analytics on a ``latest`` edge skip frames (a slow detector analyses one picture in
several): a picture between two analysed frames no more than ``INTERPOLATE_MAX_S`` apart gets each track's box and
joints interpolated between them by track id (the encoder's hold has usually brought the later one in by then);
otherwise the newest message before ``t`` no more than ``tolerance_s`` older is drawn. Messages or pictures
without a pts fall back to the newest message received no more than ``tolerance_s`` ago (wall clock), so
overlays vanish when the analytics branch stalls instead of freezing.

:meth:`OverlayState.ready` tells the encoder whether a held picture's analytics have caught up with its pts
(every type seen on the stream has reached ``t``) or its deadline has passed — a file run that is not realtime then
draws every box on exactly its own frame. Coordinates are in the analysed frame's pixels (payload
``width``/``height``) and are scaled to the picture being encoded.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
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


DRAWN_TYPES = ("detection", "pose")
#: Messages kept per stream and type: several seconds of analytics at 30 fps, and more than any queue holds.
KEEP = 512
#: Streams remembered at once (least recently updated is forgotten).
MAX_STREAMS = 64
#: A picture's pts and an analytics message's pts are "the same frame" within this (float round-trips).
SAME_FRAME_S = 1e-4
#: Two analysed frames at most this far apart (pts seconds) are interpolated between for the pictures in between.
INTERPOLATE_MAX_S = 2.0


@dataclass
class _Entry:
    t: float | None  # the analysed frame's pts in seconds (None: the message had no pts)
    received: float  # time.monotonic() on arrival
    payload: dict[str, Any]


def _time(entry: _Entry) -> float:
    return entry.t if entry.t is not None else float("-inf")


@dataclass
class _Stream:
    """One stream's analytics, in pts order per type."""

    timed: dict[str, list[_Entry]] = field(default_factory=lambda: {k: [] for k in DRAWN_TYPES})
    latest: dict[str, _Entry] = field(default_factory=dict)  # newest arrival per type (pts or not)
    newest_t: dict[str, float] = field(default_factory=dict)  # highest pts seen per type
    speeds: dict[float, dict[int, float]] = field(default_factory=dict)  # pts -> {track_id: km/h}
    untimed_speeds: dict[int, tuple[float, float]] = field(default_factory=dict)  # track_id -> (received, km/h)
    stalled: bool = False  # a hold timed out; no more holds until the next message arrives


@dataclass
class _Chosen:
    """What one picture gets drawn with."""

    detection: _Entry | None
    pose: _Entry | None
    speeds: dict[int, float]

    @property
    def empty(self) -> bool:
        return self.detection is None and self.pose is None


class OverlayState:
    """Analytics per stream in pts order, the choice of which belong to a picture, and how to draw them.

    ``update`` runs on the event loop, ``ready``/``choose``/``draw`` in the encoder's worker thread: a lock guards
    the shared state.
    """

    def __init__(self, tolerance_s: float = 0.5) -> None:
        self.tolerance_s = tolerance_s
        self._streams: dict[str, _Stream] = {}
        self._cond = threading.Condition()
        self.held = 0
        self.held_ms_total = 0.0
        self.held_ms_max = 0.0
        self.timeouts = 0
        self.exact = 0
        self.earlier = 0
        self.interpolated = 0

    # -- event loop -------------------------------------------------------------------------------------------
    def update(self, msg: Analytics) -> None:
        now = time.monotonic()
        t = msg.pts_seconds
        with self._cond:
            stream = self._streams.pop(msg.stream_id, None) or _Stream()
            self._streams[msg.stream_id] = stream  # most recently updated last
            while len(self._streams) > MAX_STREAMS:
                self._streams.pop(next(iter(self._streams)))
            stream.stalled = False
            if msg.type == "speed":
                track_id, kmh = msg.payload.get("track_id"), msg.payload.get("speed_kmh")
                if isinstance(track_id, int) and isinstance(kmh, int | float):
                    if t is None:
                        stream.untimed_speeds[track_id] = (now, float(kmh))
                    else:
                        stream.speeds.setdefault(t, {})[track_id] = float(kmh)
                        while len(stream.speeds) > KEEP:
                            stream.speeds.pop(min(stream.speeds))
            elif msg.type in DRAWN_TYPES:
                entry = _Entry(t, now, msg.payload)
                stream.latest[msg.type] = entry
                if t is not None:
                    entries = stream.timed[msg.type]
                    bisect.insort(entries, entry, key=_time)  # arrivals are nearly always in order
                    if len(entries) > KEEP:
                        del entries[: len(entries) - KEEP]
                    stream.newest_t[msg.type] = max(t, stream.newest_t.get(msg.type, t))
            self._cond.notify_all()

    # -- worker thread ----------------------------------------------------------------------------------------
    def ready(self, stream_id: str, t: float | None, arrived: float, wait_s: float) -> bool:
        """Whether a picture of ``stream_id`` at pts ``t`` (held since ``arrived``, monotonic) may be drawn now.

        Yes once its analytics have caught up — every type seen on the stream (at least ``detection``) has a
        message at or after ``t`` — or ``wait_s`` has passed since it arrived. After such a timeout the stream is
        not held again until its next message arrives, so a stalled analytics branch costs one deadline, not
        one per picture.
        """
        if t is None or wait_s <= 0:
            return True
        with self._cond:
            stream = self._streams.get(stream_id)
            if stream is not None and stream.stalled:
                return True
            if stream is not None:
                kinds = set(stream.newest_t) | {"detection"}
                if all(stream.newest_t.get(k, -1e18) >= t - SAME_FRAME_S for k in kinds):
                    return True
            if time.monotonic() - arrived < wait_s:
                return False
            self.timeouts += 1
            if stream is None:
                stream = self._streams[stream_id] = _Stream()
            stream.stalled = True
            return True

    def note_hold(self, seconds: float) -> None:
        """Account for a picture that was held ``seconds`` before it was drawn."""
        self.held += 1
        self.held_ms_total += seconds * 1000
        self.held_ms_max = max(self.held_ms_max, seconds * 1000)

    def choose(self, stream_id: str, t: float | None) -> _Chosen:
        """The analytics that belong to the picture of ``stream_id`` at pts ``t`` (seconds)."""
        now = time.monotonic()
        with self._cond:
            stream = self._streams.get(stream_id)
            if stream is None:
                return _Chosen(None, None, {})
            picked = {kind: self._pick(stream, kind, t, now) for kind in DRAWN_TYPES}
            blended = {kind: self._between(stream, kind, t) for kind in DRAWN_TYPES}
            speeds = {tid: kmh for tid, (at, kmh) in stream.untimed_speeds.items() if now - at <= 1.0}
            detection = picked["detection"]
            if detection is not None and detection.t is not None:
                speeds.update(stream.speeds.get(detection.t, {}))
            if t is not None:  # what is older than every picture still to come can go
                horizon = t - max(self.tolerance_s, INTERPOLATE_MAX_S) - 1.0  # keep what brackets later pictures
                for entries in stream.timed.values():
                    drop = bisect.bisect_left(entries, horizon, key=_time)
                    del entries[: max(0, min(drop, len(entries) - 1))]
                for old in [p for p in stream.speeds if p < horizon]:
                    del stream.speeds[old]
        for kind, entry in picked.items():
            if entry is not None and entry.t is not None and t is not None:
                if abs(entry.t - t) <= SAME_FRAME_S:
                    self.exact += 1
                elif blended[kind] is not None:
                    picked[kind] = blended[kind]
                    self.interpolated += 1
                else:
                    self.earlier += 1
        return _Chosen(picked["detection"], picked["pose"], speeds)

    def _pick(self, stream: _Stream, kind: str, t: float | None, now: float) -> _Entry | None:
        entries = stream.timed[kind]
        if t is not None and entries:
            i = bisect.bisect_right(entries, t + SAME_FRAME_S, key=_time) - 1
            if i < 0:
                return None
            if t - (entries[i].t or 0.0) <= self.tolerance_s:
                return entries[i]
            if i + 1 < len(entries) and (entries[i + 1].t or 0.0) - (entries[i].t or 0.0) <= INTERPOLATE_MAX_S:
                return entries[i]  # too old alone, but a later analysed frame brackets the picture
            return None
        latest = stream.latest.get(kind)
        if latest is None or now - latest.received > self.tolerance_s:
            return None
        if t is not None and latest.t is not None:
            return None  # timed analytics but none at or before this picture
        return latest

    def _between(self, stream: _Stream, kind: str, t: float | None) -> _Entry | None:
        """The analytics of the picture at ``t`` interpolated between the analysed frames around it (both within
        ``INTERPOLATE_MAX_S``), or None when ``t`` is not strictly between two of them."""
        entries = stream.timed[kind]
        if t is None or len(entries) < 2:
            return None
        i = bisect.bisect_right(entries, t + SAME_FRAME_S, key=_time) - 1
        if i < 0 or i + 1 >= len(entries):
            return None
        before, after = entries[i], entries[i + 1]
        t0, t1 = before.t, after.t
        if t0 is None or t1 is None or abs(t - t0) <= SAME_FRAME_S or not 0 < t1 - t0 <= INTERPOLATE_MAX_S:
            return None
        alpha = (t - t0) / (t1 - t0)
        key = "tracks" if kind == "detection" else "poses"
        payload = dict(before.payload)
        payload[key] = _blend(before.payload.get(key) or [], after.payload.get(key) or [], alpha)
        return _Entry(t, before.received, payload)

    def has_content(self, stream_id: str, t: float | None) -> bool:
        return not self.choose(stream_id, t).empty

    def draw(self, image: np.ndarray, stream_id: str = "default", t: float | None = None,
             chosen: _Chosen | None = None) -> np.ndarray:
        """Draw the analytics of the picture at pts ``t`` onto ``image`` (RGB or BGR uint8, writable)."""
        chosen = chosen if chosen is not None else self.choose(stream_id, t)
        height, width = image.shape[:2]
        thickness = max(1, round(height / 360))
        if chosen.detection is not None:
            sx, sy = _scale(chosen.detection.payload, width, height)
            for track in chosen.detection.payload.get("tracks", []):
                _draw_track(image, track, sx, sy, thickness, chosen.speeds)
        if chosen.pose is not None:
            sx, sy = _scale(chosen.pose.payload, width, height)
            for person in chosen.pose.payload.get("poses", []):
                _draw_pose(image, person, sx, sy, thickness)
        return image

    def counters(self) -> dict[str, Any]:
        return {"overlay_exact": self.exact, "overlay_earlier": self.earlier,
                "overlay_interpolated": self.interpolated, "overlay_held": self.held,
                "overlay_hold_ms_mean": round(self.held_ms_total / self.held, 2) if self.held else 0.0,
                "overlay_hold_ms_max": round(self.held_ms_max, 2), "overlay_hold_timeouts": self.timeouts}


def _blend(before: list[Any], after: list[Any], alpha: float) -> list[Any]:
    """Tracks (or poses) at ``alpha`` (0..1) of the way from ``before`` to ``after``, matched by track id: boxes and
    joints move linearly; a track seen on one side only is kept while that side is the nearer one."""
    later = {item.get("track_id"): item for item in after
             if isinstance(item, dict) and item.get("track_id") is not None}
    out: list[Any] = []
    matched: set[Any] = set()
    for item in before:
        if not isinstance(item, dict):
            continue
        other = later.get(item.get("track_id"))
        if other is None:
            if alpha < 0.5:
                out.append(item)
            continue
        matched.add(item.get("track_id"))
        mixed = dict(item)
        if _numbers(item.get("bbox"), 4) and _numbers(other.get("bbox"), 4):
            mixed["bbox"] = [a + (b - a) * alpha for a, b in zip(item["bbox"], other["bbox"], strict=True)]
        points, others = item.get("keypoints"), other.get("keypoints")
        if isinstance(points, list) and isinstance(others, list) and len(points) == len(others):
            mixed["keypoints"] = [_blend_point(p, q, alpha) for p, q in zip(points, others, strict=True)]
        out.append(mixed)
    if alpha >= 0.5:
        out.extend(item for tid, item in later.items() if tid not in matched)
    return out


def _numbers(value: Any, count: int) -> bool:
    return isinstance(value, list | tuple) and len(value) >= count and all(
        isinstance(v, int | float) for v in value[:count])


def _blend_point(p: Any, q: Any, alpha: float) -> Any:
    if not (_numbers(p, 2) and _numbers(q, 2)):
        return None  # a joint missing on either side is not guessed
    point = [p[0] + (q[0] - p[0]) * alpha, p[1] + (q[1] - p[1]) * alpha]
    if len(p) > 2 and len(q) > 2 and isinstance(p[2], int | float) and isinstance(q[2], int | float):
        point.append(min(p[2], q[2]))
    return point


def _draw_track(image: np.ndarray, track: dict[str, Any], sx: float, sy: float, thickness: int,
                speeds: dict[int, float]) -> None:
    bbox = track.get("bbox")
    if not bbox or len(bbox) != 4:
        return
    x1, y1, x2, y2 = (round(v * s) for v, s in zip(bbox, (sx, sy, sx, sy), strict=True))
    colour = _colour(track.get("track_id"))
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
    label = f"#{track.get('track_id')}"
    track_id = track.get("track_id")
    speed = speeds.get(track_id, track.get("speed_kmh")) if isinstance(track_id, int) else track.get("speed_kmh")
    if isinstance(speed, int | float):
        label += f" {speed:.1f} km/h"
    # small labels: people 50 px tall walking in groups must not vanish under each other's labels
    scale, weight = 0.3 * thickness + 0.05, max(1, thickness - 1)
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)
    top = max(0, y1 - th - 3 * thickness)
    cv2.rectangle(image, (x1, top), (x1 + tw + 4, top + th + 3 * thickness), colour, -1)
    cv2.putText(image, label, (x1 + 2, top + th + thickness), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                weight, cv2.LINE_AA)


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
