"""ONNX backend: the same tiny model exported with torch.onnx, run by onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from flowgraph.nodes.vibrio.detector import DetectorConfig, make_detector

from .conftest import picture_with_box
from .test_torchscript import EXPECTED


@pytest.mark.parametrize("layout", ["yolov8", "yolov5"])
def test_onnx_model_boxes_decoded_into_picture_pixels(tiny_model, layout: str) -> None:
    path = tiny_model("onnx", layout)
    detector = make_detector(DetectorConfig(backend="onnx", model=str(path), input_size=320, layout=layout))
    boxes = detector.detect(picture_with_box(640, 360, (200, 100, 300, 300)))
    assert boxes.shape == (2, 5)
    np.testing.assert_allclose(boxes, EXPECTED, atol=2.5)
    assert detector.info.backend == "onnx" and detector.info.device == "CPUExecutionProvider"


def test_portrait_picture_padding_is_on_the_sides(tiny_model) -> None:
    detector = make_detector(DetectorConfig(backend="onnx", model=str(tiny_model("onnx")), input_size=320))
    boxes = detector.detect(picture_with_box(360, 640, (100, 200, 200, 500)))
    np.testing.assert_allclose(boxes[0, :4], [100, 200, 200, 500], atol=2.5)


def test_input_size_must_match_a_fixed_model(tiny_model) -> None:
    with pytest.raises(ValueError, match="input_size"):
        make_detector(DetectorConfig(backend="onnx", model=str(tiny_model("onnx")), input_size=640))


def test_a_dynamic_batch_model_takes_several_streams_in_one_run(tmp_path) -> None:
    import warnings

    import torch

    from .conftest import TinyYolo
    from .test_torchscript import STREAMS

    path = tmp_path / "dynamic.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TinyYolo(), (torch.zeros(1, 3, 320, 320),), str(path), dynamo=False,
                          input_names=["images"], output_names=["output"],
                          dynamic_axes={"images": {0: "batch"}, "output": {0: "batch"}})
    detector = make_detector(DetectorConfig(backend="onnx", model=str(path), input_size=320))
    assert not detector.single_only  # type: ignore[attr-defined]
    pictures = [(picture_with_box(w, h, box), f"s{i}") for i, ((w, h), box) in enumerate(STREAMS)]
    together = detector.detect_many(pictures)  # type: ignore[attr-defined]
    assert detector.runs == 1  # type: ignore[attr-defined]
    for found, (image, key), (_, box) in zip(together, pictures, STREAMS, strict=True):
        np.testing.assert_allclose(found, detector.detect(image, key), atol=1e-3)
        np.testing.assert_allclose(found[0, :4], box, atol=2.5)


def test_a_fixed_batch_model_gets_several_streams_one_by_one(tiny_model) -> None:
    from .test_torchscript import STREAMS

    detector = make_detector(DetectorConfig(backend="onnx", model=str(tiny_model("onnx")), input_size=320))
    assert detector.single_only  # type: ignore[attr-defined]
    pictures = [(picture_with_box(w, h, box), f"s{i}") for i, ((w, h), box) in enumerate(STREAMS)]
    boxes = detector.detect_many(pictures)  # type: ignore[attr-defined]
    assert detector.runs == 3  # type: ignore[attr-defined]
    for found, (_, box) in zip(boxes, STREAMS, strict=True):
        np.testing.assert_allclose(found[0, :4], box, atol=2.5)
