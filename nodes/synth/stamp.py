"""Frame stamp: a machine-readable frame counter and capture time drawn into the pixels (layout to follow)."""

from __future__ import annotations

import numpy as np


def draw_stamp(image: np.ndarray, frame_id: int, t_capture_ms: int) -> None:
    """Draw the stamp into the top-left corner of ``image`` (RGB uint8, in place)."""
    raise NotImplementedError("stamp layout lands in the next commit")


def read_stamp(image: np.ndarray) -> tuple[int, int] | None:
    """``(frame_id, t_capture_ms)`` read back from a stamped image, or None when no valid stamp is found."""
    raise NotImplementedError("stamp layout lands in the next commit")
