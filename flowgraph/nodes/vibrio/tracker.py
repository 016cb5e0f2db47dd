"""ByteTrack-style multi-object tracker: Kalman filter (filterpy) + IoU + Hungarian matching (scipy).

One :class:`ByteTracker` per stream. Each frame (see :meth:`ByteTracker.update`):

1. every track's Kalman filter predicts its box (state ``cx, cy, aspect, height`` and their velocities; the time
   step follows the frames' timestamps, so frames dropped by a ``latest`` edge do not confuse the motion model);
2. a confident detection that covers two or more visible tracks, each clearly smaller than it (a blob detector
   merging people who overlap), is used up: those tracks coast on their prediction instead of one of them taking
   the merged box and the wrong person when the group splits;
3. confident detections are matched to confirmed and lost tracks by IoU (Hungarian assignment), pairs the Kalman
   prediction finds implausible (Mahalanobis gate on centre and height) excluded;
4. the low-score detections ByteTrack is named for get a second chance against tracks still unmatched, which
   keeps partly occluded people tracked while their score sags;
5. tracks that are still lost are tried against the remaining confident detections by centre distance relative to
   their height — IoU with a predicted box is often zero after a second behind an obstacle — and against the
   low-score ones by IoU (someone stepping out from behind something is detected half-heartedly at first);
6. tentative tracks (not yet ``min_hits`` detections) match what is left, or die; unmatched confident detections
   start tentative tracks; lost tracks older than ``max_lost_s`` are dropped.

Public track ids are handed out only on confirmation, so noise that never becomes a track consumes no id.
Supervision's ByteTrack was the first choice, but supervision 0.31 removed it and its successor package
(``trackers``) requires ``opencv-python``, which clashes with the headless build installed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from filterpy.kalman import KalmanFilter
from scipy.optimize import linear_sum_assignment

#: Time unit of the motion model: one frame at 30 fps (noise levels follow ByteTrack's per-frame tuning).
REFERENCE_DT = 1 / 30
_POS_STD, _VEL_STD = 1 / 20, 1 / 160
#: A merged group's box is at least this much larger (area) than each member's.
GROUP_GROWTH = 1.3
#: Cost of a forbidden pair (finite: scipy's assignment rejects matrices with no finite solution).
_FAR = 1e6


@dataclass
class TrackerConfig:
    """ByteTrack thresholds (defaults are ByteTrack's, thresholds on 0..1 detector scores)."""

    high_threshold: float = 0.5
    low_threshold: float = 0.1
    new_track_threshold: float = 0.6
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    tentative_match_iou: float = 0.3
    #: Lost tracks are matched by centre distance up to this many box heights.
    recover_distance: float = 0.75
    #: Tentative tracks the IoU step left unmatched are matched by centre distance up to ``tentative_distance`` +
    #: ``tentative_speed`` × seconds since last seen (box heights; 1.5 heights/s ≈ 2.6 m/s): a slow detector behind a
    #: ``latest`` edge sees a walking person move half a height between analysed frames, where boxes no longer
    #: overlap and new people were never confirmed. 0 disables.
    tentative_distance: float = 0.3
    tentative_speed: float = 1.5
    min_hits: int = 3
    max_lost_s: float = 2.0
    #: Mahalanobis gate on the predicted centre and height (χ², 3 degrees of freedom: 7.81 = 95 %); 0 disables.
    gate_chi2: float = 7.8147
    #: A detection covering at least this fraction of two or more tracks' boxes is a merged group (0 = off).
    group_cover: float = 0.6
    #: Also try low-score detections against lost tracks (a person stepping out from behind something).
    low_recover: bool = True


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box in ``a`` (N, 4+) with every box in ``b`` (M, 4+)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:4] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:4] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def assign(cost: np.ndarray, max_cost: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Hungarian assignment keeping pairs with ``cost <= max_cost``: (pairs, unmatched rows, unmatched cols)."""
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return [], list(range(rows)), list(range(cols))
    r, c = linear_sum_assignment(cost)
    pairs = [(int(i), int(j)) for i, j in zip(r, c, strict=True) if cost[i, j] <= max_cost]
    matched_r = {i for i, _ in pairs}
    matched_c = {j for _, j in pairs}
    return pairs, [i for i in range(rows) if i not in matched_r], [j for j in range(cols) if j not in matched_c]


def _xyah(box: np.ndarray) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, w / max(h, 1e-6), h], dtype=np.float64)


@dataclass(eq=False)
class Tracklet:
    """One tracked person: its Kalman filter and bookkeeping."""

    kf: KalmanFilter
    score: float
    born: float
    last_seen: float
    track_id: int = 0
    hits: int = 1
    age: int = 1
    missed: int = 0
    #: ``tentative`` → ``confirmed`` (after ``min_hits``); ``lost`` while unmatched; removed after ``max_lost_s``.
    state: str = "tentative"
    last_box: np.ndarray = field(default_factory=lambda: np.zeros(4))

    @classmethod
    def start(cls, detection: np.ndarray, now: float) -> Tracklet:
        kf = KalmanFilter(dim_x=8, dim_z=4)
        kf.H = np.eye(4, 8)
        kf.x = np.r_[_xyah(detection), np.zeros(4)].reshape(8, 1)
        h = kf.x[3, 0]
        kf.P = np.diag(np.square([2 * _POS_STD * h, 2 * _POS_STD * h, 1e-2, 2 * _POS_STD * h,
                                  10 * _VEL_STD * h, 10 * _VEL_STD * h, 1e-5, 10 * _VEL_STD * h]))
        return cls(kf=kf, score=float(detection[4]), born=now, last_seen=now, last_box=detection[:4].copy())

    def predict(self, dt: float) -> None:
        """Advance the motion model by ``dt`` reference frames."""
        kf = self.kf
        if self.state == "lost":
            kf.x[7, 0] = 0.0  # a hidden person keeps moving but not growing (ByteTrack does the same)
        h = max(kf.x[3, 0], 1.0)
        kf.F = np.eye(8)
        kf.F[:4, 4:] = np.eye(4) * dt
        pos, vel = _POS_STD * h, _VEL_STD * h
        kf.Q = np.diag(np.square([pos, pos, 1e-2, pos, vel, vel, 1e-5, vel])) * max(dt, 1e-3)
        kf.predict()

    def update(self, detection: np.ndarray, now: float) -> None:
        self.kf.R = self._measurement_noise()
        self.kf.update(_xyah(detection).reshape(4, 1))
        self.score = float(detection[4])
        self.last_box = detection[:4].copy()
        self.last_seen = now
        self.hits += 1
        self.missed = 0

    def _measurement_noise(self) -> np.ndarray:
        h = max(self.kf.x[3, 0], 1.0)
        return np.diag(np.square([_POS_STD * h, _POS_STD * h, 1e-1, _POS_STD * h]))

    def mahalanobis(self, detections: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each detection (M, 4+) from the predicted measurement."""
        if len(detections) == 0:
            return np.zeros(0)
        kf = self.kf
        # Centre and height only: a runner's box aspect swings with every stride, so it would gate real matches.
        keep = [0, 1, 3]
        innovation_cov = (kf.H @ kf.P @ kf.H.T + self._measurement_noise())[np.ix_(keep, keep)]
        z = np.array([_xyah(d) for d in detections])[:, keep]
        diff = z - (kf.H @ kf.x)[keep, 0]
        return np.einsum("ij,ij->i", diff @ np.linalg.inv(innovation_cov), diff)

    @property
    def box(self) -> np.ndarray:
        """The filtered box, xyxy."""
        cx, cy, a, h = self.kf.x[:4, 0]
        w = a * h
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


@dataclass
class TrackOutput:
    """A confirmed track that was matched in the current frame."""

    track_id: int
    box: np.ndarray
    score: float
    age: int


class ByteTracker:
    """Tracks people across the frames of one stream."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.tracks: list[Tracklet] = []
        self.next_id = 1
        self.last_time: float | None = None
        self.frames = 0

    def update(self, detections: np.ndarray, now: float) -> list[TrackOutput]:
        """Advance to time ``now`` (seconds) with this frame's ``(N, 5)`` detections; return the visible tracks."""
        c = self.config
        dets = np.asarray(detections, dtype=np.float64).reshape(-1, 5)
        dt = 1.0 if self.last_time is None else max((now - self.last_time) / REFERENCE_DT, 1e-3)
        self.last_time = now
        self.frames += 1
        for track in self.tracks:
            track.predict(dt)
            track.age += 1

        high = dets[dets[:, 4] >= c.high_threshold]
        low = dets[(dets[:, 4] >= c.low_threshold) & (dets[:, 4] < c.high_threshold)]
        pool = [t for t in self.tracks if t.state in ("confirmed", "lost")]
        tentative = [t for t in self.tracks if t.state == "tentative"]
        matched: set[int] = set()

        # 2. one box around several tracked people (a blob detector merging them): they coast inside it
        if c.group_cover > 0:
            high, grouped = self._groups(pool, high, now)
            matched |= grouped
            pool = [t for t in pool if id(t) not in grouped]

        # 3. confident detections ↔ confirmed and lost tracks, by IoU
        boxes = np.array([t.box for t in pool]).reshape(-1, 4)
        pairs, free_tracks, free_high = assign(self._gated(pool, high, 1 - iou_matrix(boxes, high)), 1 - c.match_iou)
        for ti, di in pairs:
            self._matched(pool[ti], high[di], now)
            matched.add(id(pool[ti]))

        # 4. low-score detections ↔ tracks that were visible last frame
        recent = [pool[i] for i in free_tracks if pool[i].missed == 0]
        boxes = np.array([t.box for t in recent]).reshape(-1, 4)
        pairs, _, _ = assign(1 - iou_matrix(boxes, low), 1 - c.low_match_iou)
        for ti, di in pairs:
            self._matched(recent[ti], low[di], now)
            matched.add(id(recent[ti]))

        # 5. lost tracks ↔ remaining detections, by centre distance relative to the track's height
        lost = [t for t in pool if id(t) not in matched and t.missed > 0]
        rest = high[free_high]
        pairs, _, free_rest = assign(self._gated(lost, rest, self._centre_cost(lost, rest)), c.recover_distance)
        for ti, di in pairs:
            self._matched(lost[ti], rest[di], now)
            matched.add(id(lost[ti]))
        rest = rest[free_rest]
        if c.low_recover:
            lost = [t for t in lost if id(t) not in matched]
            boxes = np.array([t.box for t in lost]).reshape(-1, 4)
            pairs, _, _ = assign(self._gated(lost, low, 1 - iou_matrix(boxes, low)), 1 - c.low_match_iou)
            for ti, di in pairs:
                self._matched(lost[ti], low[di], now)
                matched.add(id(lost[ti]))

        # 6. tentative tracks ↔ what is left; then births
        boxes = np.array([t.box for t in tentative]).reshape(-1, 4)
        pairs, _, free_rest = assign(1 - iou_matrix(boxes, rest), 1 - c.tentative_match_iou)
        for ti, di in pairs:
            self._matched(tentative[ti], rest[di], now)
            matched.add(id(tentative[ti]))
        rest = rest[free_rest]
        if c.tentative_speed > 0 or c.tentative_distance > 0:
            waiting = [t for t in tentative if id(t) not in matched]
            reach = np.array([c.tentative_distance + c.tentative_speed * (now - t.last_seen) for t in waiting])
            cost = self._centre_cost(waiting, rest) / np.maximum(reach, 1e-6)[:, None] if waiting else np.zeros((0, 0))
            pairs, _, free_rest = assign(cost.reshape(len(waiting), len(rest)), 1.0)
            for ti, di in pairs:
                self._matched(waiting[ti], rest[di], now)
                matched.add(id(waiting[ti]))
        else:
            free_rest = list(range(len(rest)))
        for det in rest[free_rest]:
            if det[4] >= c.new_track_threshold:
                track = Tracklet.start(det, now)
                self.tracks.append(track)
                matched.add(id(track))
                if c.min_hits <= 1 or self.frames == 1:
                    self._confirm(track)

        # 7. the unmatched miss a frame; tentative ones die, confirmed ones are lost until max_lost_s
        kept: list[Tracklet] = []
        for track in self.tracks:
            if id(track) not in matched:
                track.missed += 1
                if track.state == "tentative" or now - track.last_seen > c.max_lost_s:
                    continue
                track.state = "lost"
            kept.append(track)
        self.tracks = kept
        return [TrackOutput(t.track_id, t.box, t.score, t.age) for t in self.tracks
                if t.state == "confirmed" and t.missed == 0]

    def _matched(self, track: Tracklet, detection: np.ndarray, now: float) -> None:
        track.update(detection, now)
        if track.state == "lost":
            track.state = "confirmed"
        elif track.state == "tentative" and track.hits >= self.config.min_hits:
            self._confirm(track)

    def _confirm(self, track: Tracklet) -> None:
        track.state = "confirmed"
        track.track_id = self.next_id
        self.next_id += 1

    def _groups(self, pool: list[Tracklet], high: np.ndarray, now: float) -> tuple[np.ndarray, set[int]]:
        """Detections that cover two or more visible tracks, each clearly smaller than the detection.

        Updating one of those tracks with the merged box would corrupt its size and velocity and hand its id to
        whichever person leaves the group first; instead every covered track keeps its prediction (reported as
        seen) and the merged detection is used up. When the group splits, IoU matching picks the tracks up again.
        """
        visible = [t for t in pool if t.state == "confirmed" and t.missed == 0]
        if len(visible) < 2 or len(high) == 0:
            return high, set()
        boxes = np.array([t.box for t in visible])
        tl = np.maximum(boxes[:, None, :2], high[None, :, :2])
        br = np.minimum(boxes[:, None, 2:4], high[None, :, 2:4])
        inter = np.prod(np.clip(br - tl, 0, None), axis=2)
        track_area = np.prod(boxes[:, 2:4] - boxes[:, :2], axis=1)
        det_area = np.prod(high[:, 2:4] - high[:, :2], axis=1)
        covered = (inter / np.maximum(track_area[:, None], 1e-9) >= self.config.group_cover) & (
            det_area[None, :] >= GROUP_GROWTH * track_area[:, None])
        groups = np.flatnonzero(covered.sum(axis=0) >= 2)
        grouped: set[int] = set()
        for det in groups:
            for ti in np.flatnonzero(covered[:, det]):
                track = visible[ti]
                if id(track) not in grouped:
                    track.last_seen = now
                    grouped.add(id(track))
        return np.delete(high, groups, axis=0), grouped

    def _gated(self, tracks: list[Tracklet], dets: np.ndarray, cost: np.ndarray) -> np.ndarray:
        """Forbid pairs the Kalman prediction finds implausible (a neighbour's box overlapping a track's)."""
        if self.config.gate_chi2 <= 0 or cost.size == 0:
            return cost
        distance = np.array([t.mahalanobis(dets) for t in tracks])
        return np.where(distance > self.config.gate_chi2, _FAR, cost)

    @staticmethod
    def _centre_cost(tracks: list[Tracklet], dets: np.ndarray) -> np.ndarray:
        if not tracks or len(dets) == 0:
            return np.zeros((len(tracks), len(dets)))
        boxes = np.array([t.box for t in tracks])
        heights = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
        centres = (boxes[:, :2] + boxes[:, 2:4]) / 2
        det_centres = (dets[:, :2] + dets[:, 2:4]) / 2
        distance = np.linalg.norm(centres[:, None] - det_centres[None], axis=2) / heights[:, None]
        det_heights = dets[:, 3] - dets[:, 1]
        size_ratio = np.maximum(heights[:, None], det_heights[None]) / np.maximum(
            np.minimum(heights[:, None], det_heights[None]), 1.0)
        return np.where(size_ratio < 1.5, distance, _FAR)
