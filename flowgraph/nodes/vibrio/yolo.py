"""YOLO-style person detection shared by the ONNX and TorchScript backends: letterbox, box decoding, NMS.

Output layouts understood (``layout`` param):

* ``yolov8`` — ``(1, 4 + C, N)`` (or its transpose): ``cx, cy, w, h`` in input pixels, then one score per
  class, no objectness (YOLOv8/YOLO11 exports).
* ``yolov5`` — ``(1, N, 5 + C)``: ``cx, cy, w, h, objectness``, then class probabilities; the person score is
  ``objectness × p(person)`` (YOLOv5/YOLOv7 exports).
* ``end2end`` — ``(1, N, 6)``: ``x1, y1, x2, y2, score, class`` with NMS already applied inside the model.
* ``auto`` — channels-first (fewer rows than columns) reads as ``yolov8``, otherwise ``yolov5``.

NMS is written here in plain torch (torchvision does not import beside this torch build): greedy suppression in
score order, computed as the fixed point of "a box survives when no surviving higher-scored box overlaps it too
much", which reaches exactly the greedy result in as many vectorised passes as the longest suppression chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LAYOUTS = ("auto", "yolov8", "yolov5", "end2end")
#: Candidates kept (by score) before NMS: bounds the N×N IoU matrix.
MAX_CANDIDATES = 1000
PAD_VALUE = 114 / 255


@dataclass(frozen=True)
class Letterbox:
    """How a picture was fitted into the square model input: ``input = picture * scale + (pad_x, pad_y)``."""

    scale: float
    pad_x: float
    pad_y: float
    width: int
    height: int

    def to_picture(self, boxes: torch.Tensor) -> torch.Tensor:
        """Map ``(N, 4)`` xyxy boxes from model-input pixels back to picture pixels (clipped to the picture)."""
        out = boxes.clone()
        out[:, [0, 2]] = ((out[:, [0, 2]] - self.pad_x) / self.scale).clamp(0, self.width)
        out[:, [1, 3]] = ((out[:, [1, 3]] - self.pad_y) / self.scale).clamp(0, self.height)
        return out


def letterbox(image: torch.Tensor, size: int) -> tuple[torch.Tensor, Letterbox]:
    """Resize a ``(3, H, W)`` uint8 picture (any device) to fit ``size × size``, keep the aspect, pad grey.

    Returns the ``(1, 3, size, size)`` float input in 0..1 on the picture's device and the mapping back.
    """
    _, height, width = image.shape
    scale = min(size / height, size / width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    x = image.unsqueeze(0).float().div_(255.0)
    if (new_h, new_w) != (height, width):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=scale < 1)
    pad_x, pad_y = (size - new_w) / 2, (size - new_h) / 2
    left, top = int(pad_x), int(pad_y)
    x = F.pad(x, (left, size - new_w - left, top, size - new_h - top), value=PAD_VALUE)
    return x, Letterbox(scale, float(left), float(top), width, height)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), xyxy → (N, M)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes greedy non-maximum suppression keeps, highest score first."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    sorted_boxes = boxes[order]
    # overlaps[j, i]: higher-scored box j would suppress box i.
    overlaps = torch.triu(box_iou(sorted_boxes, sorted_boxes) > iou_threshold, diagonal=1)
    keep = torch.ones(len(order), dtype=torch.bool, device=boxes.device)
    for _ in range(len(order)):
        survivors = ~(overlaps & keep[:, None]).any(dim=0)
        if torch.equal(survivors, keep):
            break
        keep = survivors
    return order[keep]


def decode(output: torch.Tensor, layout: str = "auto", person_class: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Person boxes (N, 4) xyxy in model-input pixels and their scores (N,) from one image's raw output."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown YOLO layout {layout!r} (expected one of {', '.join(LAYOUTS)})")
    out = output.detach().float()
    while out.dim() > 2 and out.shape[0] == 1:
        out = out[0]
    if out.dim() != 2:
        raise ValueError(f"expected a (1, rows, columns) detector output, got shape {tuple(output.shape)}")
    if layout == "end2end":
        if out.shape[1] < 6:
            raise ValueError(f"end2end layout needs 6 columns (x1, y1, x2, y2, score, class), got {out.shape[1]}")
        person = out[:, 5].round().long() == person_class
        return out[person, :4], out[person, 4]
    channels_first = out.shape[0] < out.shape[1]
    if layout == "auto":
        layout = "yolov8" if channels_first else "yolov5"
    rows = out.t() if channels_first else out
    first_class = 4 if layout == "yolov8" else 5
    if rows.shape[1] <= first_class + person_class:
        raise ValueError(f"{layout} output with {rows.shape[1]} values per box has no class {person_class}")
    scores = rows[:, first_class + person_class]
    if layout == "yolov5":
        scores = scores * rows[:, 4]
    return cxcywh_to_xyxy(rows[:, :4]), scores


def postprocess(output: torch.Tensor, box: Letterbox, *, layout: str, person_class: int, score_threshold: float,
                iou_threshold: float) -> torch.Tensor:
    """Decode, threshold, suppress and map back: ``(N, 5)`` xyxy+score in picture pixels (model's device)."""
    boxes, scores = decode(output, layout, person_class)
    mask = scores >= score_threshold
    boxes, scores = boxes[mask], scores[mask]
    if len(scores) > MAX_CANDIDATES:
        top = scores.topk(MAX_CANDIDATES).indices
        boxes, scores = boxes[top], scores[top]
    if layout != "end2end":
        keep = nms(boxes, scores, iou_threshold)
        boxes, scores = boxes[keep], scores[keep]
    boxes = box.to_picture(boxes)
    return torch.cat((boxes, scores[:, None].clamp(0, 1)), dim=1)
