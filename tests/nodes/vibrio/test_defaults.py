"""Defaults that find people: ``backend: auto`` and what ``validate --plan`` says about it; ``ignore_regions``."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flowgraph.cli import main
from flowgraph.messages import VideoFrame
from flowgraph.node import NodeContext
from flowgraph.nodes.vibrio.choose import choose_backend
from flowgraph.nodes.vibrio.detector import DetectorInfo
from flowgraph.nodes.vibrio.node import Vibrio
from flowgraph.params import validate

ROOT = Path(__file__).resolve().parents[3]
TB = Fraction(1, 90_000)
DEMO_STAMP = [[0, 0], [250, 0], [250, 130], [0, 130]]


def test_auto_prefers_a_model_file_then_the_trained_detector_then_motion() -> None:
    assert choose_backend("auto", "fixed", "/models/yolo.onnx")[0] == "onnx"
    assert choose_backend("auto", "moving", "/models/net.pt")[0] == "torchscript"
    backend, why = choose_backend("auto", "fixed")
    assert backend == "blazepose" and "LiteRT" in why and "motion-guided" in why  # installed by ./quickstart
    assert "tile grid" in choose_backend("auto", "moving")[1]
    assert choose_backend("hog", "fixed") == ("hog", "set in the graph")


def test_auto_falls_back_when_litert_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowgraph.nodes.vibrio import blazepose

    monkeypatch.setattr(blazepose, "available", lambda: "ai-edge-litert is not installed")
    assert choose_backend("auto", "fixed") == ("motion", "auto: fixed camera, background subtraction "
                                                         "(ai-edge-litert is not installed)")
    assert choose_backend("auto", "moving")[0] == "hog"


def test_validate_plan_says_which_detector_and_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "graphs" / "demo.yaml"), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "detector: motion (set in the graph)" in out and "ignores 1 region(s)" in out
    graph = tmp_path / "auto.yaml"
    graph.write_text("name: auto\nnodes:\n  src: {node: frames, params: {count: 1}}\n"
                     "  vibrio: {node: vibrio, inputs: {frames: src/frames}}\n")
    assert main(["validate", str(graph), "--plan"]) == 0
    assert "detector: blazepose (auto: trained BlazePose person detector via LiteRT" in capsys.readouterr().out


class FixedBoxes:
    """A detector that reports the same boxes every frame: one on the demo's stamp, one person elsewhere."""

    info = DetectorInfo("fixed", "cpu")

    def detect(self, image: Any, key: str = "default") -> np.ndarray:
        return np.array([[20, 10, 200, 110, 0.9], [600, 300, 660, 460, 0.9]], np.float32)

    def forget(self, key: str) -> None:
        return None

    def close(self) -> None:
        return None


def test_ignore_regions_drop_what_moves_in_them() -> None:
    node = Vibrio(NodeContext(name="vibrio"), validate(Vibrio.Params, {"backend": "hog", "min_hits": 1,
                                                                       "ignore_regions": [DEMO_STAMP]}))
    asyncio.run(node.start())
    node.detector = FixedBoxes()  # type: ignore[assignment]
    picture = np.zeros((720, 1280, 3), np.uint8)
    for i in range(5):
        out = node.process(VideoFrame(image=picture, frame_id=i, pts=i * 3000, time_base=TB, stream_id="demo"))
    asyncio.run(node.stop())
    assert [d.bbox for d in out.detections] == [(600.0, 300.0, 660.0, 460.0)]
    assert len(out.tracks) == 1 and node.counters()["ignored"] == 5


def test_the_demo_masks_its_frame_stamp() -> None:
    import yaml

    demo = yaml.safe_load((ROOT / "graphs" / "demo.yaml").read_text())
    camera, vibrio = demo["nodes"]["camera"]["params"], demo["nodes"]["vibrio"]["params"]
    cell = camera["height"] / 48  # synth.stamp: 16 x 8 cells of H/48 px in the top-left corner
    region = np.asarray(vibrio["ignore_regions"][0])
    assert region[:, 0].max() >= 16 * cell and region[:, 1].max() >= 8 * cell and region.min() <= 0


def test_bad_ignore_regions_are_refused() -> None:
    from flowgraph.errors import ParamsError

    with pytest.raises(ParamsError):
        validate(Vibrio.Params, {"ignore_regions": [[[0, 0], [10, 10]]]})  # two corners: not a polygon
    with pytest.raises(ParamsError):
        validate(Vibrio.Params, {"ignore_regions": [[[0, 0, 1], [10, 10], [5, 5]]]})
    assert np.asarray(validate(Vibrio.Params, {"ignore_regions": [DEMO_STAMP]}).ignore_regions).shape == (1, 4, 2)
