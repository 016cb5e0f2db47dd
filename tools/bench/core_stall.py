"""A stalled consumer behind a drop_oldest edge: memory must stay flat while drops are counted.

A 30 fps 1280x720 RGB source allocates a fresh frame buffer for every frame (so a leak would show at once,
≈ 2.6 MB per frame, ≈ 80 MB/s) and feeds a consumer that takes 10 s per message. RSS is sampled each second;
the table shows growth against the first sample taken after start-up, beside the frames produced and dropped.

    python tools/bench/core_stall.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import psutil

from flowgraph.testing import compile_text, running

GRAPH = """
nodes:
  cam: {node: frames, params: {width: 1280, height: 720, fps: 30, pool: 0}}
  stuck:
    node: slow
    params: {delay_s: 10}
    inputs: {inp: {from: cam/frames, policy: drop_oldest, queue: 4}}
"""


async def main(seconds: int) -> int:
    process = psutil.Process()
    async with running(compile_text(GRAPH), drain_timeout=0.5) as runtime:
        await asyncio.sleep(1.0)
        base = process.memory_info().rss
        print(f"{'t (s)':>6} {'RSS MB':>8} {'growth MB':>10} {'frames':>8} {'dropped':>8} {'queued':>7}")
        peak = 0.0
        for t in range(1, seconds + 1):
            await asyncio.sleep(1.0)
            rss = process.memory_info().rss
            growth = (rss - base) / 1e6
            peak = max(peak, growth)
            edge = runtime.snapshot()["edges"][0]
            if t % 5 == 0 or t == seconds:
                print(f"{t:>6} {rss / 1e6:>8.1f} {growth:>10.1f} {edge['puts']:>8} {edge['drops']:>8}"
                      f" {edge['depth']:>7}")
    verdict = "ok" if peak < 20 else "FAILED"
    print(f"peak RSS growth {peak:.1f} MB over {seconds} s (goal < 20 MB): {verdict}")
    return 0 if peak < 20 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    sys.exit(asyncio.run(main(parser.parse_args().seconds)))
