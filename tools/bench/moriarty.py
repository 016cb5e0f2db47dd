"""moriarty: milliseconds per 1280x720 frame for 1, 4 and 8 tracked people, beside a no-model baseline.

Frames come from ``flowgraph.nodes.synth`` (rendered runners and walkers) and the tracks are the scene's true
boxes, so the figure is moriarty's own cost: crops, model, decoding, gating, smoothing, angles, gait, GRF. Rows:

* baseline: the node with a backend that returns the scene's exact keypoints (no crops, no model) - the cost of
  the biomechanics alone, measured in the same run;
* mediapipe: the bundled BlazePose (complexity 1) in static-image mode, one detector + landmark pass per person;
* mediapipe tracking: one video-mode graph per person (the detector runs only when tracking is lost).

Each person's figure is the median over the frames after a warm-up; ``found`` is the share of people that got
a pose. On a shared machine the numbers are noisy: run it on an idle one for figures you quote.

    python tools/bench/moriarty.py [--frames 40] [--people 1 4 8] [--threads 0]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from _report import record

from flowgraph.messages import VideoFrame
from flowgraph.node import NodeContext
from flowgraph.nodes.moriarty.backend import PoseBackend
from flowgraph.nodes.moriarty.node import Moriarty
from flowgraph.nodes.moriarty.skeleton import BLAZEPOSE33
from flowgraph.nodes.vibrio.messages import Track, Tracks


class TruthBackend(PoseBackend):
    """Returns the keypoints the bench stored for this frame: biomechanics cost without a model."""

    name = "truth"
    skeleton = BLAZEPOSE33

    def __init__(self) -> None:
        self.current: list[np.ndarray] = []

    def infer(self, image: Any, boxes: np.ndarray | None, keys: Sequence[Hashable] | None = None
              ) -> list[np.ndarray | None]:
        return list(self.current[: len(boxes) if boxes is not None else 1])


def scene_frames(people: int, frames: int) -> list[tuple[np.ndarray, Any]]:
    from flowgraph.nodes.synth import Scene, SceneConfig

    scene = Scene(SceneConfig(width=1280, height=720, people=people, seed=7, min_person_px=180))
    return [scene.render(i) for i in range(frames)]


async def measure(kind: str, rendered: list[tuple[np.ndarray, Any]], warmup: int) -> tuple[float, float, float]:
    params = Moriarty.Params(backend="mediapipe", tracking=(kind == "mediapipe tracking"), max_people=16)
    node = Moriarty(NodeContext(name="pose"), params)
    truth_backend = TruthBackend()
    if kind == "baseline":
        node._make_backend = lambda: truth_backend
    await node.start()
    times, found, total = [], 0, 0
    for i, (image, truth) in enumerate(rendered):
        people = truth.people
        truth_backend.current = [np.array([(*p.keypoints[n][:2], 0.99) for n in BLAZEPOSE33.names]) for p in people]
        frame = VideoFrame(image=image, frame_id=i, t_capture=i / 30.0)
        msg = Tracks(tracks=[Track(track_id=p.person_id, bbox=p.bbox, foot_world=p.foot_world) for p in people],
                     frame=frame).like(frame)
        started = time.perf_counter()
        out = node.process(msg)
        elapsed = (time.perf_counter() - started) * 1000
        if i >= warmup:
            times.append(elapsed)
            total += len(people)
            found += len(out.poses) if out is not None else 0
    await node.stop()
    return statistics.median(times), float(np.percentile(times, 95)), found / max(total, 1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--people", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    rows = []
    for people in args.people:
        rendered = scene_frames(people, args.frames)
        for kind in ("baseline", "mediapipe", "mediapipe tracking"):
            p50, p95, found = await measure(kind, rendered, args.warmup)
            rows.append((people, kind, p50, p95, found))
            print(f"  {people} people, {kind}: {p50:.1f} ms", flush=True)
    print(f"\nmoriarty, 1280x720, {args.frames - args.warmup} frames per row (median and p95 ms per frame)")
    print(f"{'people':>6}  {'backend':<20} {'p50 ms':>8} {'p95 ms':>8} {'found':>6}")
    for people, kind, p50, p95, found in rows:
        print(f"{people:>6}  {kind:<20} {p50:>8.1f} {p95:>8.1f} {found:>6.0%}")
    record("moriarty", [{"people": people, "backend": kind, "p50_ms": p50, "p95_ms": p95, "found": found}
                        for people, kind, p50, p95, found in rows])


if __name__ == "__main__":
    asyncio.run(main())
