"""TorchScript backend: a YOLO-style person detector saved with ``torch.jit.save``, on CPU or CUDA.

The whole path stays on the node's device: upload (when the frame is on the CPU), letterbox resize, the model,
decoding and NMS; only the final ``(N, 5)`` boxes come back to the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .detector import Detector, DetectorConfig, DetectorInfo
from .yolo import LAYOUTS, letterbox, postprocess


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
    """Runs a TorchScript module whose forward takes ``(1, 3, S, S)`` float 0..1 and returns raw YOLO output."""

    def __init__(self, config: DetectorConfig) -> None:
        path = model_path(config)
        self.config = config
        self.device = config.device if config.device.startswith("cuda") else "cpu"
        self.model = torch.jit.load(str(path), map_location=self.device).eval()
        self.half = False
        self.info = DetectorInfo("torchscript", self.device, path.name)

    @torch.inference_mode()
    def detect(self, image: Any, key: str = "default") -> np.ndarray:
        c = self.config
        x, box = letterbox(picture_tensor(image, self.device), c.input_size)
        output = self.model(x)
        if isinstance(output, list | tuple):  # some exports return (predictions, extras)
            output = output[0]
        result = postprocess(output, box, layout=c.layout, person_class=c.person_class,
                             score_threshold=c.score_threshold, iou_threshold=c.nms_iou)
        return result.cpu().numpy().astype(np.float32)

    def close(self) -> None:
        del self.model
