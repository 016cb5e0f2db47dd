"""Small node types that only the core tests use, offered through the ``reg`` fixture (a private registry)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import pytest

from flowgraph.context import NodeContext
from flowgraph.messages import Data, Message
from flowgraph.node import Node
from flowgraph.params import param
from flowgraph.ports import Input, Output
from flowgraph.registry import Registry


class Square(Node):
    """Blocking node: runs in its worker thread and returns its output."""

    inp = Input(Data)
    out = Output(Data)

    def __init__(self, ctx: NodeContext, params: object = None) -> None:
        super().__init__(ctx, params)
        self.threads: set[str] = set()
        self.priority = 0

    def process(self, msg: Data) -> Data:
        self.threads.add(threading.current_thread().name)
        self.priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return Data(value=msg.value * msg.value).like(msg)


class Split(Node):
    """Blocking node with two outputs: evens and odds."""

    inp = Input(Data)
    even = Output(Data)
    odd = Output(Data)

    def process(self, msg: Data) -> dict[str, Data]:
        return {"even" if msg.value % 2 == 0 else "odd": msg}


class Summer(Node):
    """Holds a running sum and emits it only at end of stream (exercises flush)."""

    inp = Input(Data)
    total = Output(Data)

    async def start(self) -> None:
        self.sum = 0

    async def process(self, msg: Data) -> None:
        self.sum += msg.value

    async def flush(self) -> None:
        await self.total.send(Data(value=self.sum))


class Pair(Node):
    """Two inputs with their own handlers (fan-in by port)."""

    left = Input(Data)
    right = Input(Data)
    out = Output(Data)

    async def on_left(self, msg: Data) -> None:
        await self.out.send(Data(value=("L", msg.value)).like(msg))

    async def on_right(self, msg: Data) -> None:
        await self.out.send(Data(value=("R", msg.value)).like(msg))


class Counter(Node):
    """Feedback loop member: increments values it receives on `back` until a limit."""

    seed = Input(Data)
    back = Input(Data, required=False)
    out = Output(Data)

    @dataclass
    class Params:
        limit: int = param(5, "stop feeding back at this value")

    async def on_seed(self, msg: Data) -> None:
        await self.out.send(msg)

    async def on_back(self, msg: Data) -> None:
        if msg.value < self.params.limit:
            await self.out.send(Data(value=msg.value + 1))


class Increment(Node):
    """Cheap inline node (fusable)."""

    cheap = True
    inp = Input(Data)
    out = Output(Data)

    def __init__(self, ctx: NodeContext, params: object = None) -> None:
        super().__init__(ctx, params)
        self.threads: set[str] = set()

    def process(self, msg: Data) -> Data:
        self.threads.add(threading.current_thread().name)
        return Data(value=msg.value + 1).like(msg)


class GpuOnly(Node):
    """Declares CUDA capability (for placement tests)."""

    gpu = True
    inp = Input(Message)

    async def process(self, msg: Message) -> None:
        pass


class Crashy(Node):
    """A source that fails its first `fail` runs, then emits `count` ticks."""

    out = Output(Data)

    @dataclass
    class Params:
        fail: int = 2
        count: int = 3

    def __init__(self, ctx: NodeContext, params: Crashy.Params | None = None) -> None:
        super().__init__(ctx, params)
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        if self.runs <= self.params.fail:
            raise RuntimeError(f"source failure {self.runs}")
        for i in range(self.params.count):
            await self.out.send(Data(value=i, frame_id=i))


@pytest.fixture
def reg() -> Registry:
    """The default registry plus the test node types above."""
    reg = Registry.default()
    for name, cls in {"square": Square, "split": Split, "summer": Summer, "pair": Pair, "counter": Counter,
                      "increment": Increment, "gpu_only": GpuOnly, "crashy": Crashy}.items():
        reg.register(name, cls)
    return reg
