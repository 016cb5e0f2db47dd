"""Regression test on real footage: vibrio's backends against hand-labelled people of opencv-doc's vtest.avi.

Labels (tests/nodes/vibrio/data/vtest_people.json) give 82 people in 13 frames spread over the 80-second clip.
For speed, each labelled frame is reached through its own short run-up (``RUN_UP`` frames before it) on its own
stream of one node, and all 13 streams' frames of a step go through :meth:`Vibrio.analyse` together — so the
test also checks that several streams are detected in one batched model call with their states kept apart.
The whole-clip figures (every frame in order, ms/frame, track ids) are in docs/benchmarks/cv.md, measured by
``tools/bench/vibrio.py --clip``.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flowgraph.messages import VideoFrame
from flowgraph.node import NodeContext
from flowgraph.nodes.vibrio.node import Vibrio
from flowgraph.params import validate

from .clip_eval import Score, clip_frames, labels

RUN_UP = 12
MOTION_RUN_UP = 24  # background learning (10 frames) + tracker confirmation
TB = Fraction(1, 10)


@pytest.fixture(scope="module")
def clip() -> dict[int, np.ndarray]:
    data = labels()
    assert Path(data["clip"]).is_file(), f"{data['clip']} is missing: ./quickstart installs Debian's opencv-doc"
    wanted = {int(k) for k in data["frames"]}
    needed = {i for f in wanted for i in range(f - MOTION_RUN_UP, f + 1)}
    return {i: picture for i, picture in clip_frames(data["clip"], max(wanted)) if i in needed}


def segmented(params: dict[str, Any], clip: dict[int, np.ndarray],
              run_up: int = RUN_UP) -> tuple[Score, Score, dict[str, Any]]:
    """Scores of tracks and of detections (score >= 0.5) at every labelled frame, reached by run-ups."""
    data = labels()
    people = {int(k): v for k, v in data["frames"].items()}
    node = Vibrio(NodeContext(name="vibrio"), validate(Vibrio.Params, params))
    asyncio.run(node.start())
    tracks, detections = Score(), Score()
    try:
        for step in range(run_up + 1):
            frames = [VideoFrame(image=clip[f - run_up + step], frame_id=f - run_up + step, pts=f - run_up + step,
                                 time_base=TB, stream_id=f"at{f}") for f in people]
            for frame, out in zip(frames, node.analyse(frames), strict=True):
                assert out.stream_id == frame.stream_id and out.frame_id == frame.frame_id
                if step == run_up:
                    f = frame.frame_id
                    tracks.add(f, people[f], np.array([t.bbox for t in out.tracks], np.float32).reshape(-1, 4),
                               (1.0, 1.0))
                    raw = [d.bbox for d in out.detections if d.score >= 0.5]
                    detections.add(f, people[f], np.array(raw, np.float32).reshape(-1, 4), (1.0, 1.0))
        facts = {"runs": getattr(node.detector, "runs", None), "streams": node.counters()["streams"]}
    finally:
        asyncio.run(node.stop())
    return tracks, detections, facts


@pytest.mark.timeout(1500)  # 13 streams x 13 frames x ~10 crops: ~15 s on an idle 2-core machine, far more loaded
def test_blazepose_finds_the_labelled_people(clip: dict[int, np.ndarray]) -> None:
    tracks, detections, facts = segmented({"backend": "blazepose", "threads": 1}, clip)
    print(f"blazepose tracks recall {tracks.recall:.2f} main {tracks.main_recall:.2f} false/person "
          f"{tracks.false_per_person:.2f}; detections recall {detections.recall:.2f} false/person "
          f"{detections.false_per_person:.2f}; misses {tracks.misses}")
    assert tracks.recall >= RECALL_BLAZEPOSE and tracks.false_per_person <= FALSE_BLAZEPOSE
    assert detections.recall >= 0.78 and detections.false_per_person <= FALSE_BLAZEPOSE
    assert facts["runs"] <= 2 * (RUN_UP + 1)  # 13 streams per step: one batched call per pass (two passes)
    assert facts["streams"] == len(labels()["frames"])


@pytest.mark.timeout(900)
def test_motion_finds_most_labelled_people(clip: dict[int, np.ndarray]) -> None:
    tracks, _, _ = segmented({"backend": "motion", "threads": 1}, clip, run_up=MOTION_RUN_UP)
    print(f"motion tracks recall {tracks.recall:.2f} false/person {tracks.false_per_person:.2f}")
    assert tracks.recall >= RECALL_MOTION and tracks.false_per_person <= FALSE_MOTION


def test_hog_misses_most_of_them(clip: dict[int, np.ndarray]) -> None:
    """HOG is the fallback of last resort: this pins how little it finds here, so a change is noticed."""
    from flowgraph.nodes.vibrio.detector import DetectorConfig
    from flowgraph.nodes.vibrio.hog import HogDetector

    detector = HogDetector(DetectorConfig(backend="hog"))
    score = Score()
    for f, people in labels()["frames"].items():
        boxes = detector.detect(clip[int(f)])
        score.add(int(f), people, boxes[boxes[:, 4] >= 0.5, :4], (1.0, 1.0))
    print(f"hog detections recall {score.recall:.2f} false/person {score.false_per_person:.2f}")
    assert RECALL_HOG_RANGE[0] <= score.recall <= RECALL_HOG_RANGE[1]

# Measured when written (docs/benchmarks/cv.md): blazepose tracks 0.78 recall (0.86 of the main people), 0.00 false
# boxes per person, detections 0.84 / 0.05; motion tracks 0.76 / 0.09 (20-frame run-ups); HOG detections 0.18.
RECALL_BLAZEPOSE, FALSE_BLAZEPOSE = 0.72, 0.1
RECALL_MOTION, FALSE_MOTION = 0.6, 0.2
RECALL_HOG_RANGE = (0.05, 0.4)
