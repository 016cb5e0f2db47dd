"""HOG backend: OpenCV's built-in Dalal–Triggs people detector — the detector that always works offline.

CPU only (frames on CUDA are downloaded). The picture is resized so its width is ``detect_width`` times
``hog_upscale`` (the default detector window is 64×128 px, so people shorter than ~100 px need ``hog_upscale``
above 1). SVM margins become 0..1 scores with ``tanh``; the window's margin around the person is trimmed the way
OpenCV's own people-detect sample does, so the box bottom sits at the feet.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from .detector import Detector, DetectorConfig, DetectorInfo, clip_boxes, empty_boxes, to_numpy_rgb

#: Fractions of the 64×128 window that are background around the person (from OpenCV's peopledetect sample).
TRIM_X, TRIM_TOP, KEEP_W, KEEP_H = 0.1, 0.07, 0.8, 0.8


class HogDetector(Detector):
    """``cv2.HOGDescriptor`` with the default people SVM."""

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), dtype=np.float32))
        self.info = DetectorInfo("hog", "cpu", f"stride {config.hog_stride}, scale {config.hog_scale}")

    def detect(self, image: Any, key: str = "default") -> np.ndarray:
        c = self.config
        picture = to_numpy_rgb(image)
        height, width = picture.shape[:2]
        target = (c.detect_width or width) * c.hog_upscale
        factor = target / width
        if abs(factor - 1) > 1e-3:
            interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
            picture = cv2.resize(picture, (max(1, round(width * factor)), max(1, round(height * factor))),
                                 interpolation=interp)
        if picture.shape[0] < 128 or picture.shape[1] < 64:  # smaller than one detection window
            return empty_boxes()
        rects, weights = self.hog.detectMultiScale(picture, hitThreshold=c.hog_hit_threshold,
                                                   winStride=(c.hog_stride, c.hog_stride), padding=(8, 8),
                                                   scale=c.hog_scale)
        if len(rects) == 0:
            return empty_boxes()
        r = np.asarray(rects, dtype=np.float32).reshape(-1, 4) / factor
        x = r[:, 0] + r[:, 2] * TRIM_X
        y = r[:, 1] + r[:, 3] * TRIM_TOP
        w, h = r[:, 2] * KEEP_W, r[:, 3] * KEEP_H
        scores = np.tanh(np.clip(np.asarray(weights, dtype=np.float32).reshape(-1), 0, None))
        boxes = np.stack((x, y, x + w, y + h, scores), axis=1)
        boxes = boxes[boxes[:, 4] >= c.score_threshold]
        return clip_boxes(boxes, width, height)
