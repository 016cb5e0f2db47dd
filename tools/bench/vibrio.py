"""vibrio: milliseconds per frame (detector + tracker + speed, the node's whole ``process``) per backend.

Frames are rendered by ``flowgraph.nodes.synth`` at 640×360 and 1280×720 with 1 and 8 people. Rows:

* baseline: the node fed the scene's true boxes instead of a detector — tracker, calibration and speed alone,
  measured in the same run;
* hog: OpenCV's people detector at the node's defaults (pictures resized to 640 px wide);
* motion: background subtraction in torch at the defaults (640 px wide);
* blazepose: BlazePose's trained person detector via LiteRT over motion-guided crops (the synthetic people are
  drawn figures, so its tracks here say little; its accuracy is measured on the real clip, below);
* onnx / torchscript: a random-weight stand-in shaped like a small YOLO detector (640×640 input, strides
  8/16/32, (1, 84, 8400) output, 4.9 GFLOPs where YOLOv8n has 8.7); it finds nothing, so its figure is the
  model's and the decoding's cost with an empty tracker. No weights are downloaded.

The goal on a CPU with 2 cores is ≤ 33 ms/frame at 640×360 (real time at 30 fps). Each figure is the median
over the frames after a warm-up. On a shared machine the numbers are noisy: run it on an idle one to quote them.

    python tools/bench/vibrio.py [--frames 30] [--threads 2] [--backends baseline hog motion blazepose onnx ...]
    python tools/bench/vibrio.py --clip [--size 640x360] [--backends hog motion blazepose]

``--streams 1 2 4`` measures several streams analysed in one batched call (``Vibrio.process_batch``, what the
runtime calls with the newest frame of each stream) against the same frames one at a time, interleaved step by
step in the same run (two nodes, same pictures: N synthetic 640×360 scenes with 2 people each, different seeds):
wall and CPU ms per frame per stream, and the batched call's share of the one-at-a-time cost. Backends with a
batched model call: ``blazepose`` (all crops of all pictures in one LiteRT call) and ``torchscript`` (the stand-in
above, its pictures stacked into one forward; ``onnx`` here is exported for a batch of one, so it runs one by one).

    python tools/bench/vibrio.py --streams 1 2 4 [--backends blazepose torchscript] [--frames 30]

``--graph`` runs the same through the runtime instead: N synthetic sources at ``--fps`` each on ``latest`` edges
into one vibrio node (on a worker thread, in this process) with ``max_batch: 8`` and with ``max_batch: 1`` (which
goes first alternates), for ``--seconds`` each: analysed frames per second per stream, the mean batch the runner
formed, and this process's CPU per analysed frame.

    python tools/bench/vibrio.py --streams 1 2 4 --graph [--fps 10] [--seconds 12]

``--clip`` runs the backends over the real pedestrian clip (opencv-doc ``vtest.avi``, 795 frames, resized to
``--size``; ``native`` keeps 768×576) and scores them against the hand labels of
``tests/nodes/vibrio/data/vtest_people.json``: recall and false boxes per labelled person of the confirmed tracks,
wall and CPU ms/frame (median; CPU time counts every thread, so it is the figure to read on a loaded machine),
and how many track ids were issued.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _report import record

from flowgraph.messages import VideoFrame
from flowgraph.node import Node, NodeContext
from flowgraph.nodes.core.utility import paced
from flowgraph.nodes.synth import Scene, SceneConfig
from flowgraph.nodes.vibrio.detector import Detector, DetectorInfo
from flowgraph.nodes.vibrio.node import Vibrio
from flowgraph.params import param, validate
from flowgraph.ports import Output

SIZES = ((640, 360), (1280, 720))
PEOPLE = (1, 8)
BACKENDS = ("baseline", "hog", "motion", "blazepose", "onnx", "torchscript")


class TruthDetector(Detector):
    """Returns the boxes the bench stored for this frame: the node's cost without a detector."""

    def __init__(self) -> None:
        self.current = np.zeros((0, 5), np.float32)
        self.info = DetectorInfo("truth", "cpu")

    def detect(self, image: Any, key: str = "default") -> np.ndarray:
        return self.current


class YoloStandIn(torch.nn.Module):
    """Conv stages and heads shaped like YOLOv8n (strides 8/16/32, 84 outputs per anchor), random weights."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> torch.nn.Sequential:
            return torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 3, stride, 1), torch.nn.SiLU(),
                                       torch.nn.Conv2d(cout, cout, 3, 1, 1), torch.nn.SiLU())

        self.stem = torch.nn.Sequential(block(3, 16, 2), block(16, 32, 2), block(32, 64, 2))  # stride 8
        self.down16 = block(64, 128, 2)
        self.down32 = block(128, 256, 2)
        self.heads = torch.nn.ModuleList(torch.nn.Sequential(block(c, 64, 1), torch.nn.Conv2d(64, 84, 1))
                                         for c in (64, 128, 256))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p8 = self.stem(x)
        p16 = self.down16(p8)
        p32 = self.down32(p16)
        outs = [head(p).flatten(2) for head, p in zip(self.heads, (p8, p16, p32), strict=True)]
        out = torch.cat(outs, 2)
        return torch.cat([out[:, :4], torch.sigmoid(out[:, 4:]) * 0.01], 1)  # low scores: nothing detected


def export_models(folder: Path) -> dict[str, Path]:
    model = YoloStandIn().eval()
    example = torch.zeros(1, 3, 640, 640)
    paths = {"torchscript": folder / "standin.pt", "onnx": folder / "standin.onnx"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, example), str(paths["torchscript"]))
        torch.onnx.export(model, (example,), str(paths["onnx"]), dynamo=False, input_names=["images"],
                          output_names=["output"])
    return paths


def render(width: int, height: int, people: int, frames: int) -> tuple[Scene, list[tuple[np.ndarray, Any]]]:
    scene = Scene(SceneConfig(width=width, height=height, people=people, seed=11))
    return scene, [scene.render(i) for i in range(frames)]


def measure(backend: str, scene: Scene, rendered: list[tuple[np.ndarray, Any]], models: dict[str, Path],
            threads: int, warmup: int) -> tuple[float, float]:
    """Median ms/frame after ``warmup`` frames, and mean tracks reported per frame."""
    params: dict[str, Any] = {"backend": "hog" if backend == "baseline" else backend,
                              "calibration": scene.calibration, "threads": threads}
    if backend in models:
        params["model"] = str(models[backend])
    node = Vibrio(NodeContext("vibrio"), validate(Vibrio.Params, params))
    asyncio.run(node.start())
    truth = TruthDetector()
    if backend == "baseline":
        node.detector = truth
    times, tracks = [], []
    for index, (image, frame_truth) in enumerate(rendered):
        truth.current = np.array([[*p.bbox, 0.9] for p in frame_truth.people if p.visible_fraction > 0.3],
                                 np.float32).reshape(-1, 5)
        frame = VideoFrame(image=image, frame_id=index, pts=index, t_capture=index / 30)
        started = time.perf_counter()
        result = node.process(frame)
        elapsed = (time.perf_counter() - started) * 1000
        if index >= warmup:
            times.append(elapsed)
            tracks.append(len(result.tracks))
    asyncio.run(node.stop())
    return statistics.median(times), float(np.mean(tracks))


def streams_table(backends: list[str], counts: list[int], frames: int, warmup: int, threads: int,
                  models: dict[str, Path]) -> None:
    """ms per frame per stream, N streams batched vs one at a time, interleaved in the same run."""
    import os

    print(f"vibrio: N streams of 640x360 (2 people each) in one batched call vs one frame at a time, interleaved "
          f"per step in the same run; {threads} threads, {frames} steps after {warmup} warm-up; load before "
          f"{tuple(round(v, 1) for v in os.getloadavg())} (taken under load: shared 2-core machine)")
    print("| backend | streams | batched ms/frame wall | one at a time ms/frame wall | batched ms/frame CPU | "
          "one at a time ms/frame CPU | batched / one at a time (CPU) | batched model calls per step | load after |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = []
    for backend, count in ((b, c) for b in backends for c in counts):
        scenes = [Scene(SceneConfig(width=640, height=360, people=2, seed=11 + k)) for k in range(count)]
        rendered = [[scene.render(i)[0] for i in range(frames + warmup)] for scene in scenes]
        given: dict[str, Any] = {"backend": backend, "threads": threads}
        if backend in models:
            given["model"] = str(models[backend])
        params = validate(Vibrio.Params, given)
        together, apart = Vibrio(NodeContext("batched"), params), Vibrio(NodeContext("single"), params)
        asyncio.run(together.start())
        asyncio.run(apart.start())
        runs_before = 0
        wall = {"batched": 0.0, "single": 0.0}
        cpu = {"batched": 0.0, "single": 0.0}
        for step in range(frames + warmup):
            batch = [VideoFrame(image=rendered[k][step], stream_id=f"s{k}", frame_id=step, pts=step,
                                time_base=Fraction(1, 30)) for k in range(count)]
            if step == warmup:
                runs_before = getattr(together.detector, "runs", 0)
            for mode in ("batched", "single") if step % 2 else ("single", "batched"):  # alternate who goes first
                started, cpu_started = time.perf_counter(), time.process_time()
                if mode == "batched":
                    together.process_batch(batch)
                else:
                    for frame in batch:
                        apart.process(frame)
                if step >= warmup:
                    wall[mode] += time.perf_counter() - started
                    cpu[mode] += time.process_time() - cpu_started
        calls = (getattr(together.detector, "runs", 0) - runs_before) / frames
        asyncio.run(together.stop())
        asyncio.run(apart.stop())
        per = {mode: 1000 * wall[mode] / (frames * count) for mode in wall}
        per_cpu = {mode: 1000 * cpu[mode] / (frames * count) for mode in cpu}
        ratio = per_cpu["batched"] / per_cpu["single"]
        load = os.getloadavg()
        print(f"| {backend} | {count} | {per['batched']:.1f} | {per['single']:.1f} | {per_cpu['batched']:.1f} | "
              f"{per_cpu['single']:.1f} | {ratio:.2f} | {calls:.1f} | {load[0]:.1f} |", flush=True)
        results.append({"backend": backend, "streams": count, "batched_ms": per["batched"], "single_ms": per["single"],
                        "batched_cpu_ms": per_cpu["batched"], "single_cpu_ms": per_cpu["single"],
                        "model_calls_per_step": calls, "load": load})
    record("vibrio_streams", results)


class SceneSource(Node):
    """A synthetic stream for ``--graph``: pre-rendered pictures of one scene, sent in a loop at ``fps``."""

    frames = Output(VideoFrame)

    @dataclass
    class Params:
        stream_id: str = param("s0", "stream id")
        seed: int = param(11, "scene seed", minimum=0)
        fps: float = param(10.0, "frames per second", minimum=0.1)
        pictures: int = param(60, "pictures rendered before start, then sent in a loop", minimum=1)

    async def start(self) -> None:
        scene = Scene(SceneConfig(width=640, height=360, people=2, seed=self.params.seed))
        self.pictures = [scene.render(i)[0] for i in range(self.params.pictures)]

    async def run(self) -> None:
        p = self.params
        async for n in paced(self, p.fps, 0):
            await self.frames.send(VideoFrame(image=self.pictures[n % len(self.pictures)], stream_id=p.stream_id,
                                              frame_id=n, pts=n, time_base=Fraction(1, round(p.fps))))


async def graph_case(backend: str, count: int, max_batch: int, fps: float, seconds: float, threads: int
                     ) -> dict[str, Any]:
    """One graph run: N scene sources into vibrio (thread) with ``max_batch``; figures over ``seconds``."""
    import os

    from flowgraph.registry import Registry
    from flowgraph.testing import compile_text, running

    registry = Registry.default()
    registry.register("scene_source", SceneSource)
    sources = "\n".join(f"  s{k}: {{node: scene_source, params: {{stream_id: s{k}, seed: {11 + k}, fps: {fps}}}}}"
                        for k in range(count))
    wires = ", ".join(f"{{from: s{k}/frames, policy: latest}}" for k in range(count))
    plan = compile_text(f"""
nodes:
{sources}
  vibrio:
    node: vibrio
    isolation: thread
    max_batch: {max_batch}
    params: {{backend: {backend}, threads: {threads}}}
    inputs: {{frames: [{wires}]}}
  sink: {{node: collect, params: {{keep: 0}}, inputs: {{inp: vibrio/tracks}}}}
""", registry=registry)
    async with running(plan, ready_timeout=300) as rt:
        runner = rt.runners["vibrio"]
        await asyncio.sleep(3.0)  # the model's first calls, the tracker's first frames
        done, cpu, wall = runner.stats.processed, time.process_time(), time.perf_counter()
        calls = runner.stats.batch.calls if runner.stats.batch is not None else 0
        await asyncio.sleep(seconds)
        analysed = runner.stats.processed - done
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        calls = (runner.stats.batch.calls if runner.stats.batch is not None else 0) - calls
    return {"backend": backend, "streams": count, "max_batch": max_batch, "fps_per_stream": analysed / wall / count,
            "mean_batch": analysed / calls if calls else 1.0, "cpu_ms": 1000 * cpu / max(analysed, 1),
            "load": os.getloadavg()}


def graph_table(backends: list[str], counts: list[int], fps: float, seconds: float, threads: int) -> None:
    import os

    print(f"vibrio in a graph: N synthetic 640x360 streams at {fps:g} fps each on latest edges into one vibrio "
          f"(worker thread, {threads} threads), max_batch 8 and 1, {seconds:g} s each; load before "
          f"{tuple(round(v, 1) for v in os.getloadavg())} (taken under load: shared 2-core machine)")
    print("| backend | streams | max_batch | mean batch | analysed fps per stream | CPU ms per analysed frame "
          "(whole process) | load after |")
    print("|---|---|---|---|---|---|---|")
    results = []
    cases = [(b, c, m) for b in backends for i, c in enumerate(counts) for m in ((8, 1) if i % 2 == 0 else (1, 8))]
    for backend, count, max_batch in cases:  # who goes first alternates: the load on a shared host drifts
        row = asyncio.run(graph_case(backend, count, max_batch, fps, seconds, threads))
        print(f"| {backend} | {count} | {max_batch} | {row['mean_batch']:.2f} | {row['fps_per_stream']:.1f} | "
              f"{row['cpu_ms']:.1f} | {row['load'][0]:.1f} |", flush=True)
        results.append(row)
    record("vibrio_graph_streams", results)


def clip_table(backends: list[str], size: tuple[int, int] | None, threads: int) -> None:
    import os
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "nodes" / "vibrio"))
    from clip_eval import run_backend

    label = "native 768x576" if size is None else f"{size[0]}x{size[1]}"
    print(f"vibrio on vtest.avi ({label}), {threads} threads, load before {os.getloadavg()}")
    print("| backend | recall (all) | recall (main) | false boxes / person | ms/frame wall | ms/frame CPU | "
          "track ids | load after |")
    print("|---|---|---|---|---|---|---|---|")
    results = []
    for backend in backends:
        run = run_backend({"backend": backend, "threads": threads}, size=size)
        t = run.tracks
        print(f"| {backend} | {t.recall:.2f} ({t.found}/{t.people}) | {t.main_recall:.2f} "
              f"({t.main_found}/{t.main_people}) | {t.false_per_person:.2f} ({t.false_boxes}) | "
              f"{run.ms_per_frame:.1f} | {run.cpu_ms_per_frame:.1f} | {run.track_ids} | "
              f"{run.load[0]:.1f} |", flush=True)
        results.append({"backend": backend, "size": label, "recall": t.recall, "main_recall": t.main_recall,
                        "false_per_person": t.false_per_person, "ms": run.ms_per_frame,
                        "cpu_ms": run.cpu_ms_per_frame, "track_ids": run.track_ids, "load": run.load})
    record("vibrio_clip", results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="frames measured per case (after warm-up)")
    parser.add_argument("--warmup", type=int, default=12, help="frames before measuring (motion learns its "
                        "background in the first 10)")
    parser.add_argument("--threads", type=int, default=2, help="torch/onnxruntime/OpenCV threads")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--clip", action="store_true", help="score backends on the real clip against hand labels")
    parser.add_argument("--size", default="640x360", help="--clip: picture size WxH, or native")
    parser.add_argument("--streams", type=int, nargs="+", help="N streams batched vs one at a time (e.g. 1 2 4)")
    parser.add_argument("--graph", action="store_true", help="--streams through the runtime (max_batch 8 vs 1)")
    parser.add_argument("--fps", type=float, default=10.0, help="--graph: frames per second of each stream")
    parser.add_argument("--seconds", type=float, default=12.0, help="--graph: measured seconds per case")
    args = parser.parse_args()
    import cv2

    if args.streams:
        backends = [b for b in args.backends if b in ("blazepose", "onnx", "torchscript")] if args.backends != list(
            BACKENDS) else ["blazepose", "torchscript"]
        if args.graph:
            graph_table([b for b in backends if b == "blazepose"] or ["blazepose"], args.streams, args.fps,
                        args.seconds, args.threads)
            return
        with tempfile.TemporaryDirectory() as tmp:
            models = export_models(Path(tmp)) if {"onnx", "torchscript"} & set(backends) else {}
            streams_table(backends, args.streams, args.frames, args.warmup, args.threads, models)
        return

    if args.clip:
        backends = [b for b in args.backends if b in ("hog", "motion", "blazepose")] if args.backends != list(
            BACKENDS) else ["hog", "motion", "blazepose"]
        size = None if args.size == "native" else tuple(int(v) for v in args.size.split("x"))
        clip_table(backends, size, args.threads)  # type: ignore[arg-type]
        return

    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        models = export_models(Path(tmp)) if {"onnx", "torchscript"} & set(args.backends) else {}
        cases = [(w, h, n) for (w, h) in SIZES for n in PEOPLE]
        scenes = {case: render(*case, args.frames + args.warmup) for case in cases}
        header = " | ".join(f"{w}x{h} {n}p" for w, h, n in cases)
        print(f"vibrio ms/frame (median; tracks/frame in brackets), {args.threads} threads, "
              f"{args.frames} frames after {args.warmup} warm-up")
        print(f"| backend | {header} |")
        print("|---|" + "---|" * len(cases))
        results = []
        for backend in args.backends:
            cells = []
            for case in cases:
                scene, rendered = scenes[case]
                ms, tracks = measure(backend, scene, rendered, models, args.threads, args.warmup)
                results.append({"backend": backend, "width": case[0], "height": case[1], "people": case[2],
                                "ms": ms, "tracks": tracks})
                cells.append(f"{ms:.2f} ({tracks:.1f})" if ms < 1 else f"{ms:.1f} ({tracks:.1f})")
            print(f"| {backend} | " + " | ".join(cells) + " |", flush=True)
    print("goal: <= 33 ms/frame at 640x360 on 2 CPU cores (detector + tracker)")
    record("vibrio", results)


if __name__ == "__main__":
    main()
