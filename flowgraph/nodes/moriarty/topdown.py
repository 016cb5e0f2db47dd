"""Top-down COCO-17 pose models (RTMPose, ViTPose, HRNet exports) from a local ONNX or TorchScript file.

One crop per person box, grown to the model's aspect ratio, all crops of a frame — or of several streams' frames
(:meth:`TopDownBackend.infer_many`) — in one batch (split into chunks of ``max_batch``; a model exported with a
fixed batch of 1 gets them one by one). The input is ``(N, 3, H, W)``
float32 RGB, normalised with ``mean``/``std`` in 0-255 units (ImageNet values by default, as RTMPose and ViTPose
exports expect). Outputs are decoded as heatmaps or SimCC (``decode.py``) and mapped back to frame pixels.

CPU and CUDA: the ONNX runtime gets the CUDA execution provider when ``device`` is ``cuda[:N]`` (the node
refuses to start if the runtime lacks it, rather than silently running on the CPU); TorchScript moves the module
to the device, and a frame that is already a CUDA tensor is cropped there with ``grid_sample`` (no download).
The CUDA paths cannot be exercised on CPU-only machines; the same ``grid_sample`` cropping is tested on CPU.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .backend import PoseBackend
from .crops import affine_grid_theta, crop_regions, crop_to_frame, warp_crops
from .decode import decode
from .skeleton import COCO17

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class TopDownBackend(PoseBackend):
    """A COCO-17 top-down model run by onnxruntime or torch.jit."""

    skeleton = COCO17

    def __init__(self, path: str, runtime: Literal["onnx", "torchscript"], *, input_size: Sequence[int] | None = None,
                 layout: Literal["auto", "heatmap", "simcc"] = "auto", split_ratio: float = 2.0,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 padding: float = 1.25, device: str = "cpu", max_batch: int = 16, threads: int = 0) -> None:
        model = Path(path)
        if not path or not model.is_file():
            raise FileNotFoundError(f"pose model {path!r} not found (the {runtime} backend needs a local file)")
        self.name = runtime
        self.layout = layout
        self.split_ratio = split_ratio
        self.padding = padding
        self.device = device
        self.max_batch = max(1, max_batch)
        self._mean = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
        self._fixed_batch: int | None = None
        self._model_size: tuple[int, int] | None = None
        if runtime == "onnx":
            self._load_onnx(model, threads)
        else:
            self._load_torchscript(model, threads)
        size = self._model_size if input_size is None else tuple(int(v) for v in input_size)
        if size is None or len(size) != 2:
            raise ValueError(f"{model.name}: the model's input size is dynamic; give input_size [height, width]")
        self.input_h: int = size[0]
        self.input_w: int = size[1]

    # -- loading ----------------------------------------------------------------------------------------------
    def _load_onnx(self, model: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers: list[Any] = ["CPUExecutionProvider"]
        if self.device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError(f"device {self.device}: this onnxruntime has no CUDAExecutionProvider "
                                   "(install onnxruntime-gpu)")
            index = int(self.device.partition(":")[2] or 0)
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        self._session = ort.InferenceSession(str(model), options, providers=providers)
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4:
            raise ValueError(f"{model.name}: expected one (N, 3, H, W) input, got {shape}")
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self._model_size = (shape[2], shape[3]) if all(isinstance(v, int) for v in shape[2:]) else None
        self._crops, self._forward = self._crops_onnx, self._forward_onnx

    def _load_torchscript(self, model: Path, threads: int) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self._module = torch.jit.load(str(model), map_location=self.device).eval()
        self._model_size = None  # TorchScript does not record input shapes
        self._crops, self._forward = self._crops_torch, self._forward_torch

    # -- inference ----------------------------------------------------------------------------------------------
    def infer(self, image: Any, boxes: np.ndarray | None, keys: Sequence[Hashable] | None = None
              ) -> list[np.ndarray | None]:
        return self.infer_many([(image, boxes)])[0]

    def infer_many(self, jobs: Sequence[tuple[Any, np.ndarray | None]]) -> list[list[np.ndarray | None]]:
        """Keypoints per box for several pictures (typically several streams' frames): the crops of all of them go
        through the model together, ``max_batch`` crops per call."""
        crops: list[tuple[int, Any, np.ndarray, int, int]] = []  # (job, picture, region, width, height)
        for j, (image, boxes) in enumerate(jobs):
            height, width = (image.shape[1], image.shape[2]) if _is_tensor(image) else image.shape[:2]
            if boxes is None:  # whole frame, one person: the frame itself is the box
                regions = crop_regions(np.array([[0, 0, width, height]]), self.input_w, self.input_h, 1.0)
            else:
                regions = crop_regions(boxes, self.input_w, self.input_h, self.padding)
            crops.extend((j, image, region, width, height) for region in regions)
        results: list[list[np.ndarray | None]] = [[] for _ in jobs]
        step = self._fixed_batch or self.max_batch
        for start in range(0, len(crops), step):
            chunk = crops[start:start + step]
            outputs = self._forward(self._inputs(chunk))
            points = decode(outputs, self.layout, self.input_w, self.input_h, self.split_ratio)
            for i, (j, _, region, _, _) in enumerate(chunk):
                results[j].append(crop_to_frame(points[i], region, self.input_w))
        return results

    def _inputs(self, chunk: list[tuple[int, Any, np.ndarray, int, int]]) -> Any:
        """The model's input for a chunk of crops: each picture's crops cut out together, then stacked."""
        parts: list[Any] = []
        i = 0
        while i < len(chunk):
            j, image, _, width, height = chunk[i]
            end = i + 1
            while end < len(chunk) and chunk[end][0] == j:
                end += 1
            parts.append(self._crops(image, np.stack([c[2] for c in chunk[i:end]]), width, height))
            i = end
        if len(parts) == 1:
            return parts[0]
        return self._torch.cat(parts) if self.name == "torchscript" else np.concatenate(parts)

    def _normalise(self, crops: np.ndarray) -> np.ndarray:
        batch = crops.transpose(0, 3, 1, 2).astype(np.float32)
        return (batch - self._mean) / self._std

    def _crops_onnx(self, image: Any, regions: np.ndarray, width: int, height: int) -> np.ndarray:
        return self._normalise(warp_crops(_numpy(image), regions, self.input_w, self.input_h))

    def _forward_onnx(self, batch: np.ndarray) -> list[np.ndarray]:
        outputs = self._session.run(None, {self._input_name: batch})
        return [np.asarray(o) for o in outputs]

    def _crops_torch(self, image: Any, regions: np.ndarray, width: int, height: int) -> Any:
        torch = self._torch
        with torch.inference_mode():
            if _is_tensor(image):
                return self._crops_on_device(image, regions, width, height)
            crops = warp_crops(image, regions, self.input_w, self.input_h)
            return torch.from_numpy(self._normalise(crops)).to(self.device)

    def _forward_torch(self, batch: Any) -> list[np.ndarray]:
        with self._torch.inference_mode():
            out = self._module(batch)
            tensors = list(out) if isinstance(out, list | tuple) else [out]
            return [t.float().cpu().numpy() for t in tensors]

    def _crops_on_device(self, frame: Any, regions: np.ndarray, width: int, height: int) -> Any:
        """Crop a ``(3, H, W)`` uint8 tensor on its own device with one batched ``grid_sample``."""
        torch = self._torch
        functional = torch.nn.functional
        src = frame.to(self.device).float().unsqueeze(0)
        theta = torch.as_tensor(affine_grid_theta(regions, width, height), dtype=torch.float32, device=src.device)
        grid = functional.affine_grid(theta, [len(regions), 3, self.input_h, self.input_w], align_corners=False)
        crops = functional.grid_sample(src.expand(len(regions), -1, -1, -1), grid, mode="bilinear",
                                       padding_mode="zeros", align_corners=False)
        mean = torch.as_tensor(self._mean, device=src.device)
        std = torch.as_tensor(self._std, device=src.device)
        return (crops - mean) / std


def _is_tensor(image: Any) -> bool:
    return hasattr(image, "detach")


def _numpy(image: Any) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return image
    return np.ascontiguousarray(image.detach().permute(1, 2, 0).cpu().numpy())
