"""ONNX / TorchScript top-down backend with a model the tests build: loading, batching, decoding, mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowgraph.nodes.moriarty.topdown import TopDownBackend
from tests.nodes.moriarty.conftest import build_colour_model, draw_dots, export_model


def scene(gait, people: int = 3, t: float = 0.5):
    """A black 1280x720 frame with each person's COCO-17 joints drawn as coloured dots."""
    image = np.zeros((720, 1280, 3), np.uint8)
    truth, boxes = [], []
    for i in range(people):
        g = gait(origin=(-270 + 400 * i, 640 + 30 * (i % 2)), phase0=0.3 * i, px_per_m=190 + 10 * i,
                 depth_px=(16.0, -8.0))
        k = g.keypoints(t, "coco17")
        draw_dots(image, k)
        truth.append(k)
        boxes.append(g.bbox(t))
    return image, truth, np.array(boxes)


def errors(found: list[np.ndarray | None], truth: list[np.ndarray]) -> np.ndarray:
    assert all(f is not None for f in found)
    return np.concatenate([np.hypot(*(f[:, :2] - k[:, :2]).T) for f, k in zip(found, truth, strict=True)])  # type: ignore[index]


@pytest.mark.parametrize("name", ["onnx-heatmap", "onnx-simcc", "torchscript-heatmap", "torchscript-simcc"])
def test_keypoints_land_on_the_dots(name: str, colour_models: dict[str, Path], gait) -> None:
    runtime = name.split("-")[0]
    size = None if runtime == "onnx" else (256, 192)  # ONNX records its input size; TorchScript does not
    backend = TopDownBackend(str(colour_models[name]), runtime, input_size=size, max_batch=2)
    image, truth, boxes = scene(gait)
    found = backend.infer(image, boxes)
    assert len(found) == 3
    err = errors(found, truth)
    assert err.mean() < 1.5 and err.max() < 6.0, (name, err.mean(), err.max())  # max: overlapping head dots
    assert np.median([f[:, 2] for f in found]) > 0.6
    assert backend.skeleton.name == "coco17"


def test_cuda_tensor_path_crops_with_grid_sample(colour_models: dict[str, Path], gait) -> None:
    """A (3, H, W) tensor frame is cropped on its own device (here the CPU) and agrees with the OpenCV path."""
    import torch

    backend = TopDownBackend(str(colour_models["torchscript-heatmap"]), "torchscript", input_size=(256, 192))
    image, truth, boxes = scene(gait)
    on_numpy = backend.infer(image, boxes)
    on_tensor = backend.infer(torch.from_numpy(image).permute(2, 0, 1).contiguous(), boxes)
    assert errors(on_tensor, truth).mean() < 1.5
    assert max(float(np.abs(a - b).max()) for a, b in zip(on_numpy, on_tensor, strict=True)) < 0.5


def test_fixed_batch_one_model(tmp_path: Path, gait) -> None:
    import warnings

    import torch

    path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(build_colour_model("heatmap"), (torch.zeros(1, 3, 128, 96),), str(path), dynamo=False,
                          input_names=["input"])
    backend = TopDownBackend(str(path), "onnx")
    assert (backend.input_h, backend.input_w) == (128, 96)
    image, truth, boxes = scene(gait)
    assert errors(backend.infer(image, boxes), truth).mean() < 3.0  # one crop per call, smaller input


def test_whole_frame_single_person(colour_models: dict[str, Path], gait) -> None:
    backend = TopDownBackend(str(colour_models["onnx-heatmap"]), "onnx")
    whole = np.zeros((720, 540, 3), np.uint8)  # the model's aspect ratio: one person filling the frame
    g = gait(origin=(150, 650), px_per_m=330, depth_px=(30.0, -15.0))
    k = g.keypoints(0.2, "coco17")
    draw_dots(whole, k, radius=9)
    found = backend.infer(whole, None)
    assert len(found) == 1 and np.median(errors(found, [k])) < 2.0


def test_loading_errors_are_clear(tmp_path: Path, colour_models: dict[str, Path]) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        TopDownBackend(str(tmp_path / "missing.onnx"), "onnx")
    with pytest.raises(ValueError, match="input_size"):
        TopDownBackend(str(colour_models["torchscript-heatmap"]), "torchscript")
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():  # onnxruntime-gpu on a GPU host
        assert TopDownBackend(str(colour_models["onnx-heatmap"]), "onnx", device="cuda:0").input_h > 0
    else:  # CPU onnxruntime: refuse, don't fall back
        with pytest.raises(RuntimeError, match="CUDAExecutionProvider"):
            TopDownBackend(str(colour_models["onnx-heatmap"]), "onnx", device="cuda:0")
    dynamic = tmp_path / "dynamic.onnx"
    export_model(build_colour_model("heatmap"), dynamic, "onnx", (64, 48))
    assert TopDownBackend(str(dynamic), "onnx").input_h == 64


def test_no_boxes_no_work(colour_models: dict[str, Path]) -> None:
    backend = TopDownBackend(str(colour_models["onnx-heatmap"]), "onnx")
    assert backend.infer(np.zeros((720, 1280, 3), np.uint8), np.zeros((0, 4))) == []
