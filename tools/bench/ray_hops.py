"""Per-hop cost of a node placed on Ray beside a bare Ray actor call and flowgraph's in-process channel, same run.

One message in flight at a time (a ping through source → node → sink), so the figures are latency, not throughput:
small messages and 1280x720 RGB frames, the node a pass-through (``burn`` with ms 0: the frame goes to the actor,
a reference comes back). Then a CPU-bound node (``burn``, 20 ms a message) on Ray with 1 and 2 replicas
(round_robin), messages as fast as the replicas take them. Ray runs privately inside a network namespace (loopback
only; needs root), like the tests. Prints ``os.getloadavg()``: figures taken on a shared machine are upper bounds.

    python tools/bench/ray_hops.py [--messages 400] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import record, unavailable_row

from flowgraph import netns
from flowgraph.context import Key
from flowgraph.messages import Data, Message, VideoFrame
from flowgraph.node import Node
from flowgraph.ports import Input, Output
from flowgraph.registry import Registry
from flowgraph.runtime import Runtime
from flowgraph.testing import compile_text


@dataclass
class Ping:
    payload: Any
    messages: int
    latencies: list[float] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    t0: float = 0.0


PING: Key[Ping] = Key("bench.ray_hops")


def _unset() -> Ping:
    raise RuntimeError("place the Ping in runtime.scope before running")


class Pinger(Node):
    """Sends one message, waits until the sink has it, repeats."""

    out = Output(Message)

    async def run(self) -> None:
        ping = self.ctx.shared(PING, _unset)
        for i in range(ping.messages):
            ping.arrived.clear()
            ping.t0 = time.perf_counter()
            payload = ping.payload
            msg = VideoFrame(image=payload, frame_id=i) if isinstance(payload, np.ndarray) else Data(value=payload,
                                                                                                     frame_id=i)
            await self.out.send(msg)
            await ping.arrived.wait()


class Sink(Node):
    inp = Input(Message)

    async def start(self) -> None:
        self.ping = self.ctx.shared(PING, _unset)

    async def process(self, msg: Message) -> None:
        self.ping.latencies.append(time.perf_counter() - self.ping.t0)
        self.ping.arrived.set()


def _registry() -> Registry:
    registry = Registry.default()
    registry.register("ray_pinger", Pinger)
    registry.register("ray_sink", Sink)
    return registry


CLUSTER = "cluster: {engine: ray}\n"


def ping_graph(where: str) -> str:
    placement = {"ray": "placement: {resources: {CPU: 1}}, ", "process": "isolation: process, ",
                 "thread": "isolation: thread, "}[where]
    return ((CLUSTER if where == "ray" else "") + "nodes:\n  src: {node: ray_pinger}\n"
            f"  hop: {{node: burn, nice: 0, params: {{ms: 0}}, {placement}inputs: {{inp: {{from: src/out, "
            "policy: block, queue: 4}}}\n"
            "  sink: {node: ray_sink, inputs: {inp: {from: hop/out, policy: block, queue: 4}}}\n")


async def flowgraph_ping(where: str, payload: Any, messages: int) -> list[float]:
    runtime = Runtime(compile_text(ping_graph(where), registry=_registry()), port=0)
    ping = runtime.scope.shared(PING, lambda: Ping(payload, messages))
    await runtime.run(install_signals=False)
    return ping.latencies


class Bare:
    """The baseline: a Ray actor whose method takes the payload and returns nothing."""

    def hop(self, payload: Any) -> None:
        return None


async def bare_ray_ping(payload: Any, messages: int) -> list[float]:
    import ray

    actor = ray.remote(num_cpus=1)(Bare).remote()
    await actor.hop.remote(None)
    latencies = []
    for _ in range(messages):
        t0 = time.perf_counter()
        await actor.hop.remote(payload)
        latencies.append(time.perf_counter() - t0)
    ray.kill(actor)
    return latencies


def p50_p99_ms(latencies: list[float]) -> tuple[float, float]:
    data = sorted(x * 1000 for x in latencies[len(latencies) // 10:])  # skip warm-up
    return statistics.median(data), data[min(len(data) - 1, int(len(data) * 0.99))]


async def throughput(replicas: int, seconds: float) -> float:
    """Messages per second through a 20 ms CPU-bound node on Ray with ``replicas`` replicas."""
    text = (CLUSTER + "nodes:\n  src: {node: tick, params: {hz: 0}}\n"
            f"  cv: {{node: burn, nice: 0, params: {{ms: 20}}, placement: {{replicas: {replicas}, "
            "shard_by: round_robin, resources: {CPU: 1}}, inputs: {inp: {from: src/out, policy: block, queue: 4}}}\n"
            "  out: {node: collect, params: {keep: 1}, inputs: {inp: cv/out}}\n")
    runtime = Runtime(compile_text(text), port=0)
    task = asyncio.ensure_future(runtime.run(install_signals=False))
    await asyncio.wait_for(runtime.ready.wait(), 240)
    sink = runtime.runners["out"].node
    await asyncio.sleep(2.0)  # warm-up
    start, count0 = time.monotonic(), sink.count  # type: ignore[attr-defined]
    await asyncio.sleep(seconds)
    rate = (sink.count - count0) / (time.monotonic() - start)  # type: ignore[attr-defined]
    runtime.request_stop()
    await task
    return float(rate)


async def measure(messages: int, seconds: float) -> int:
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False, configure_logging=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    try:
        load = os.getloadavg()
        print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2-core host shared with other "
              f"engineers: upper bounds)")
        payloads = {"small": 42, "720p frame": np.zeros((720, 1280, 3), dtype=np.uint8)}
        rows = []
        print(f"\none message in flight, {messages} per row, ms per hop (source → node → sink, p50 / p99)")
        print(f"{'payload':<11} | {'flowgraph on Ray':>16} {'p99':>6} | {'bare Ray call':>13} {'p99':>6} | "
              f"{'process island':>14} {'p99':>6} | {'in-process':>10} {'p99':>6} | Ray ÷ bare")
        for label, payload in payloads.items():
            on_ray = p50_p99_ms(await flowgraph_ping("ray", payload, messages))
            bare = p50_p99_ms(await bare_ray_ping(payload, messages))
            island = p50_p99_ms(await flowgraph_ping("process", payload, messages))
            local = p50_p99_ms(await flowgraph_ping("thread", payload, messages))
            print(f"{label:<11} | {on_ray[0]:>16.2f} {on_ray[1]:>6.2f} | {bare[0]:>13.2f} {bare[1]:>6.2f} | "
                  f"{island[0]:>14.2f} {island[1]:>6.2f} | {local[0]:>10.3f} {local[1]:>6.2f} | "
                  f"{on_ray[0] / bare[0]:>6.2f}x")
            rows.append({"payload": label, "ray_p50_ms": on_ray[0], "ray_p99_ms": on_ray[1],
                         "bare_ray_p50_ms": bare[0], "bare_ray_p99_ms": bare[1], "process_p50_ms": island[0],
                         "process_p99_ms": island[1], "thread_p50_ms": local[0], "thread_p99_ms": local[1]})
        print("goal: 720p hop p50 ≤ 1 ms on one host and ≤ 1.3x the bare Ray call")
        print(f"\nCPU-bound node (burn 20 ms a message) on Ray, round_robin, {seconds:.0f} s per row")
        one = await throughput(1, seconds)
        two = await throughput(2, seconds)
        print(f"{'1 replica':<11} | {one:>7.1f} msg/s")
        print(f"{'2 replicas':<11} | {two:>7.1f} msg/s | {two / one:.2f}x one replica (goal ≥ 1.7x; the host has "
              f"{os.cpu_count()} cores)")
        load = os.getloadavg()
        print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        record("ray_hops", {"hops": rows, "replicas_1_msg_s": one, "replicas_2_msg_s": two,
                            "loadavg_end": load})
    finally:
        ray.shutdown()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--quick", action="store_true", help="fewer messages, shorter throughput rows")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.seconds = 150, 4.0
    name = f"fgbench{os.getpid()}"
    try:
        netns.create(name)
    except netns.NetnsUnavailable as exc:
        print(unavailable_row("ray_hops", f"Ray needs a network namespace here (it listens on every interface): "
                                          f"{exc}"))
        return 0
    ray_tmp = tempfile.mkdtemp(prefix="fgray")  # short: Ray's Unix socket paths must fit 107 bytes
    os.environ["RAY_TMPDIR"] = ray_tmp
    try:
        with netns.inside(name):
            return asyncio.run(measure(args.messages, args.seconds))
    finally:
        netns.delete(name)
        shutil.rmtree(ray_tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
