"""TorchScript backend: loads a model the test exports itself and decodes the boxes it encodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowgraph.nodes.vibrio.detector import DetectorConfig, make_detector

from .conftest import picture_with_box

# The tiny model reports the bright rectangle and a second person at (30, 135, 50, 185) model-input pixels,
# which a 640×360 picture letterboxed into 320×320 (scale 0.5, 70 px padding on top) puts at (60, 130, 100, 230).
EXPECTED = [[200, 100, 300, 300, 0.9], [60, 130, 100, 230, 0.7]]


@pytest.mark.parametrize("layout", ["yolov8", "yolov5"])
def test_torchscript_model_boxes_decoded_into_picture_pixels(tiny_model, layout: str) -> None:
    path = tiny_model("torchscript", layout)
    detector = make_detector(DetectorConfig(backend="torchscript", model=str(path), input_size=320))
    boxes = detector.detect(picture_with_box(640, 360, (200, 100, 300, 300)))
    assert boxes.dtype == np.float32 and boxes.shape == (2, 5)
    np.testing.assert_allclose(boxes, EXPECTED, atol=2.5)
    assert detector.info.backend == "torchscript" and detector.info.device == "cpu"


def test_torchscript_accepts_channels_first_tensors(tiny_model) -> None:
    detector = make_detector(DetectorConfig(backend="torchscript", model=str(tiny_model("torchscript")),
                                            input_size=320))
    picture = torch.from_numpy(picture_with_box(640, 360, (200, 100, 300, 300))).permute(2, 0, 1)
    np.testing.assert_allclose(detector.detect(picture), EXPECTED, atol=2.5)


def test_missing_model_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="needs a model path"):
        make_detector(DetectorConfig(backend="torchscript"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_detector(DetectorConfig(backend="torchscript", model=str(tmp_path / "nope.pt")))
    with pytest.raises(ValueError, match="unknown vibrio backend"):
        make_detector(DetectorConfig(backend="yolo"))


#: Three streams' pictures of two shapes, each with its bright rectangle somewhere else.
STREAMS = [((640, 360), (200, 100, 300, 300)), ((360, 640), (100, 200, 200, 500)), ((640, 360), (400, 50, 480, 200))]


class OneAtATime(torch.nn.Module):
    """A model traced for a batch of exactly one picture (as many real exports are)."""

    def __init__(self) -> None:
        super().__init__()
        from .conftest import TinyYolo

        self.inner = TinyYolo()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.reshape(1, 3, x.shape[-2], x.shape[-1]))


def test_several_streams_go_through_the_model_in_one_call(tiny_model) -> None:
    detector = make_detector(DetectorConfig(backend="torchscript", model=str(tiny_model("torchscript")),
                                            input_size=320))
    pictures = [(picture_with_box(w, h, box), f"s{i}") for i, ((w, h), box) in enumerate(STREAMS)]
    apart = [detector.detect(image, key) for image, key in pictures]
    runs = detector.runs  # type: ignore[attr-defined]
    together = detector.detect_many(pictures)  # type: ignore[attr-defined]
    assert detector.runs == runs + 1, "one model call for the three pictures"  # type: ignore[attr-defined]
    for one, other, (_, box) in zip(together, apart, STREAMS, strict=True):
        np.testing.assert_allclose(one, other, atol=1e-3)
        np.testing.assert_allclose(one[0, :4], box, atol=2.5)  # each picture's own rectangle, not a neighbour's


def test_a_model_for_one_picture_gets_a_batch_one_by_one(tmp_path, caplog) -> None:
    from .conftest import export

    path = export(OneAtATime(), tmp_path / "one.pt", "torchscript")
    detector = make_detector(DetectorConfig(backend="torchscript", model=str(path), input_size=320))
    pictures = [(picture_with_box(w, h, box), f"s{i}") for i, ((w, h), box) in enumerate(STREAMS)]
    boxes = detector.detect_many(pictures)  # type: ignore[attr-defined]
    assert detector.single_only and "takes one picture per call" in caplog.text  # type: ignore[attr-defined]
    for found, (_, box) in zip(boxes, STREAMS, strict=True):
        np.testing.assert_allclose(found[0, :4], box, atol=2.5)
