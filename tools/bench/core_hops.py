"""Per-hop overhead of flowgraph edges beside a plain asyncio.Queue chain, measured in the same run.

One message is in flight at a time (a ping through the chain), so the figure is latency, not throughput.
Prints p50/p99 µs per hop for small messages and 1280x720x3 frames through 1, 4 and 8 hops.

    python tools/bench/core_hops.py [--messages 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import record

from flowgraph.context import Key
from flowgraph.messages import Data, Message
from flowgraph.node import Node
from flowgraph.ports import Input, Output
from flowgraph.registry import Registry
from flowgraph.runtime import Runtime
from flowgraph.testing import compile_text


@dataclass
class Bench:
    """What the pinger and the sink share in one run."""

    payload: Any
    messages: int
    latencies: list[float] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    t0: float = 0.0
    same_object: bool = True


BENCH: Key[Bench] = Key("bench.core_hops")


def _unset() -> Bench:
    raise RuntimeError("place the Bench in runtime.scope before running")


class Pinger(Node):
    """Sends one message, waits until the sink has it, repeats."""

    out = Output(Data)

    async def run(self) -> None:
        bench = self.ctx.shared(BENCH, _unset)
        payload = bench.payload
        for i in range(bench.messages):
            bench.arrived.clear()
            bench.t0 = time.perf_counter()
            await self.out.send(Data(value=payload, frame_id=i))
            await bench.arrived.wait()


class Relay(Node):
    """An async pass-through hop (queued, not fused)."""

    inp = Input(Message)
    out = Output(Message, follows="inp")

    async def process(self, msg: Message) -> None:
        await self.out.send(msg)


class Sink(Node):
    inp = Input(Data)

    async def start(self) -> None:
        self.bench = self.ctx.shared(BENCH, _unset)

    async def process(self, msg: Data) -> None:
        bench = self.bench
        bench.latencies.append(time.perf_counter() - bench.t0)
        bench.same_object &= msg.value is bench.payload
        bench.arrived.set()


def graph(hops: int) -> str:
    lines = ["nodes:", "  src: {node: pinger}"]
    previous = "src/out"
    for i in range(hops - 1):
        lines.append(f"  r{i}: {{node: relay, inputs: {{inp: {{from: {previous}, policy: block, queue: 4}}}}}}")
        previous = f"r{i}/out"
    lines.append(f"  sink: {{node: sink, inputs: {{inp: {{from: {previous}, policy: block, queue: 4}}}}}}")
    return "\n".join(lines) + "\n"


async def flowgraph_chain(hops: int, payload: Any, messages: int) -> tuple[list[float], bool]:
    registry = Registry.default()
    for name, cls in (("pinger", Pinger), ("relay", Relay), ("sink", Sink)):
        registry.register(name, cls)
    runtime = Runtime(compile_text(graph(hops), registry=registry), port=0)
    bench = runtime.scope.shared(BENCH, lambda: Bench(payload, messages))
    await runtime.run(install_signals=False)
    return bench.latencies, bench.same_object


async def queue_chain(hops: int, payload: Any, messages: int) -> list[float]:
    queues = [asyncio.Queue(maxsize=4) for _ in range(hops)]
    arrived = asyncio.Event()
    latencies: list[float] = []
    t0 = 0.0

    async def relay(src: asyncio.Queue, dst: asyncio.Queue) -> None:
        while True:
            await dst.put(await src.get())

    async def sink(src: asyncio.Queue) -> None:
        while True:
            await src.get()
            latencies.append(time.perf_counter() - t0)
            arrived.set()

    tasks = [asyncio.create_task(relay(queues[i], queues[i + 1])) for i in range(hops - 1)]
    tasks.append(asyncio.create_task(sink(queues[-1])))
    for i in range(messages):
        arrived.clear()
        t0 = time.perf_counter()
        await queues[0].put((i, payload))
        await arrived.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return latencies


def per_hop_us(latencies: list[float], hops: int) -> tuple[float, float]:
    data = sorted(x / hops * 1e6 for x in latencies[len(latencies) // 10:])  # skip warm-up
    return statistics.median(data), data[min(len(data) - 1, int(len(data) * 0.99))]


async def main(messages: int) -> int:
    payloads = {"small": 42, "720p frame": np.zeros((720, 1280, 3), dtype=np.uint8)}
    print(f"per-hop latency, one message in flight, {messages} messages per row (p50 / p99 µs per hop)")
    print(f"{'payload':<11} {'hops':>4} | {'flowgraph p50':>13} {'p99':>7} | {'asyncio.Queue p50':>17} {'p99':>7} |"
          f" {'ratio p50':>9} | zero-copy")
    worst = 0.0
    rows = []
    for label, payload in payloads.items():
        for hops in (1, 4, 8):
            fg, same = await flowgraph_chain(hops, payload, messages)
            base = await queue_chain(hops, payload, messages)
            (f50, f99), (b50, b99) = per_hop_us(fg, hops), per_hop_us(base, hops)
            ratio = f50 / b50
            worst = max(worst, f50)
            print(f"{label:<11} {hops:>4} | {f50:>13.1f} {f99:>7.1f} | {b50:>17.1f} {b99:>7.1f} | {ratio:>8.2f}x |"
                  f" {'yes' if same else 'NO'}")
            rows.append({"payload": label, "hops": hops, "flowgraph_p50_us": f50, "flowgraph_p99_us": f99,
                         "queue_p50_us": b50, "queue_p99_us": b99, "zero_copy": same})
    print(f"goal: p50 <= 20 µs per hop and <= 1.5x the plain chain; worst flowgraph p50 here: {worst:.1f} µs")
    record("core_hops", rows)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.messages)))
