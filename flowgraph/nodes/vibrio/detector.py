"""The detector interface every backend implements, frame checks, and the backend factory.

A detector turns one picture into person boxes: an ``(N, 5)`` float32 numpy array of ``x1, y1, x2, y2, score``
in the picture's own pixels, scores in 0..1. Backends take what a :class:`~flowgraph.messages.VideoFrame`
carries — a numpy ``(H, W, 3)`` uint8 array, or a torch ``(3, H, W)`` uint8 tensor (possibly on CUDA) — and a
``key`` naming the stream, for backends that keep per-stream state (the motion backend's background model).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Pictures smaller than this on either side are rejected (no person fits; some backends would fail on them).
MIN_SIDE = 16


def empty_boxes() -> np.ndarray:
    """No detections, in the shape every backend returns."""
    return np.zeros((0, 5), dtype=np.float32)


def image_problem(image: Any) -> str | None:
    """Why ``image`` cannot be analysed, or ``None`` when it can.

    Accepts numpy ``(H, W, 3)`` uint8 and torch ``(3, H, W)`` uint8; anything else (other dtype, other layout,
    smaller than :data:`MIN_SIDE`) is a bad frame that yields an empty result rather than an exception.
    """
    if image is None:
        return "no image"
    shape = getattr(image, "shape", None)
    dtype = str(getattr(image, "dtype", ""))
    if shape is None or len(shape) != 3:
        return f"expected a 3-dimensional picture, got shape {shape}"
    if hasattr(image, "detach"):  # torch tensor, channels first
        channels, height, width = shape
        if dtype != "torch.uint8":
            return f"expected uint8 pixels, got {dtype}"
    else:
        height, width, channels = shape
        if dtype != "uint8":
            return f"expected uint8 pixels, got {dtype}"
    if channels != 3:
        return f"expected 3 colour channels, got {channels}"
    if height < MIN_SIDE or width < MIN_SIDE:
        return f"picture {width}x{height} is smaller than {MIN_SIDE}x{MIN_SIDE}"
    return None


def to_numpy_rgb(image: Any) -> np.ndarray:
    """A contiguous ``(H, W, 3)`` uint8 numpy view/copy of a checked picture (downloads CUDA tensors)."""
    if hasattr(image, "detach"):
        return np.ascontiguousarray(image.detach().permute(1, 2, 0).cpu().numpy())
    return np.ascontiguousarray(image)


def clip_boxes(boxes: np.ndarray, width: int, height: int, min_side: float = 2.0) -> np.ndarray:
    """Clip boxes to the picture and drop the ones that end up thinner than ``min_side`` pixels."""
    if len(boxes) == 0:
        return empty_boxes()
    out = boxes.astype(np.float32, copy=True)
    np.clip(out[:, 0], 0, width, out=out[:, 0])
    np.clip(out[:, 2], 0, width, out=out[:, 2])
    np.clip(out[:, 1], 0, height, out=out[:, 1])
    np.clip(out[:, 3], 0, height, out=out[:, 3])
    keep = ((out[:, 2] - out[:, 0]) >= min_side) & ((out[:, 3] - out[:, 1]) >= min_side)
    return out[keep]


@dataclass
class DetectorInfo:
    """What a backend says about itself (shown in stats and the stream registry)."""

    backend: str
    device: str
    detail: str = ""


class Detector(ABC):
    """One person-detection backend."""

    info: DetectorInfo

    @abstractmethod
    def detect(self, image: Any, key: str = "default") -> np.ndarray:
        """Person boxes ``(N, 5)`` (x1, y1, x2, y2, score) for one checked picture of stream ``key``."""

    def forget(self, key: str) -> None:
        """Drop per-stream state of ``key`` (a stream that went away). Stateless backends ignore it."""
        return None

    def close(self) -> None:
        """Release models and buffers."""
        return None


@dataclass
class DetectorConfig:
    """Everything a backend may need, filled from the node's params."""

    backend: str = "hog"
    device: str = "cpu"
    model: str = ""
    input_size: int = 640
    layout: str = "auto"
    person_class: int = 0
    score_threshold: float = 0.1
    nms_iou: float = 0.45
    detect_width: int = 640
    hog_hit_threshold: float = 0.0
    hog_stride: int = 8
    hog_scale: float = 1.05
    hog_upscale: float = 1.0
    motion_learning_rate: float = 0.02
    motion_threshold: float = 25.0
    motion_warmup: int = 10
    motion_min_area: float = 0.0005
    motion_width: int = 640
    threads: int = 0
    crops: str = "motion"
    tile_size: int = 0
    crop_factor: float = 2.0
    min_crop: float = 128.0
    max_crops: int = 16
    blazepose_min_score: float = 0.5
    blazepose_nms_iou: float = 0.3


def make_detector(config: DetectorConfig) -> Detector:
    """Build the backend ``config.backend`` (imports its heavy dependencies only now)."""
    if config.threads > 0:
        import torch

        torch.set_num_threads(config.threads)
    if config.backend == "hog":
        from .hog import HogDetector

        return HogDetector(config)
    if config.backend == "motion":
        from .motion import MotionDetector

        return MotionDetector(config)
    if config.backend == "blazepose":
        from .blazepose import BlazePoseDetector

        return BlazePoseDetector(config)
    if config.backend == "onnx":
        from .onnx import OnnxDetector

        return OnnxDetector(config)
    if config.backend == "torchscript":
        from .torchscript import TorchScriptDetector

        return TorchScriptDetector(config)
    raise ValueError(f"unknown vibrio backend {config.backend!r} (expected hog, motion, onnx or torchscript)")
