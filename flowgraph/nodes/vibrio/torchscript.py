"""TorchScript backend: a YOLO-style person detector saved with ``torch.jit.save``, on CPU or CUDA.

The whole path stays on the node's device: upload (when the frame is on the CPU), letterbox resize, the model,
decoding and NMS; only the final ``(N, 5)`` boxes come back to the host. Several streams' pictures go through the
model in one call (:meth:`TorchScriptDetector.detect_many`) when the model takes a batch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .detector import Detector, DetectorConfig, DetectorInfo
from .yolo import LAYOUTS, letterbox, postprocess

log = logging.getLogger("flowgraph.vibrio")


def picture_tensor(image: Any, device: str) -> torch.Tensor:
    """A checked picture as a ``(3, H, W)`` uint8 tensor on ``device`` (no copy when it already is one)."""
    if isinstance(image, torch.Tensor):
        return image.to(device, non_blocking=True)
    return torch.from_numpy(np.ascontiguousarray(image)).to(device, non_blocking=True).permute(2, 0, 1)


def model_path(config: DetectorConfig) -> Path:
    """The model file named in params, checked to exist (nothing is ever downloaded)."""
    if not config.model:
        raise ValueError(f"backend {config.backend!r} needs a model path (param 'model'); nothing is downloaded")
    path = Path(config.model).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{config.backend} model {str(path)!r} does not exist")
    if config.layout not in LAYOUTS:
        raise ValueError(f"unknown layout {config.layout!r} (expected one of {', '.join(LAYOUTS)})")
    return path


class TorchScriptDetector(Detector):
    """Runs a TorchScript module whose forward takes ``(N, 3, S, S)`` float 0..1 and returns raw YOLO output."""

    def __init__(self, config: DetectorConfig) -> None:
        path = model_path(config)
        self.config = config
        self.device = config.device if config.device.startswith("cuda") else "cpu"
        self.model = torch.jit.load(str(path), map_location=self.device).eval()
        self.half = False
        self.info = DetectorInfo("torchscript", self.device, path.name)
        #: The model refused a batch of several pictures (traced with a fixed batch of one): one call each.
        self.single_only = False
        self.runs = 0  # model calls

    @torch.inference_mode()
    def detect_many(self, items: list[tuple[Any, str]]) -> list[np.ndarray]:
        """Several pictures (typically one per stream) through the model in one call — on a GPU one launch for
        all of them; a model that only takes a batch of one gets them one by one."""
        if self.single_only or len(items) < 2:
            return [self.detect(image, key) for image, key in items]
        c = self.config
        fitted = [letterbox(picture_tensor(image, self.device), c.input_size) for image, _ in items]
        try:
            output = self.model(torch.cat([x for x, _ in fitted]))
        except RuntimeError as exc:
            output, why = None, str(exc).splitlines()[0]
        else:
            if isinstance(output, list | tuple):
                output = output[0]
            why = f"it answered a batch of {len(items)} with {len(output)}"
            self.runs += 1
        if output is None or len(output) != len(items):
            self.single_only = True
            log.warning("torchscript model %s takes one picture per call (%s): batches run one by one",
                        self.info.detail, why)
            return [self.detect(image, key) for image, key in items]
        return [postprocess(output[i:i + 1], box, layout=c.layout, person_class=c.person_class,
                            score_threshold=c.score_threshold, iou_threshold=c.nms_iou).cpu().numpy()
                .astype(np.float32) for i, (_, box) in enumerate(fitted)]

    @torch.inference_mode()
    def detect(self, image: Any, key: str = "default") -> np.ndarray:
        c = self.config
        x, box = letterbox(picture_tensor(image, self.device), c.input_size)
        output = self.model(x)
        self.runs += 1
        if isinstance(output, list | tuple):  # some exports return (predictions, extras)
            output = output[0]
        result = postprocess(output, box, layout=c.layout, person_class=c.person_class,
                             score_threshold=c.score_threshold, iou_threshold=c.nms_iou)
        return result.cpu().numpy().astype(np.float32)

    def close(self) -> None:
        del self.model
