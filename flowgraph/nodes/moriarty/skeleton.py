"""Keypoint skeletons (BlazePose-33, COCO-17): names, drawing edges, and access to joints by name.

Inside moriarty a person's keypoints are a float array ``(K, 3)`` of ``x, y, score`` in frame pixels, with
``NaN`` in x and y for a joint that was gated out for low confidence. Biomechanics code asks for joints by
name (``left_knee``), so it works the same on either skeleton.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BLAZEPOSE33_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)

COCO17_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)

_LIMBS: tuple[tuple[str, str], ...] = (
    ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
)

_COCO_HEAD: tuple[tuple[str, str], ...] = (
    ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"),
)

_BLAZE_EXTRA: tuple[tuple[str, str], ...] = (
    ("nose", "left_eye_inner"), ("left_eye_inner", "left_eye"), ("left_eye", "left_eye_outer"),
    ("left_eye_outer", "left_ear"), ("nose", "right_eye_inner"), ("right_eye_inner", "right_eye"),
    ("right_eye", "right_eye_outer"), ("right_eye_outer", "right_ear"), ("mouth_left", "mouth_right"),
    ("left_wrist", "left_pinky"), ("left_wrist", "left_index"), ("left_pinky", "left_index"),
    ("left_wrist", "left_thumb"), ("right_wrist", "right_pinky"), ("right_wrist", "right_index"),
    ("right_pinky", "right_index"), ("right_wrist", "right_thumb"),
    ("left_ankle", "left_heel"), ("left_heel", "left_foot_index"), ("left_ankle", "left_foot_index"),
    ("right_ankle", "right_heel"), ("right_heel", "right_foot_index"), ("right_ankle", "right_foot_index"),
)


@dataclass(frozen=True)
class Skeleton:
    """A keypoint layout: ordered joint names and the pairs an overlay draws as bones."""

    name: str
    names: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {n: i for i, n in enumerate(self.names)})

    def __len__(self) -> int:
        return len(self.names)

    def edge_indices(self) -> list[tuple[int, int]]:
        return [(self.index[a], self.index[b]) for a, b in self.edges]

    def point(self, keypoints: np.ndarray, name: str) -> np.ndarray | None:
        """``(x, y)`` of a joint, or ``None`` when the skeleton lacks it or it was gated out."""
        i = self.index.get(name)
        if i is None:
            return None
        xy = keypoints[i, :2]
        return None if bool(np.isnan(xy).any()) else xy.astype(np.float64)

    def points(self, keypoints: np.ndarray, name: str) -> np.ndarray:
        """``(T, 2)`` track of one joint through a ``(T, K, 3)`` history (NaN where missing or absent)."""
        i = self.index.get(name)
        if i is None:
            return np.full((keypoints.shape[0], 2), np.nan)
        return np.asarray(keypoints[:, i, :2], dtype=np.float64)


BLAZEPOSE33 = Skeleton("blazepose33", BLAZEPOSE33_NAMES, _LIMBS + _BLAZE_EXTRA)
COCO17 = Skeleton("coco17", COCO17_NAMES, _LIMBS + _COCO_HEAD)
SKELETONS: dict[str, Skeleton] = {s.name: s for s in (BLAZEPOSE33, COCO17)}

#: BlazePose index of every COCO-17 joint (the COCO set is a subset of BlazePose's).
BLAZEPOSE_TO_COCO17: tuple[int, ...] = tuple(BLAZEPOSE33.index[n] for n in COCO17_NAMES)


def to_coco17(keypoints: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """The COCO-17 subset of a pose (identity for COCO-17 input)."""
    if skeleton.name == "coco17":
        return keypoints
    return keypoints[list(BLAZEPOSE_TO_COCO17)]


def gate(keypoints: np.ndarray, min_score: float, frame: tuple[int, int] | None = None) -> np.ndarray:
    """A copy with x, y set to NaN wherever the score is below ``min_score`` (marked, never guessed).

    With ``frame`` ``(width, height)``, joints outside the picture are gated too: models extrapolate limbs past
    the edge (a hip below a portrait's bottom edge) with fair confidence, but nothing there was seen.
    """
    out = np.array(keypoints, dtype=np.float64, copy=True)
    low = ~(out[:, 2] >= min_score)  # NaN scores count as low
    if frame is not None:
        width, height = frame
        low |= ~((out[:, 0] >= 0) & (out[:, 0] <= width) & (out[:, 1] >= 0) & (out[:, 1] <= height))
    out[low, :2] = np.nan
    return out


def as_wire(keypoints: np.ndarray) -> list[tuple[float, float, float] | None]:
    """The ``Pose.keypoints`` form: ``(x, y, score)`` tuples, ``None`` for gated joints."""
    return [None if np.isnan(row[0]) or np.isnan(row[1]) else (float(row[0]), float(row[1]), float(row[2]))
            for row in keypoints]
