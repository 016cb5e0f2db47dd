"""Synthetic detection streams with known identities, for tracker tests (no pixels: boxes only).

People walk straight lines at constant speed and bounce off the frame edges; their box height grows with the
image row (a crude perspective), so paths cross and people overlap. A pillar hides whoever walks behind it,
partial occlusion lowers the detector's score (ByteTrack's low-score case), and the detector misses a fraction of
people, jitters boxes and adds false positives — all from one seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import motmetrics as mm
import numpy as np


@dataclass
class FrameTruth:
    time: float
    ids: list[int]
    boxes: np.ndarray  # (N, 4) true boxes of people at least half visible
    detections: np.ndarray  # (M, 5) what the "detector" reports


@dataclass
class BoxWorld:
    width: int = 1280
    height: int = 720
    fps: float = 30.0
    people: int = 6
    seed: int = 0
    miss_rate: float = 0.05
    jitter: float = 0.02  # box noise, as a fraction of the box height
    false_positives: float = 0.1  # per frame
    pillar: tuple[float, float] | None = (600.0, 660.0)
    positions: np.ndarray = field(init=False)
    velocities: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.positions = np.c_[self.rng.uniform(100, self.width - 100, self.people),
                               self.rng.uniform(self.height * 0.45, self.height * 0.95, self.people)]
        angle = self.rng.uniform(0, 2 * np.pi, self.people)
        speed = self.rng.uniform(60, 180, self.people)  # px/s
        self.velocities = np.c_[np.cos(angle), 0.3 * np.sin(angle)] * speed[:, None]

    def box_of(self, foot: np.ndarray) -> np.ndarray:
        h = 40 + 0.25 * foot[1]
        w = 0.4 * h
        return np.array([foot[0] - w / 2, foot[1] - h, foot[0] + w / 2, foot[1]])

    def visible(self, box: np.ndarray) -> float:
        if self.pillar is None:
            return 1.0
        left, right = self.pillar
        hidden = max(0.0, min(box[2], right) - max(box[0], left))
        return 1.0 - hidden / (box[2] - box[0])

    def frames(self, count: int, skip: float = 0.0) -> Iterator[FrameTruth]:
        """``count`` frames; with ``skip`` > 0 that fraction of frames is dropped (as a ``latest`` edge would)."""
        dt = 1 / self.fps
        for index in range(count):
            self.positions += self.velocities * dt
            for axis, (low, high) in enumerate([(40, self.width - 40), (self.height * 0.4, self.height - 2)]):
                out = (self.positions[:, axis] < low) | (self.positions[:, axis] > high)
                self.velocities[out, axis] *= -1
                self.positions[:, axis] = np.clip(self.positions[:, axis], low, high)
            if skip and self.rng.uniform() < skip:
                continue
            ids, boxes, dets = [], [], []
            for person in range(self.people):
                box = self.box_of(self.positions[person])
                seen = self.visible(box)
                if seen >= 0.5:
                    ids.append(person)
                    boxes.append(box)
                if seen < 0.35 or self.rng.uniform() < self.miss_rate:
                    continue
                score = self.rng.uniform(0.7, 0.95) if seen > 0.8 else self.rng.uniform(0.2, 0.45)
                noisy = box + self.rng.normal(0, self.jitter * (box[3] - box[1]), 4)
                dets.append([*noisy, score])
            for _ in range(self.rng.poisson(self.false_positives)):
                x, y = self.rng.uniform(0, self.width - 60), self.rng.uniform(0, self.height - 150)
                dets.append([x, y, x + 50, y + 130, self.rng.uniform(0.3, 0.75)])
            yield FrameTruth(index * dt, ids, np.array(boxes).reshape(-1, 4), np.array(dets).reshape(-1, 5))


def iou_distance(truth: np.ndarray, hypotheses: np.ndarray, min_iou: float = 0.5) -> np.ndarray:
    """motmetrics distance matrix: 1 − IoU, NaN below ``min_iou`` (its own helper needs numpy < 2)."""
    if len(truth) == 0 or len(hypotheses) == 0:
        return np.empty((len(truth), len(hypotheses)))
    tl = np.maximum(truth[:, None, :2], hypotheses[None, :, :2])
    br = np.minimum(truth[:, None, 2:4], hypotheses[None, :, 2:4])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_t = np.prod(truth[:, 2:4] - truth[:, :2], axis=1)
    area_h = np.prod(hypotheses[:, 2:4] - hypotheses[:, :2], axis=1)
    iou = inter / (area_t[:, None] + area_h[None] - inter)
    return np.where(iou >= min_iou, 1 - iou, np.nan)


def summary(accumulator: mm.MOTAccumulator) -> dict[str, float]:
    """MOTA, IDF1, id switches and ground-truth track-frames of an accumulated sequence."""
    metrics = mm.metrics.create().compute(
        accumulator, metrics=["mota", "idf1", "num_switches", "num_objects", "num_false_positives",
                              "num_misses", "precision", "recall"], name="run")
    return {k: float(v) for k, v in metrics.iloc[0].items()}
