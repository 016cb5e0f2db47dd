"""HOG backend on real pedestrian footage (OpenCV's vtest.avi, shipped by Debian's opencv-doc)."""

from __future__ import annotations

import av
import numpy as np
import pytest

from flowgraph.nodes.vibrio.detector import DetectorConfig, make_detector

from .conftest import VTEST

# People in frame 100 of vtest.avi (768×576), annotated by hand: x1, y1, x2, y2.
FRAME_100_PEOPLE = [(348, 198, 380, 275), (375, 178, 410, 256), (428, 185, 450, 258), (493, 148, 520, 220),
                    (515, 150, 542, 220), (590, 152, 618, 235), (222, 60, 238, 95)]


@pytest.fixture(scope="module")
def vtest_frames() -> dict[int, np.ndarray]:
    assert VTEST.is_file(), f"{VTEST} is missing: install Debian's opencv-doc package (./quickstart does)"
    wanted = {40, 100, 160, 220}
    frames: dict[int, np.ndarray] = {}
    with av.open(str(VTEST)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames[index] = frame.to_ndarray(format="rgb24")
            if index >= max(wanted):
                break
    return frames


def test_hog_finds_the_annotated_people(vtest_frames: dict[int, np.ndarray]) -> None:
    detector = make_detector(DetectorConfig(backend="hog", detect_width=768, hog_upscale=1.5))
    boxes = detector.detect(vtest_frames[100])
    unmatched = list(range(len(boxes)))
    found = 0
    for x1, y1, x2, y2 in FRAME_100_PEOPLE:  # one detection per person: centre inside, similar height
        cx, cy, h = (x1 + x2) / 2, (y1 + y2) / 2, y2 - y1
        for i in unmatched:
            bx1, by1, bx2, by2, _ = boxes[i]
            if bx1 <= cx <= bx2 and by1 <= cy <= by2 and 0.6 <= (by2 - by1) / h <= 2.5:
                unmatched.remove(i)
                found += 1
                break
    assert found >= 5, (found, boxes.round().tolist())
    assert len(unmatched) <= 2  # false positives (the parked van is one)


def test_hog_boxes_are_sane_across_the_clip(vtest_frames: dict[int, np.ndarray]) -> None:
    detector = make_detector(DetectorConfig(backend="hog", detect_width=768, hog_upscale=1.5))
    plausible = total = 0
    for index, image in vtest_frames.items():
        boxes = detector.detect(image)
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= 768).all() and (boxes[:, 3] <= 576).all()
        assert ((boxes[:, 4] > 0) & (boxes[:, 4] <= 1)).all()
        heights = boxes[:, 3] - boxes[:, 1]
        aspect = heights / (boxes[:, 2] - boxes[:, 0])
        person_sized = (heights > 40) & (heights < 160) & (aspect > 1.5) & (aspect < 3)  # walkers: 35-110 px
        assert person_sized.sum() >= 2, f"frame {index}: fewer than two walkers found: {boxes.round().tolist()}"
        plausible += int(person_sized.sum())
        total += len(boxes)
    assert plausible >= 0.8 * total


def test_tiny_pictures_give_no_detections() -> None:
    detector = make_detector(DetectorConfig(backend="hog", detect_width=0))
    assert detector.detect(np.zeros((100, 50, 3), np.uint8)).shape == (0, 5)
    assert detector.detect(np.zeros((360, 640, 3), np.uint8)).shape == (0, 5)  # black: nothing to find
