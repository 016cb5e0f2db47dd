"""Live edits: graph file saved → new behaviour in effect, beside a full restart of the same graph.

A graph runs in this process with ``flowgraph run --watch``'s file watcher. Each case rewrites the file and times
until the change is observable on the running graph:

* live param (``slow.delay_s``, declared live): the node's params hold the new value (no restart);
* param that restarts a node (``slow.mode``): a new instance of the node has processed a message;
* node added (a ``collect`` fed by the source): it has received a message;
* vibrio backend swapped (motion → hog, no model file to load): the new vibrio has analysed a frame;
* baseline, same run: stop the whole graph and start it again from the edited file until the same node has
  processed a message — what an edit costs without live re-wiring.

Goals (issue 17): ≤ 500 ms for a param change, ≤ 2 s for a node swap without model loading.

    python tools/bench/live_edit.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _report import record

from flowgraph.live import LiveGraph, unfused
from flowgraph.runtime import Runtime
from flowgraph.testing import compile_text, running

BASE = """
name: live-bench
nodes:
  t: {node: tick, params: {hz: 100}}
  s: {node: slow, params: {delay_s: 0.001}, inputs: {inp: {from: t/out, policy: drop_oldest, queue: 4}}}
  c: {node: collect, params: {keep: 100}, inputs: {inp: s/out}}
  f: {node: frames, params: {width: 640, height: 360, fps: 15}}
  v: {node: vibrio, params: {backend: motion}, inputs: {frames: {from: f/frames, policy: latest}}}
"""


async def until(check: Callable[[], bool], timeout: float = 30.0) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise TimeoutError("the change never showed")
        await asyncio.sleep(0.002)
    return time.perf_counter() - started


def processed(rt: Runtime, name: str) -> int:
    runner = rt.runners.get(name)
    return runner.stats.processed if runner is not None else -1


async def edit_case(path: Path, rt: Runtime, text: str, done: Callable[[], bool]) -> float:
    started = time.perf_counter()
    path.write_text(text)  # noqa: ASYNC240 — the save is what is timed, as an editor does it
    await until(done)
    return time.perf_counter() - started


async def live_cases(path: Path) -> dict[str, float]:
    path.write_text(BASE)  # noqa: ASYNC240
    async with running(unfused(compile_text(BASE))) as rt:
        rt.live = LiveGraph(rt, str(path), BASE)
        watcher = asyncio.create_task(rt.live.watch(path))
        try:
            await until(lambda: processed(rt, "v") > 2 and processed(rt, "s") > 10)
            out: dict[str, float] = {}
            slow = rt.runners["s"].node
            out["live param (slow.delay_s)"] = await edit_case(
                path, rt, BASE.replace("delay_s: 0.001", "delay_s: 0.002"),
                lambda: rt.runners["s"].node.params.delay_s == 0.002)
            assert rt.runners["s"].node is slow
            text = BASE.replace("delay_s: 0.001", "delay_s: 0.002").replace("delay_s: 0.002}", "delay_s: 0.002, "
                                                                            "mode: busy}")
            out["restart a node (slow.mode)"] = await edit_case(
                path, rt, text, lambda: rt.runners["s"].node is not slow and processed(rt, "s") > 0)
            text += "  d: {node: collect, inputs: {inp: t/out}}\n"
            out["add a node (collect)"] = await edit_case(path, rt, text, lambda: processed(rt, "d") > 0)
            vibrio = rt.runners["v"].node
            out["swap vibrio backend (motion → hog)"] = await edit_case(
                path, rt, text.replace("backend: motion", "backend: hog"),
                lambda: rt.runners["v"].node is not vibrio and processed(rt, "v") > 0)
            return out
        finally:
            watcher.cancel()


async def restart_baseline(text: str) -> float:
    """Stop a running graph and start the edited one until vibrio analysed a frame (what users do without
    live edits)."""
    async with running(compile_text(BASE)) as rt:
        await until(lambda: processed(rt, "v") > 2)
        started = time.perf_counter()
    async with running(compile_text(text)) as rt:
        await until(lambda: processed(rt, "v") > 0)
        return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="2 repeats")
    args = ap.parse_args()
    repeat = 2 if args.quick else args.repeat
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "graph.yaml"
        for _ in range(repeat):  # interleaved with the baseline: both see the same spells of load
            for name, seconds in asyncio.run(live_cases(path)).items():
                runs.setdefault(name, []).append(seconds)
            runs.setdefault("baseline: restart the whole graph (hog)", []).append(
                asyncio.run(restart_baseline(BASE.replace("backend: motion", "backend: hog"))))
    print(f"graph file saved → change in effect (watcher polls every 50 ms); median and max of {repeat}; "
          f"{os.cpu_count()} cores (load {os.getloadavg()[0]:.1f})\n")
    print(f"{'edit':<44}{'median ms':>11}{'max ms':>9}")
    for name, values in runs.items():
        print(f"{name:<44}{statistics.median(values) * 1000:>11.0f}{max(values) * 1000:>9.0f}")
    record("live_edit", runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
