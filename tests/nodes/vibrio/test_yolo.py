"""YOLO decoding, letterbox and the torch-only NMS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowgraph.nodes.vibrio.yolo import box_iou, decode, letterbox, nms, postprocess


def greedy_reference(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Textbook greedy NMS, one box at a time."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        best = order.pop(0)
        keep.append(int(best))
        ious = box_iou(torch.tensor(boxes[[best]]), torch.tensor(boxes[order])).numpy()[0] if order else []
        order = [o for o, iou in zip(order, ious, strict=True) if iou <= threshold]
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_textbook_greedy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (120, 2))
    wh = rng.uniform(10, 60, (120, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 120).astype(np.float32)
    kept = nms(torch.tensor(boxes), torch.tensor(scores), 0.45).tolist()
    assert kept == greedy_reference(boxes, scores, 0.45)
    assert 5 < len(kept) < 120  # the random set really had overlaps to suppress


def test_nms_chain_keeps_the_box_its_suppressor_lost_to() -> None:
    # A suppresses B, B would suppress C, but A does not overlap C: greedy keeps A and C.
    boxes = torch.tensor([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.3).tolist() == [0, 2]
    assert nms(boxes[:0], scores[:0], 0.3).numel() == 0


def test_letterbox_maps_boxes_back_to_the_picture() -> None:
    image = torch.zeros(3, 360, 640, dtype=torch.uint8)
    x, box = letterbox(image, 320)
    assert x.shape == (1, 3, 320, 320)
    assert (box.scale, box.pad_x, box.pad_y) == (0.5, 0.0, 70.0)
    back = box.to_picture(torch.tensor([[100.0, 120.0, 150.0, 220.0]]))
    assert back.tolist() == [[200.0, 100.0, 300.0, 300.0]]
    assert float(x[0, 0, 0, 0]) == pytest.approx(114 / 255)  # grey padding above the picture


def test_decode_layouts_agree() -> None:
    rows = torch.zeros(10, 6)  # 10 anchors, 2 classes
    rows[:2] = torch.tensor([[50.0, 60.0, 20.0, 40.0, 0.8, 0.1], [10.0, 10.0, 4.0, 4.0, 0.2, 0.9]])
    v8_boxes, v8_scores = decode(rows.t()[None], "auto")  # (1, 6, 10): channels first → yolov8
    assert v8_boxes.tolist()[0] == [40.0, 40.0, 60.0, 80.0]
    assert v8_scores[:2].tolist() == pytest.approx([0.8, 0.2])
    objectness = torch.full((10, 1), 1.0)
    objectness[0] = 0.5
    v5 = torch.cat([rows[:, :4], objectness, rows[:, 4:]], 1)[None]  # (1, 10, 7)
    v5_boxes, v5_scores = decode(v5, "auto")
    assert torch.equal(v5_boxes, v8_boxes)
    assert v5_scores[:2].tolist() == pytest.approx([0.4, 0.2])
    e2e = torch.tensor([[[1.0, 2.0, 3.0, 4.0, 0.9, 0.0], [5.0, 6.0, 7.0, 8.0, 0.8, 2.0]]])
    boxes, scores = decode(e2e, "end2end")
    assert boxes.tolist() == [[1.0, 2.0, 3.0, 4.0]] and scores.tolist() == pytest.approx([0.9])


def test_decode_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="layout"):
        decode(torch.zeros(1, 6, 10), "yolov9")
    with pytest.raises(ValueError, match="class 3"):
        decode(torch.zeros(1, 6, 10), "yolov8", person_class=3)
    with pytest.raises(ValueError, match="shape"):
        decode(torch.zeros(2, 6, 10), "auto")


def test_postprocess_thresholds_suppresses_and_clips() -> None:
    _, box = letterbox(torch.zeros(3, 360, 640, dtype=torch.uint8), 320)
    rows = torch.zeros(8, 5)
    rows[:4] = torch.tensor([[125.0, 170.0, 50.0, 100.0, 0.9], [127.0, 172.0, 50.0, 100.0, 0.6],
                             [310.0, 170.0, 40.0, 100.0, 0.5], [60.0, 60.0, 20.0, 20.0, 0.05]])
    out = postprocess(rows.t()[None], box, layout="yolov8", person_class=0, score_threshold=0.1, iou_threshold=0.45)
    assert out.shape == (2, 5)
    assert out[0].tolist() == pytest.approx([200.0, 100.0, 300.0, 300.0, 0.9])
    assert float(out[1, 2]) == 640.0  # the box hanging off the right edge is clipped to the picture
