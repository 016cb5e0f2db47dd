"""OpenCV's HOG people detector finds the synthetic figures — the point of drawing them human-like.

Measured over 24 frames (8 seeds × 3 times, 1280×720, mixed walking/running, field background) with the
default people detector (winStride 8, padding 8, scale 1.05): recall ≈ 0.75-0.85 on unoccluded figures ≥ 120 px
tall (IoU ≥ 0.3 with the detector's loose boxes). The test asserts ≥ 0.6 on a smaller sample so that shared-CPU
noise cannot fail it, but a regression that makes figures unrecognisable (recall near 0) would.
"""

import cv2
import numpy as np

from flowgraph.nodes.synth import Scene, SceneConfig


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _recall(appearance: str, seeds: range, frames: tuple[int, ...]) -> tuple[int, int, int]:
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    found = total = false_pos = 0
    for seed in seeds:
        scene = Scene(SceneConfig(width=1280, height=720, people=3, seed=seed, appearance=appearance))
        for i in frames:
            img, truth = scene.render(i)
            rects, _ = hog.detectMultiScale(np.ascontiguousarray(img[:, :, ::-1]), winStride=(8, 8),
                                            padding=(8, 8), scale=1.05)
            boxes = [(x, y, x + w, y + h) for x, y, w, h in rects]
            for p in truth.people:
                if p.bbox[3] - p.bbox[1] < 120 or p.visible_fraction < 0.9:
                    continue
                total += 1
                found += max((_iou(p.bbox, b) for b in boxes), default=0.0) >= 0.3
            false_pos += sum(max((_iou(p.bbox, b) for p in truth.people), default=0.0) < 0.3 for b in boxes)
    return found, total, false_pos


def test_hog_finds_most_unoccluded_figures() -> None:
    found, total, false_pos = _recall("figure", range(1, 7), (0, 40))
    assert total >= 12
    assert found / total >= 0.6, f"HOG recall {found}/{total}"
    assert false_pos <= total  # the background itself is not full of "people"
