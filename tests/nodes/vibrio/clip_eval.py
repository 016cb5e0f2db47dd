"""Scoring vibrio on the real clip against hand labels (tests/nodes/vibrio/data/vtest_people.json).

A labelled person is found when a box's centre lies within half the person's height of the labelled centre
(one box per person, closest first); a box that finds nobody in a labelled frame is a false box. ``main`` people
are those at least ``MIN_HEIGHT`` px tall, not cut by the picture border and not mostly hidden by someone else;
``all`` counts everyone labelled. Shared by the regression test and ``tools/bench/vibrio.py --clip``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from flowgraph.messages import VideoFrame
from flowgraph.node import NodeContext
from flowgraph.params import validate

LABELS = Path(__file__).parent / "data" / "vtest_people.json"
MIN_HEIGHT = 50
MATCH_RADIUS = 0.5  # of the labelled height
CLIP_TIME_BASE = Fraction(1, 10)  # the clip runs at 10 fps


def labels() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(LABELS.read_text())
    return data


def clip_frames(path: str, last: int, size: tuple[int, int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB picture) for frames 0..last of the clip, resized to ``size`` (w, h) when given."""
    with av.open(path) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index > last:
                break
            picture = frame.to_ndarray(format="rgb24")
            if size is not None:
                picture = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
            yield index, picture


@dataclass
class Score:
    people: int = 0
    found: int = 0
    false_boxes: int = 0
    main_people: int = 0
    main_found: int = 0
    misses: list[tuple[int, list[int]]] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found / max(1, self.people)

    @property
    def main_recall(self) -> float:
        return self.main_found / max(1, self.main_people)

    @property
    def false_per_person(self) -> float:
        return self.false_boxes / max(1, self.people)

    def add(self, frame: int, people: list[dict[str, Any]], boxes: np.ndarray, scale: tuple[float, float]) -> None:
        """Match one frame's boxes (picture pixels, scaled back to labelled pixels by ``scale``) to its people."""
        sx, sy = scale
        centres = [((b[0] + b[2]) / 2 / sx, (b[1] + b[3]) / 2 / sy) for b in boxes]
        pairs = sorted((np.hypot(cx - p["c"][0], cy - p["c"][1]) / p["h"], i, j)
                       for i, p in enumerate(people) for j, (cx, cy) in enumerate(centres))
        person_done: set[int] = set()
        box_done: set[int] = set()
        for distance, i, j in pairs:
            if distance > MATCH_RADIUS or i in person_done or j in box_done:
                continue
            person_done.add(i)
            box_done.add(j)
        self.people += len(people)
        self.found += len(person_done)
        self.false_boxes += len(boxes) - len(box_done)
        for i, p in enumerate(people):
            main = p["h"] >= MIN_HEIGHT and not p.get("edge") and not p.get("occluded")
            self.main_people += main
            self.main_found += main and i in person_done
            if i not in person_done:
                self.misses.append((frame, p["c"]))


@dataclass
class Run:
    """One backend over the clip: scores of its confirmed tracks and of its raw detections, cost, identities."""

    backend: str
    tracks: Score
    detections: Score
    ms_per_frame: float
    cpu_ms_per_frame: float
    track_ids: int
    frames: int
    load: tuple[float, float, float]


def run_backend(params: dict[str, Any], size: tuple[int, int] | None = None, last: int | None = None,
                min_score: float = 0.5, progress: Any = None) -> Run:
    """Run the vibrio node over the clip (every frame, in order) and score it at the labelled frames."""
    from flowgraph.nodes.vibrio.node import Vibrio

    data = labels()
    wanted = {int(k): v for k, v in data["frames"].items()}
    last = max(wanted) if last is None else last
    width, height = data["size"]
    scale = (size[0] / width, size[1] / height) if size else (1.0, 1.0)
    node = Vibrio(NodeContext(name="vibrio"), validate(Vibrio.Params, params))
    asyncio.run(node.start())
    tracks, detections = Score(), Score()
    ids: set[int] = set()
    times: list[float] = []
    cpu: list[float] = []
    try:
        for index, picture in clip_frames(data["clip"], last, size):
            frame = VideoFrame(image=picture, frame_id=index, pts=index, time_base=CLIP_TIME_BASE, stream_id="vtest")
            started, cpu_started = time.perf_counter(), time.process_time()
            out = node.process(frame)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
            ids.update(t.track_id for t in out.tracks)
            if progress is not None and index % 50 == 0:
                progress(index, 1000 * times[-1])
            if index in wanted:
                boxes = np.array([t.bbox for t in out.tracks], np.float32).reshape(-1, 4)
                tracks.add(index, wanted[index], boxes, scale)
                raw = np.array([d.bbox for d in out.detections if d.score >= min_score], np.float32).reshape(-1, 4)
                detections.add(index, wanted[index], raw, scale)
    finally:
        asyncio.run(node.stop())
    return Run(backend=str(params.get("backend")), tracks=tracks, detections=detections,
               ms_per_frame=_median_ms(times), cpu_ms_per_frame=_median_ms(cpu), track_ids=len(ids), frames=len(times),
               load=os.getloadavg())


def _median_ms(seconds: list[float]) -> float:
    steady = sorted(seconds[20:]) or sorted(seconds)  # after warm-up (model loading, background learning)
    return 1000 * steady[len(steady) // 2] if steady else 0.0
