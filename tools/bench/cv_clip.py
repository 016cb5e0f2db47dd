"""vibrio on real footage: detector and tracker settings scored against hand labels, with their cost.

Every configuration runs the vibrio node over the opencv-doc clip ``vtest.avi`` (768×576, 10 fps) in order, from
frame 0, analysing every ``stride``-th frame — stride 1 is a file run on ``block`` edges; stride 2 or 5 is what a
``latest`` edge gives when analysis takes 2 or 5 frame intervals (the frames in between are never seen, exactly as
live). Scored:

* at the 13 hand-labelled frames (``tests/nodes/vibrio/data/vtest_people.json``, 82 people): recall of all people
  and of the "main" ones (≥ 50 px, whole, unoccluded), precision and false boxes per labelled person — for the raw
  detections (score ≥ 0.5) and for the confirmed tracks a viewer sees;
* identities, on frames 180–270 every 10th (``vtest_tracks.json``: 70 people, 9 identities followed by hand):
  identity switches, IDF1 and MOTA from ``motmetrics`` (a person is matched within half their height, as for
  recall); and how many track ids the whole run issued (~27 people cross the clip);
* cost: wall and CPU ms per analysed frame (median after 20 frames; CPU time of every thread of the process) and
  crops per frame (blazepose).

The baselines run in the same process and the same sitting: ``motion`` (background subtraction) and ``hog``.
Labels come from one clip: settings that win here are tuned on it, and the table says so.

    nice -n 10 .venv/bin/python tools/bench/cv_clip.py                 # every configuration (~20 min idle)
    nice -n 10 .venv/bin/python tools/bench/cv_clip.py --configs blazepose motion --strides 1 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "nodes" / "vibrio"))

from clip_eval import CLIP_TIME_BASE, Score, clip_frames, labels  # noqa: E402

TRACKS = ROOT / "tests" / "nodes" / "vibrio" / "data" / "vtest_tracks.json"

#: name -> vibrio params. ``blazepose`` is the shipped default; the others change one thing each.
CONFIGS: dict[str, dict[str, Any]] = {
    "blazepose": {"backend": "blazepose"},
    "blazepose overlap-only tentative": {"backend": "blazepose", "tentative_speed": 0},
    "blazepose min_hits 2": {"backend": "blazepose", "min_hits": 2},
    "blazepose score 0.4": {"backend": "blazepose", "blazepose_min_score": 0.4},
    "blazepose score 0.6": {"backend": "blazepose", "blazepose_min_score": 0.6},
    "blazepose crop x1.6": {"backend": "blazepose", "crop_factor": 1.6},
    "blazepose crop x2.6": {"backend": "blazepose", "crop_factor": 2.6},
    "blazepose tiles 192": {"backend": "blazepose", "crops": "tiles", "tile_size": 192},
    "blazepose nms 0.4": {"backend": "blazepose", "blazepose_nms_iou": 0.4},
    "blazepose nms 0.5": {"backend": "blazepose", "blazepose_nms_iou": 0.5},
    "motion": {"backend": "motion", "min_hits": 3},
    "hog": {"backend": "hog"},
}
DEFAULT_CONFIGS = ["blazepose", "blazepose overlap-only tentative", "blazepose min_hits 2", "blazepose score 0.4",
                   "blazepose crop x1.6", "blazepose tiles 192", "motion", "hog"]
WARMUP = 20


@dataclass
class Result:
    config: str
    stride: int
    detections: Score
    tracks: Score
    det_boxes: int
    track_boxes: int
    switches: int
    idf1: float
    mota: float
    id_people: int
    track_ids: int
    ms: float
    cpu_ms: float
    crops: float
    load: tuple[float, float, float]


def identity_labels() -> dict[int, list[dict[str, Any]]]:
    data = json.loads(TRACKS.read_text())
    return {int(k): v for k, v in data["frames"].items()}


def distances(people: list[dict[str, Any]], boxes: np.ndarray) -> np.ndarray:
    """Centre distance in units of each person's height; NaN beyond half a height (no match possible)."""
    out = np.full((len(people), len(boxes)), np.nan)
    for i, p in enumerate(people):
        for j, b in enumerate(boxes):
            d = float(np.hypot((b[0] + b[2]) / 2 - p["c"][0], (b[1] + b[3]) / 2 - p["c"][1])) / p["h"]
            if d <= 0.5:
                out[i, j] = d
    return out


def run(name: str, params: dict[str, Any], stride: int, last: int, threads: int) -> Result:
    import motmetrics as mm

    from flowgraph.messages import VideoFrame
    from flowgraph.node import NodeContext
    from flowgraph.nodes.vibrio.node import Vibrio
    from flowgraph.params import validate

    data = labels()
    people = {int(k): v for k, v in data["frames"].items()}
    identities = identity_labels()
    node = Vibrio(NodeContext(name="vibrio"), validate(Vibrio.Params, {"threads": threads, **params}))
    asyncio.run(node.start())
    detections, tracks = Score(), Score()
    det_boxes = track_boxes = 0
    acc = mm.MOTAccumulator(auto_id=False)
    ids: set[int] = set()
    wall: list[float] = []
    cpu: list[float] = []
    crops_before = 0
    try:
        for index, picture in clip_frames(data["clip"], last):
            if index % stride:
                continue  # never seen, as behind a latest edge
            frame = VideoFrame(image=picture, frame_id=index, pts=index, time_base=CLIP_TIME_BASE, stream_id="vtest")
            started, cpu_started = time.perf_counter(), time.process_time()
            out = node.process(frame)
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
            if len(wall) == WARMUP:
                crops_before = getattr(node.detector, "crops_run", 0)
            ids.update(t.track_id for t in out.tracks)
            track_array = np.array([t.bbox for t in out.tracks], np.float32).reshape(-1, 4)
            if index in people:
                raw = np.array([d.bbox for d in out.detections if d.score >= 0.5], np.float32).reshape(-1, 4)
                detections.add(index, people[index], raw, (1.0, 1.0))
                tracks.add(index, people[index], track_array, (1.0, 1.0))
                det_boxes += len(raw)
                track_boxes += len(track_array)
            if index in identities:
                truth = identities[index]
                acc.update([ord(p["id"]) for p in truth], [t.track_id for t in out.tracks],  # ids as ints (pandas)
                           distances(truth, track_array), frameid=index)
        crops = (getattr(node.detector, "crops_run", 0) - crops_before) / max(1, len(wall) - WARMUP)
    finally:
        asyncio.run(node.stop())
    summary = mm.metrics.create().compute(acc, metrics=["num_switches", "idf1", "mota"], name=name)
    return Result(config=name, stride=stride, detections=detections, tracks=tracks, det_boxes=det_boxes,
                  track_boxes=track_boxes, switches=int(summary["num_switches"].iloc[0]),
                  idf1=float(summary["idf1"].iloc[0]), mota=float(summary["mota"].iloc[0]),
                  id_people=sum(len(v) for v in identities.values()), track_ids=len(ids), ms=_median_ms(wall),
                  cpu_ms=_median_ms(cpu), crops=crops, load=os.getloadavg())


def _median_ms(seconds: list[float]) -> float:
    steady = sorted(seconds[WARMUP:]) or sorted(seconds)
    return 1000 * steady[len(steady) // 2] if steady else 0.0


def _precision(score: Score, boxes: int) -> float:
    return (boxes - score.false_boxes) / boxes if boxes else 0.0


HEADER = ("| config | stride | det recall all / main | det precision | track recall all / main | track precision | "
          "false tracks / person | ID switches | IDF1 | MOTA | track ids | ms/frame wall | ms/frame CPU | crops | "
          "load 1-min |")


def row(r: Result) -> str:
    d, t = r.detections, r.tracks
    crops = f"{r.crops:.1f}" if r.crops else "—"
    return (f"| {r.config} | {r.stride} | {d.recall:.2f} / {d.main_recall:.2f} | {_precision(d, r.det_boxes):.2f} | "
            f"{t.recall:.2f} / {t.main_recall:.2f} | {_precision(t, r.track_boxes):.2f} | {t.false_per_person:.2f} | "
            f"{r.switches} | {r.idf1:.2f} | {r.mota:.2f} | {r.track_ids} | {r.ms:.0f} | {r.cpu_ms:.0f} | {crops} | "
            f"{r.load[0]:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS))
    parser.add_argument("--strides", nargs="+", type=int, default=[1, 5], choices=[1, 2, 5, 10],
                        help="analyse every Nth frame (labelled frames are multiples of 10)")
    parser.add_argument("--last", type=int, default=760, help="last frame (the last labelled frame is 760)")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT/torch/OpenCV threads")
    parser.add_argument("--out", type=Path, help="also write the table (.txt) and results (.json) here, no suffix")
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(args.threads)
    lines = [f"vibrio on vtest.avi (native 768x576, frames 0-{args.last}), {args.threads} thread(s), "
             f"load before {tuple(round(v, 1) for v in os.getloadavg())}, nice {os.nice(0)}",
             HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    print("\n".join(lines), flush=True)
    results = []
    for stride in args.strides:
        for name in args.configs:
            result = run(name, CONFIGS[name], stride, args.last, args.threads)
            results.append(result)
            lines.append(row(result))
            print(lines[-1], flush=True)
    lines.append(f"load after {tuple(round(v, 1) for v in os.getloadavg())}; labelled people: 82 in 13 frames "
                 f"(recall/precision), {results[0].id_people if results else 0} in 10 frames with identities")
    print(lines[-1])
    if args.out:
        args.out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
        args.out.with_suffix(".json").write_text(json.dumps([{
            "config": r.config, "params": CONFIGS[r.config], "stride": r.stride,
            "det_recall": r.detections.recall, "det_main_recall": r.detections.main_recall,
            "det_precision": _precision(r.detections, r.det_boxes), "track_recall": r.tracks.recall,
            "track_main_recall": r.tracks.main_recall, "track_precision": _precision(r.tracks, r.track_boxes),
            "false_tracks_per_person": r.tracks.false_per_person, "id_switches": r.switches, "idf1": r.idf1,
            "mota": r.mota, "track_ids": r.track_ids, "ms": r.ms, "cpu_ms": r.cpu_ms, "crops": r.crops,
            "load": r.load} for r in results], indent=1) + "\n")


if __name__ == "__main__":
    main()
