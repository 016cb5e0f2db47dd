"""Utility nodes that exercise the core without any media library: sources, pass-through, sinks, faults."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from flowgraph.context import NodeContext
from flowgraph.messages import Data, Message, StreamEnd, VideoFrame
from flowgraph.metrics import Samples
from flowgraph.node import Node
from flowgraph.params import param
from flowgraph.ports import Input, Output


async def paced(node: Node, rate: float, count: int) -> AsyncIterator[int]:
    """Yield 0, 1, 2 ... at ``rate`` per second (0 = as fast as possible, yielding the loop now and then) until
    ``count`` (0 = no limit) or until the node is asked to stop. Deadlines are absolute, so pacing never drifts."""
    period = 1.0 / rate if rate > 0 else 0.0
    start = time.monotonic()
    n = 0
    while not node.stopping and (count == 0 or n < count):
        yield n
        n += 1
        if period:
            delay = start + n * period - time.monotonic()
            if delay > 0 and await node.wait_stopping(delay):
                return
        elif n % 64 == 0:
            await asyncio.sleep(0)


class Tick(Node):
    """Emits numbered Data messages at a fixed rate (a counter source)."""

    out = Output(Data, "value = tick number, starting at 0")

    @dataclass
    class Params:
        hz: float = param(10.0, "ticks per second (0 = as fast as possible)", minimum=0)
        count: int = param(0, "stop after this many ticks (0 = run until stopped)", minimum=0)
        stream_id: str = param("default", "stream_id stamped on every tick")
        payload_bytes: int = param(0, "attach a bytes payload of this size", minimum=0, maximum=64 << 20)

    async def run(self) -> None:
        p = self.params
        payload = bytes(p.payload_bytes) if p.payload_bytes else None
        async for n in paced(self, p.hz, p.count):
            await self.out.send(Data(value=n if payload is None else payload, stream_id=p.stream_id, frame_id=n))


class Frames(Node):
    """Emits synthetic RGB frames (numpy, no media library) — for exercising video-sized traffic."""

    frames = Output(VideoFrame)

    @dataclass
    class Params:
        width: int = param(1280, "frame width", minimum=1, maximum=7680)
        height: int = param(720, "frame height", minimum=1, maximum=4320)
        fps: float = param(30.0, "frames per second (0 = as fast as possible)", minimum=0)
        count: int = param(0, "stop after this many frames (0 = until stopped)", minimum=0)
        stream_id: str = param("default", "stream_id stamped on every frame")
        pool: int = param(4, "distinct buffers cycled through; 0 = a freshly allocated buffer per frame",
                          minimum=0, maximum=64)

    async def start(self) -> None:
        import numpy as np

        p = self.params
        self._np = np
        self._buffers = [np.full((p.height, p.width, 3), i * 16 % 256, dtype=np.uint8) for i in range(p.pool)]

    async def run(self) -> None:
        p = self.params
        async for n in paced(self, p.fps, p.count):
            if self._buffers:
                image = self._buffers[n % len(self._buffers)]
            else:
                image = self._np.empty((p.height, p.width, 3), dtype=self._np.uint8)
                image[0, 0] = n % 256
            await self.frames.send(VideoFrame(image=image, stream_id=p.stream_id, frame_id=n, pts=n))


class Passthrough(Node):
    """Forwards every message unchanged (cheap: fused into its producer's stage when wired plainly)."""

    cheap = True
    inp = Input(Message)
    out = Output(Message, follows="inp")

    def process(self, msg: Message) -> Message:
        return msg


class Slow(Node):
    """Forwards messages after a fixed delay — a deliberately slow consumer for backpressure tests."""

    inp = Input(Message)
    out = Output(Message, follows="inp")
    live_params = frozenset({"delay_s"})

    @dataclass
    class Params:
        delay_s: float = param(0.1, "seconds spent on each message (live: an edit changes it in place)", minimum=0)
        mode: Literal["sleep", "busy"] = param("sleep", "sleep (async) or busy (block the worker thread)")

    async def process(self, msg: Message) -> None:
        if self.params.mode == "sleep":
            await asyncio.sleep(self.params.delay_s)
        else:
            await self.offload(time.sleep, self.params.delay_s)
        await self.out.send(msg)


class Collect(Node):
    """Sink that keeps the most recent messages (and optionally writes them as JSON lines)."""

    inp = Input(Message)

    @dataclass
    class Params:
        keep: int = param(10_000, "messages kept in memory (oldest dropped first)", minimum=0)
        path: str = param("", "append one JSON line per message to this file ('' = none)")

    def __init__(self, ctx: NodeContext, params: Collect.Params | None = None) -> None:
        super().__init__(ctx, params)
        self.received: deque[Message] = deque(maxlen=self.params.keep or None)
        self.count = 0
        self._file: Any = None

    async def start(self) -> None:
        self._file = open(self.params.path, "a", encoding="utf-8") if self.params.path else None  # noqa: ASYNC230

    async def process(self, msg: Message) -> None:
        self.count += 1
        if self.params.keep:
            self.received.append(msg)
        if self._file is not None:
            self._file.write(json.dumps(_jsonable(msg)) + "\n")

    async def end_stream(self, end: StreamEnd) -> None:
        """Stream ends are kept (and written) in order with the messages."""
        await self.process(end)

    async def stop(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class FrameProbe(Node):
    """Sink for video: counts frames and keeps their size and age (capture to arrival) for inspection."""

    frames = Input(VideoFrame)

    def __init__(self, ctx: NodeContext, params: object = None) -> None:
        super().__init__(ctx, params)
        self.count = 0
        self.size: tuple[int, int] | None = None
        self.age = Samples()

    async def process(self, frame: VideoFrame) -> None:
        self.count += 1
        self.size = (frame.width, frame.height)
        self.age.add(frame.age())


class Log(Node):
    """Logs every Nth message's metadata at INFO."""

    inp = Input(Message)

    @dataclass
    class Params:
        every: int = param(1, "log one message in this many", minimum=1)

    def __init__(self, ctx: NodeContext, params: Log.Params | None = None) -> None:
        super().__init__(ctx, params)
        self._n = 0

    async def process(self, msg: Message) -> None:
        self._n += 1
        if self._n % self.params.every == 0:
            self.log.info("%s %s", type(msg).__name__, _jsonable(msg))


class Fail(Node):
    """Raises on chosen messages (fault injection for failure-policy tests); forwards the others."""

    inp = Input(Message)
    out = Output(Message, follows="inp")

    @dataclass
    class Params:
        every: int = param(0, "raise on every Nth message (0 = never)", minimum=0)
        first: int = param(0, "raise on the first N messages", minimum=0)
        on_start: int = param(0, "raise in start() this many times", minimum=0)

    def __init__(self, ctx: NodeContext, params: Fail.Params | None = None) -> None:
        super().__init__(ctx, params)
        self.starts = 0
        self._n = 0  # counts across restarts (the node object survives them), so `first: N` fails N messages

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= self.params.on_start:
            raise RuntimeError(f"injected start failure {self.starts}")

    async def process(self, msg: Message) -> None:
        self._n += 1
        p = self.params
        if self._n <= p.first or (p.every and self._n % p.every == 0):
            raise RuntimeError(f"injected failure on message {self._n}")
        await self.out.send(msg)


def _jsonable(msg: Message) -> dict[str, Any]:
    out = msg.meta()
    value = getattr(msg, "value", None)
    if isinstance(value, int | float | str | bool) or value is None:
        out["value"] = value
    else:
        out["value_type"] = type(value).__name__
    out["type"] = type(msg).__name__
    return out
