#!/usr/bin/env python
"""Synthetic scene render cost: ms per frame at 640x360 and 1280x720 with 1, 3 and 8 people.

Baseline measured in the same run: copying the background into the frame buffer (the floor any render pays).
Also reports ``scene.truth(i)`` (ground truth without drawing). Numbers are noisy on a shared machine.

    .venv/bin/python tools/bench/synth_render.py [--frames 90]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from flowgraph.nodes.synth import Scene, SceneConfig


def _time(fn: object, frames: int) -> tuple[float, float]:
    samples = []
    for i in range(frames):
        t = time.perf_counter()
        fn(i)  # type: ignore[operator]
        samples.append((time.perf_counter() - t) * 1e3)
    return statistics.median(samples), float(np.percentile(samples, 95))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--appearance", default="figure")
    args = ap.parse_args()
    print(f"{'size':>10} {'people':>6} {'copy bg p50':>11} {'render p50':>10} {'render p95':>10} {'truth p50':>9}"
          f" {'in view':>7}")
    for w, h in ((640, 360), (1280, 720)):
        for n in (1, 3, 8):
            scene = Scene(SceneConfig(width=w, height=h, people=n, seed=1, appearance=args.appearance))
            buf, _ = scene.render(0)
            bg = scene.background
            copy50, _ = _time(lambda i, buf=buf, bg=bg: np.copyto(buf, bg), args.frames)

            def render(i: int, scene: Scene = scene, buf: np.ndarray = buf) -> None:
                scene.render(i, out=buf)

            r50, r95 = _time(render, args.frames)
            t50, _ = _time(scene.truth, args.frames)
            seen = statistics.mean(len(scene.truth(i).people) for i in range(0, args.frames, 10))
            print(f"{w}x{h:<5} {n:>6} {copy50:>9.2f}ms {r50:>8.2f}ms {r95:>8.2f}ms {t50:>7.2f}ms {seen:>7.1f}")


if __name__ == "__main__":
    main()
