"""Motion backend: background subtraction + connected components, for fixed cameras, in torch (GPU when placed).

Per stream: the first ``motion_warmup`` frames build the background as their per-pixel median (so people present
from the start do not become ghosts); after that a running mean/variance model adapts at ``motion_learning_rate``
on background pixels and ten times slower under foreground, while foreground that stops changing for
``GHOST_FRAMES`` is absorbed quickly (the ghost of someone who stood still during warm-up). A pixel is foreground
when one colour channel differs from the background by more than ``motion_threshold`` levels and three standard
deviations, unless it looks like a cast shadow (the background dimmed evenly across channels). Closing then
opening joins body parts and removes speckle. Everything up to the mask runs on the node's device at
``motion_width`` px wide; the mask's morphology and labelling run with OpenCV on the CPU (kornia's iterative
labelling costs ~11 ms per 160×90 mask on a CPU core, torch's float max-pooling ~10× OpenCV's uint8
morphology) and with max-pooling and kornia on CUDA.

Known limit: people who overlap in the picture merge into one blob (one box), which costs recall and identity
switches in crowds; a learned detector (``onnx``/``torchscript``) does not have that problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .detector import Detector, DetectorConfig, DetectorInfo, clip_boxes, empty_boxes
from .torchscript import picture_tensor

_CLOSE = np.ones((5, 5), np.uint8)
_OPEN = np.ones((3, 3), np.uint8)
#: Foreground that has not changed for this many frames is absorbed into the background at ``GHOST_RATE``
#: per frame: the ghost a person leaves where they stood during warm-up fades in about a second.
GHOST_FRAMES, GHOST_RATE = 20, 0.2
#: Shadow test: every channel between these fractions of the background, and channels dimmed alike.
SHADOW_DARKEST, SHADOW_LIGHTEST, SHADOW_HUE_SPREAD = 0.35, 0.92, 0.12


@dataclass
class Background:
    """One stream's background model."""

    shape: tuple[int, int]
    warmup: list[torch.Tensor] = field(default_factory=list)
    mean: torch.Tensor | None = None
    var: torch.Tensor | None = None
    previous: torch.Tensor | None = None
    #: Consecutive frames each pixel has been foreground without changing (a ghost or someone standing still).
    still: torch.Tensor | None = None


def dilate(mask: torch.Tensor, size: int) -> torch.Tensor:
    return F.max_pool2d(mask, size, stride=1, padding=size // 2)


def erode(mask: torch.Tensor, size: int) -> torch.Tensor:
    return -F.max_pool2d(-mask, size, stride=1, padding=size // 2)


def components_cv2(foreground: torch.Tensor) -> np.ndarray:
    """Close, open and label a ``(h, w)`` bool mask with OpenCV: blob boxes ``(N, 5)`` (x1, y1, x2, y2, area).

    On the CPU OpenCV's uint8 morphology is ~10× faster than torch's float max-pooling of the same mask.
    """
    import cv2

    mask = foreground.to("cpu", torch.uint8).numpy()
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _CLOSE)  # join limbs and torso
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _OPEN)  # drop speckle
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    s = stats[1:count].astype(np.float32)  # label 0 is the background
    return np.stack((s[:, 0], s[:, 1], s[:, 0] + s[:, 2], s[:, 1] + s[:, 3], s[:, 4]), axis=1)


def components_kornia(foreground: torch.Tensor) -> np.ndarray:
    """The same as :func:`components_cv2` on the mask's device: max-pool morphology, kornia labelling (CUDA)."""
    from kornia.contrib import connected_components

    closed = erode(dilate(foreground[None, None].float(), 5), 5)
    mask = dilate(erode(closed, 3), 3)[0, 0] > 0.5
    h, w = mask.shape
    labels = connected_components(mask[None, None].float(), num_iterations=h + w)[0, 0].long()
    ids, inverse = torch.unique(labels, return_inverse=True)
    n = len(ids)
    ys, xs = torch.meshgrid(torch.arange(h, device=mask.device), torch.arange(w, device=mask.device),
                            indexing="ij")
    flat, xs, ys = inverse.flatten(), xs.flatten(), ys.flatten()
    big = torch.full((n,), h + w, device=mask.device, dtype=torch.long)
    x1 = big.scatter_reduce(0, flat, xs, "amin")
    y1 = big.scatter_reduce(0, flat, ys, "amin")
    x2 = torch.zeros(n, device=mask.device, dtype=torch.long).scatter_reduce(0, flat, xs, "amax") + 1
    y2 = torch.zeros(n, device=mask.device, dtype=torch.long).scatter_reduce(0, flat, ys, "amax") + 1
    area = torch.bincount(flat, minlength=n)
    keep = ids != 0
    return torch.stack((x1, y1, x2, y2, area), dim=1)[keep].float().cpu().numpy()


class MotionDetector(Detector):
    """Moving blobs of person-like size as detections (scores from how well the blob fills its box)."""

    def __init__(self, config: DetectorConfig, labeller: str = "auto") -> None:
        self.config = config
        self.device = config.device if config.device.startswith("cuda") else "cpu"
        self.labeller = labeller if labeller != "auto" else ("kornia" if self.device != "cpu" else "cv2")
        self.models: dict[str, Background] = {}
        self.info = DetectorInfo("motion", self.device, f"labels with {self.labeller}")

    @staticmethod
    def _shadow(colour: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """Pixels that are the background, only darker with the same hue: a cast shadow, not a person."""
        ratio = colour / (mean + 1.0)
        low, high = ratio.amin(dim=1, keepdim=True), ratio.amax(dim=1, keepdim=True)
        return (low > SHADOW_DARKEST) & (high < SHADOW_LIGHTEST) & (high - low < SHADOW_HUE_SPREAD)

    def forget(self, key: str) -> None:
        self.models.pop(key, None)

    @torch.inference_mode()
    def detect(self, image: Any, key: str = "default") -> np.ndarray:
        c = self.config
        picture = picture_tensor(image, self.device)
        _, height, width = picture.shape
        factor = min(1.0, c.motion_width / width)
        size = (max(8, round(height * factor)), max(8, round(width * factor)))
        colour = picture.unsqueeze(0).float()
        if size != (height, width):
            colour = F.interpolate(colour, size=size, mode="area")
        model = self.models.get(key)
        if model is None or model.shape != size:
            model = self.models[key] = Background(size)
        if model.mean is None or model.var is None:
            model.warmup.append(colour)
            if len(model.warmup) < max(1, c.motion_warmup):
                return empty_boxes()
            stack = torch.cat(model.warmup)
            model.mean = stack.median(dim=0, keepdim=True).values
            spread = (stack - model.mean).abs().amax(dim=1, keepdim=True)
            model.var = spread.square().mean(dim=0, keepdim=True).clamp(min=4.0)
            model.warmup.clear()
            return empty_boxes()
        delta = colour - model.mean
        # Largest per-channel difference: a teal shirt on green grass has the grass's grey level but not its hue.
        diff = delta.abs().amax(dim=1, keepdim=True)
        foreground = (diff > c.motion_threshold) & (diff.square() > 9 * model.var) & ~self._shadow(colour, model.mean)
        changing = (colour - model.previous).abs().amax(dim=1, keepdim=True) > c.motion_threshold / 2 \
            if model.previous is not None else foreground
        model.still = torch.where(foreground & ~changing, (model.still if model.still is not None else 0) + 1, 0)
        model.previous = colour
        rate = torch.where(foreground, c.motion_learning_rate * 0.1, c.motion_learning_rate)
        rate = torch.where(model.still > GHOST_FRAMES, GHOST_RATE, rate)
        model.mean += rate * delta
        model.var += rate * (diff.square().clamp(max=2500) - model.var)
        model.var.clamp_(min=4.0)
        plane = foreground[0, 0]
        blobs = components_kornia(plane) if self.labeller == "kornia" else components_cv2(plane)
        if len(blobs) == 0:
            return empty_boxes()
        min_area = c.motion_min_area * size[0] * size[1]
        blobs = blobs[(blobs[:, 4] >= min_area) & (blobs[:, 3] - blobs[:, 1] >= 4)]
        if len(blobs) == 0:
            return empty_boxes()
        box_area = (blobs[:, 2] - blobs[:, 0]) * (blobs[:, 3] - blobs[:, 1])
        fill = blobs[:, 4] / np.maximum(box_area, 1)
        scores = np.clip(0.35 + fill, 0, 1)
        boxes = np.concatenate((blobs[:, :4] / factor, scores[:, None]), axis=1)
        return clip_boxes(boxes.astype(np.float32), width, height)
