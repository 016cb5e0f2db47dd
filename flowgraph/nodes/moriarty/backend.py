"""The pose-backend interface and the checks every frame passes before a model sees it.

A backend turns one picture plus person boxes into keypoints, one ``(K, 3)`` array (``x, y, score`` in frame
pixels, continuous coordinates) per box, or ``None`` for a box in which it found nobody. Without boxes it looks
at the whole frame for one person. Backends are built in the node's worker thread and used only there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from .skeleton import Skeleton

#: Frames smaller than this on either side carry no usable pose.
MIN_SIDE = 32


class BadFrame(ValueError):
    """A frame that cannot be analysed (wrong type, dtype, shape or size); the node answers with no poses."""


class PoseBackend(ABC):
    """One pose model behind moriarty."""

    #: Short name for stats and logs.
    name: str = ""
    #: Layout of the keypoints this backend returns.
    skeleton: Skeleton

    @abstractmethod
    def infer(self, image: Any, boxes: np.ndarray | None, keys: Sequence[Hashable] | None = None
              ) -> list[np.ndarray | None]:
        """Keypoints per box (``boxes`` ``(N, 4)`` x1, y1, x2, y2 pixels), or for the whole frame when None.

        ``image`` is an ``(H, W, 3)`` uint8 RGB numpy array (already checked), or for backends that accept them a
        ``(3, H, W)`` uint8 torch tensor. ``keys`` name the person behind each box (``(stream_id, track_id)``)
        for backends that keep per-person state; others ignore them.
        """

    def forget(self, key: Hashable) -> None:  # noqa: B027 - optional hook, most backends are stateless
        """Drop any per-person state kept under ``key`` (the node evicted that track)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model."""


def check_image(image: Any) -> Any:
    """The frame as the backends want it, or :class:`BadFrame` naming what is wrong with it.

    Accepts ``(H, W, 3)`` uint8 RGB; greyscale ``(H, W)``/``(H, W, 1)`` and RGBA are converted. A torch tensor is
    passed through when it is ``(3, H, W)`` uint8 (backends that cannot use it call ``.cpu()`` themselves).
    """
    if hasattr(image, "detach") and hasattr(image, "dtype"):  # torch tensor, without importing torch here
        shape = tuple(image.shape)
        if len(shape) != 3 or shape[0] != 3 or str(image.dtype) != "torch.uint8":
            raise BadFrame(f"tensor frame must be (3, H, W) uint8, got {shape} {image.dtype}")
        if min(shape[1:]) < MIN_SIDE:
            raise BadFrame(f"frame {shape[2]}x{shape[1]} is smaller than {MIN_SIDE} px on a side")
        return image
    if not isinstance(image, np.ndarray):
        raise BadFrame(f"frame must be a numpy array or torch tensor, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise BadFrame(f"frame dtype must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise BadFrame(f"frame must be (H, W, 3) RGB, got shape {image.shape}")
    if min(image.shape[:2]) < MIN_SIDE:
        raise BadFrame(f"frame {image.shape[1]}x{image.shape[0]} is smaller than {MIN_SIDE} px on a side")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


def to_numpy_rgb(image: Any) -> np.ndarray:
    """An ``(H, W, 3)`` numpy view/copy of a checked frame (downloads a tensor from its device)."""
    if isinstance(image, np.ndarray):
        return image
    return np.ascontiguousarray(image.detach().permute(1, 2, 0).cpu().numpy())


def clip_boxes(boxes: np.ndarray, width: int, height: int, min_side: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the frame, and a mask of those still at least ``min_side`` pixels on both sides."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    finite = np.isfinite(b).all(axis=1)
    b[~finite] = 0.0
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, width)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, height)
    keep = finite & (b[:, 2] - b[:, 0] >= min_side) & (b[:, 3] - b[:, 1] >= min_side)
    return b, keep
