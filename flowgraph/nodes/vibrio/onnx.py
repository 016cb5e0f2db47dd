"""ONNX backend: a YOLO-style person detector run by onnxruntime (CUDA execution provider when placed on CUDA).

Pre- and post-processing share :mod:`.yolo` with the TorchScript backend, in torch on the CPU; onnxruntime takes
and returns numpy arrays. A model exported with a dynamic batch axis takes several streams' pictures in one run
(:meth:`OnnxDetector.detect_many`); one exported for a batch of one gets them one by one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .detector import Detector, DetectorConfig, DetectorInfo
from .torchscript import model_path, picture_tensor
from .yolo import letterbox, postprocess


class OnnxDetector(Detector):
    """Runs an ONNX model with one image input ``(N, 3, S, S)`` float 0..1 and one raw YOLO output."""

    def __init__(self, config: DetectorConfig) -> None:
        import onnxruntime as ort

        path = model_path(config)
        self.config = config
        providers = ["CPUExecutionProvider"]
        if config.device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            index = config.device.partition(":")[2] or "0"
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(index)}))  # type: ignore[arg-type]
        options = ort.SessionOptions()
        if config.threads > 0:
            options.intra_op_num_threads = config.threads
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"onnx model {path.name!r} has {len(inputs)} inputs; expected one image input")
        self.input_name = inputs[0].name
        fixed = [d for d in inputs[0].shape[2:] if isinstance(d, int)]
        if fixed and any(d != config.input_size for d in fixed):
            raise ValueError(f"onnx model {path.name!r} expects {inputs[0].shape[2:]} inputs but input_size is "
                             f"{config.input_size}")
        self.info = DetectorInfo("onnx", self.session.get_providers()[0], path.name)
        batch = inputs[0].shape[0] if inputs[0].shape else 1
        #: Exported with a fixed batch (an int, usually 1): several pictures go one by one, not in one call.
        self.single_only = isinstance(batch, int) and batch == 1
        self.runs = 0  # model calls

    @torch.inference_mode()
    def detect_many(self, items: list[tuple[Any, str]]) -> list[np.ndarray]:
        """Several pictures (typically one per stream) in one ``session.run`` when the model's batch axis is
        dynamic; one by one otherwise."""
        if self.single_only or len(items) < 2:
            return [self.detect(image, key) for image, key in items]
        c = self.config
        fitted = [letterbox(picture_tensor(image, "cpu"), c.input_size) for image, _ in items]
        output = np.asarray(self.session.run(None, {self.input_name: torch.cat([x for x, _ in fitted]).numpy()})[0])
        self.runs += 1
        return [postprocess(torch.from_numpy(output[i:i + 1]), box, layout=c.layout, person_class=c.person_class,
                            score_threshold=c.score_threshold, iou_threshold=c.nms_iou).numpy().astype(np.float32)
                for i, (_, box) in enumerate(fitted)]

    @torch.inference_mode()
    def detect(self, image: Any, key: str = "default") -> np.ndarray:
        c = self.config
        x, box = letterbox(picture_tensor(image, "cpu"), c.input_size)
        output = self.session.run(None, {self.input_name: x.numpy()})[0]
        self.runs += 1
        result = postprocess(torch.from_numpy(np.asarray(output)), box, layout=c.layout,
                             person_class=c.person_class, score_threshold=c.score_threshold,
                             iou_threshold=c.nms_iou)
        return result.numpy().astype(np.float32)

    def close(self) -> None:
        del self.session
