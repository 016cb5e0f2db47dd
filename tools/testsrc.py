#!/usr/bin/env python
"""Write a synthetic test video (H.264 mp4) and its per-frame ground truth (JSON) — see flowgraph.nodes.synth.

    .venv/bin/python tools/testsrc.py --width 1280 --height 720 --fps 30 --seconds 10 --people 3 --seed 1 \\
        --appearance figure --out /tmp/scene.mp4        # also writes /tmp/scene.json
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--people", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--appearance", choices=("figure", "photo"), default="figure")
    ap.add_argument("--background", choices=("field", "track", "photo", "plain"), default="field")
    ap.add_argument("--gait", choices=("walk", "run", "mixed"), default="mixed")
    ap.add_argument("--paths", choices=("line", "diagonal", "curve", "mixed"), default="mixed")
    ap.add_argument("--speed-variation", type=float, default=0.15)
    ap.add_argument("--bitrate", type=int, default=2_000_000, help="bits per second (default 2 Mbit/s)")
    ap.add_argument("--no-stamp", action="store_true", help="leave out the frame-counter/capture-time stamp")
    ap.add_argument("--t0-ms", type=int, default=None, help="capture time of frame 0 (default: now)")
    ap.add_argument("--truth", default=None, help="ground-truth JSON path (default: OUT with .json)")
    ap.add_argument("--out", required=True, help="mp4 path to write")
    args = ap.parse_args(argv)

    from flowgraph.nodes.synth import Scene, SceneConfig
    from flowgraph.nodes.synth.export import write_video

    try:
        config = SceneConfig(width=args.width, height=args.height, fps=args.fps, people=args.people, seed=args.seed,
                             appearance=args.appearance, background=args.background, gait=args.gait,
                             paths=args.paths, speed_variation=args.speed_variation, stamp=not args.no_stamp,
                             t0_ms=int(time.time() * 1000) if args.t0_ms is None else args.t0_ms)
    except ValueError as e:
        print(f"testsrc: {e}", file=sys.stderr)
        return 2
    frames = max(1, round(args.seconds * args.fps))
    truth = write_video(Scene(config), args.out, frames, truth_path=args.truth, bitrate=args.bitrate)
    print(f"wrote {args.out} ({frames} frames) and {truth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
