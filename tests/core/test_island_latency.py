"""CV must not delay packets to viewers: the packet path's in-server latency p99 with a CPU-heavy node beside it
stays within a few ms of the same run's baseline without it.

Packets come from another process, stamped with its clock when sent (so time a starved event loop leaves them in
the kernel's socket buffer counts), cross the graph's loop like ingest's packets, and are timed at a sink. The CV
branch is a ``burn`` node on decoded-size frames: numpy (C, the GIL released) and pure Python (the GIL held) —
each in its own worker process, as CV nodes run by default. The thread placement is measured too, to show the
test can see the harm it guards against.
"""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import pytest

from flowgraph.messages import Data, VideoFrame
from flowgraph.metrics import Samples
from flowgraph.node import Node
from flowgraph.ports import Input, Output
from flowgraph.registry import Registry
from flowgraph.testing import compile_text, running

RATE_HZ = 200
SECONDS = 8.0
#: CV works in the first half of every period; packets within SETTLE_S of a switch are not counted.
PERIOD_S = 0.5
SETTLE_S = 0.06
SENDER = """
import socket, struct, sys, time
port, count, period = int(sys.argv[1]), int(sys.argv[2]), 1.0 / float(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
due = time.perf_counter()
for i in range(count):
    sock.sendto(struct.pack("!d", time.time()), ("127.0.0.1", port))
    due += period
    time.sleep(max(0.0, due - time.perf_counter()))
"""


class StampedPackets(Node):
    """Datagrams stamped by the sender's clock, read on the graph's event loop (like RTMP ingest's socket)."""

    out = Output(Data)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.queue: asyncio.Queue[float] = asyncio.Queue(maxsize=4096)
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        queue = self.queue

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                if not queue.full():
                    queue.put_nowait(struct.unpack("!d", data)[0])

        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", 0))
        self.port = self._transport.get_extra_info("sockname")[1]

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def run(self) -> None:
        while not self.stopping:
            try:
                stamp = await asyncio.wait_for(self.queue.get(), 0.2)
            except TimeoutError:
                continue
            await self.out.send(Data(value=b"x" * 1200, t_capture=stamp))


class GatedFrames(Node):
    """Decoded-size frames for the CV branch, only in the "on" half of every period: CV works half the time."""

    frames = Output(VideoFrame)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.image = np.zeros((360, 640, 3), np.uint8)

    async def run(self) -> None:
        n = 0
        while not self.stopping:
            if cv_on(time.time()):
                await self.frames.send(VideoFrame(image=self.image, frame_id=n))
                n += 1
            await asyncio.sleep(1 / 30)


def start_sender(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", SENDER, str(port), str(int(SECONDS * RATE_HZ)), str(RATE_HZ)])


def cv_on(t: float) -> bool:
    return int(t / PERIOD_S) % 2 == 0


def settled(t: float) -> bool:
    """Not just after a switch (a frame still in the worker, a first frame on its way)."""
    return t % PERIOD_S > SETTLE_S


class PacketLatency(Node):
    """The viewer end: how long each packet took from the sender's socket to here, by CV phase."""

    inp = Input(Data)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.on = Samples(capacity=8192)
        self.off = Samples(capacity=8192)

    async def process(self, msg: Data) -> None:
        if settled(msg.t_capture):
            (self.on if cv_on(msg.t_capture) else self.off).add(time.time() - msg.t_capture)


@pytest.fixture
def registry() -> Registry:
    reg = Registry.default()
    reg.register("stamped_packets", StampedPackets)
    reg.register("gated_frames", GatedFrames)
    reg.register("packet_latency", PacketLatency)
    return reg


@dataclass
class Phases:
    on_p50: float
    on_p99: float
    off_p50: float
    off_p99: float
    analysed: int

    def __str__(self) -> str:
        return (f"CV on: p50 {self.on_p50:.2f} p99 {self.on_p99:.2f} ms; CV off: p50 {self.off_p50:.2f} "
                f"p99 {self.off_p99:.2f} ms; {self.analysed} frames analysed (load {os.getloadavg()[0]:.1f})")


async def packet_latency(registry: Registry, cv: str) -> Phases:
    """Packets through the graph while the CV node ``cv`` works every other ``PERIOD_S`` (same run, interleaved:
    the machine's other load hits both phases alike)."""
    text = f"""
nodes:
  packets: {{node: stamped_packets}}
  viewers: {{node: packet_latency, inputs: {{inp: packets/out}}}}
  camera: {{node: gated_frames}}
  cv: {{node: burn, {cv}, inputs: {{inp: {{from: camera/frames, policy: latest}}}}}}
  sink: {{node: collect, params: {{keep: 4}}, inputs: {{inp: cv/out}}}}
"""
    async with running(compile_text(text, registry=registry)) as rt:
        source: StampedPackets = rt.runners["packets"].node  # type: ignore[assignment]
        sender = start_sender(source.port)
        try:
            await asyncio.to_thread(sender.wait, SECONDS * 4 + 30)
        finally:
            if sender.poll() is None:
                sender.kill()
                sender.wait()
        await asyncio.sleep(0.1)
        sink: PacketLatency = rt.runners["viewers"].node  # type: ignore[assignment]
        analysed = rt.runners["cv"].stats.processed
    assert sink.on.count + sink.off.count >= SECONDS * RATE_HZ * (1 - SETTLE_S / PERIOD_S) * 0.9, "packets lost"
    on, off = sink.on.percentiles(50, 99), sink.off.percentiles(50, 99)
    assert None not in on and None not in off
    return Phases(on[0] * 1000, on[1] * 1000, off[0] * 1000, off[1] * 1000, analysed)  # type: ignore[operator]


ATTEMPTS = 3


@pytest.mark.parametrize("kind", ["numpy", "python"])
async def test_cv_in_its_process_does_not_delay_packets(registry: Registry, kind: str) -> None:
    """Harm from CV is systematic and shows in every attempt; another engineer's load on this shared machine comes
    and goes, so an attempt it spoiled is run again (up to ATTEMPTS)."""
    seen = []
    for _ in range(ATTEMPTS):
        # the worker's defaults, as shipped: the idle CPU group, every CPU but the first
        phases = await packet_latency(registry, f"isolation: process, params: {{ms: 25, kind: {kind}}}")
        seen.append(str(phases))
        assert phases.analysed >= 3, f"the CV node did work: {phases}"
        # "a few ms": generous for a shared 2-core machine, yet below the 5 ms the GIL makes a loop wait per switch
        if phases.on_p99 <= phases.off_p99 + 4.0 and phases.on_p50 <= phases.off_p50 + 1.0:
            return
    pytest.fail("CV in its own process delayed packets in every attempt:\n" + "\n".join(seen))


async def test_the_gil_holder_on_a_thread_is_seen(registry: Registry) -> None:
    """The check above can fail: a pure-Python node on a thread of the graph's process delays packets."""
    seen = []
    for _ in range(ATTEMPTS):
        phases = await packet_latency(registry, "isolation: thread, nice: 10, params: {ms: 25, kind: python}")
        seen.append(str(phases))
        if phases.on_p99 >= phases.off_p99 + 2.0 or phases.on_p50 >= phases.off_p50 + 1.0:
            return
    pytest.fail("a GIL holder on a thread did not delay packets measurably:\n" + "\n".join(seen))
