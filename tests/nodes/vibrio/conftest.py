"""Fixtures for vibrio: a tiny YOLO-style model built and exported by the tests, real footage, synthetic tracks."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

#: Real pedestrian footage shipped by Debian's opencv-doc package (installed by ./quickstart).
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


class TinyYolo(torch.nn.Module):
    """A YOLO-shaped 'detector' whose output encodes known boxes.

    It finds the bounding box of the bright pixels of its input (so the letterbox mapping is really exercised)
    and reports, over 8 anchors and 2 classes (0 = person, 1 = other):
      0: that box, person 0.9            1: the box shifted 3 px, person 0.8 (NMS must remove it)
      2: a far box, class 1 at 0.95 (not a person)   3: a far box, person 0.05 (below threshold)
      4: a second, separate person at (30, 135, 50, 185) in input pixels, person 0.7
      5-7: zeros.
    ``layout`` is ``yolov8`` ((1, 6, 8), no objectness) or ``yolov5`` ((1, 8, 7), objectness 1.0).
    """

    def __init__(self, layout: str = "yolov8") -> None:
        super().__init__()
        self.layout = layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-1]
        bright = (x.mean(1) > 0.5).flatten(1)
        idx = torch.arange(size * size, device=x.device)
        ys, xs = (idx // size).float(), (idx % size).float()
        big = 4.0 * size
        x1 = torch.where(bright, xs, big).min(1).values
        y1 = torch.where(bright, ys, big).min(1).values
        x2 = torch.where(bright, xs, -big).max(1).values + 1
        y2 = torch.where(bright, ys, -big).max(1).values + 1
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        one = torch.ones_like(cx)
        zero = torch.zeros_like(cx)
        rows = [
            torch.stack([cx, cy, w, h, 0.9 * one, zero], 1),
            torch.stack([cx + 3, cy + 3, w, h, 0.8 * one, zero], 1),
            torch.stack([cx * 0 + 200, cy * 0 + 200, one * 40, one * 80, zero, 0.95 * one], 1),
            torch.stack([cx * 0 + 300, cy * 0 + 100, one * 40, one * 80, 0.05 * one, zero], 1),
            torch.stack([one * 40, one * 160, one * 20, one * 50, 0.7 * one, zero], 1),
            torch.stack([zero] * 6, 1), torch.stack([zero] * 6, 1), torch.stack([zero] * 6, 1),
        ]
        anchors = torch.stack(rows, 1)  # (1, 8, 6): cx, cy, w, h, p(person), p(other)
        if self.layout == "yolov5":
            return torch.cat([anchors[..., :4], torch.ones_like(anchors[..., :1]), anchors[..., 4:]], -1)
        return anchors.transpose(1, 2)


def export(module: torch.nn.Module, path: Path, kind: str, size: int = 320) -> Path:
    """Save ``module`` as TorchScript (``torchscript``) or ONNX (``onnx``) for a ``size``² input."""
    example = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
        if kind == "torchscript":
            torch.jit.save(torch.jit.trace(module, example), str(path))
        else:
            torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=["images"],
                              output_names=["output"])
    return path


@pytest.fixture
def tiny_model(tmp_path: Path):
    """``make(kind, layout)`` → path of a freshly exported tiny YOLO-style model."""

    def make(kind: str, layout: str = "yolov8") -> Path:
        suffix = ".onnx" if kind == "onnx" else ".pt"
        return export(TinyYolo(layout), tmp_path / f"tiny-{layout}{suffix}", kind)

    return make


def picture_with_box(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A black RGB picture with one white rectangle ``(x1, y1, x2, y2)``."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image
