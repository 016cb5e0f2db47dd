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
