"""The ``burn`` node: a stand-in for heavy computer vision, for tests and benchmarks of the video path under load."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from flowgraph.messages import Message, StreamEnd
from flowgraph.node import Node
from flowgraph.params import param
from flowgraph.ports import Input, Output


class Burn(Node):
    """Burns CPU on every message, in C (numpy, GIL released) or pure Python (GIL held), then forwards it."""

    isolation = "process"  # like the CV nodes it stands in for
    max_batch = 1  # batches only where the graph asks (``max_batch: N``): existing graphs keep one message per call

    inp = Input(Message)
    out = Output(Message, follows="inp")

    @dataclass
    class Params:
        ms: float = param(30.0, "CPU time spent per message (milliseconds)", minimum=0, maximum=60_000)
        kind: Literal["numpy", "python"] = param(
            "numpy", "numpy: matrix products in C (releases the GIL); python: a pure-Python loop (holds it)")
        report: bool = param(False, "report analysed_fps for the message's stream to the stream registry")
        fail_every: int = param(0, "raise on every Nth message (fault injection; 0 = never)", minimum=0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.burned_s = 0.0
        self.messages = 0
        self.streams_ended: list[str] = []
        self._matrix: Any = None
        self._last: float | None = None
        self.batch_sizes: list[int] = []  # the last sizes of process_batch calls, as the node saw them

    def process(self, msg: Message) -> Message:  # blocking: a worker thread or a worker process
        if self.params.fail_every and (self.messages + 1) % self.params.fail_every == 0:
            self.messages += 1
            raise RuntimeError(f"injected failure on message {self.messages}")
        started = time.perf_counter()
        deadline = started + self.params.ms / 1000
        if self.params.kind == "numpy":
            import numpy as np

            if self._matrix is None:
                self._matrix = np.random.default_rng(0).random((160, 160))
            m = self._matrix
            while time.perf_counter() < deadline:
                m = (m @ self._matrix) / 160.0
        else:
            n = 0
            while time.perf_counter() < deadline:
                for _ in range(2000):
                    n += 1
        now = time.perf_counter()
        self.burned_s += now - started
        self.messages += 1
        if self.params.report and self._last is not None and now > self._last:
            self.ctx.streams.update(msg.stream_id, "burn", analysed_fps=round(1 / (now - self._last), 2),
                                      messages=self.messages)
        self._last = now
        return msg

    def process_batch(self, msgs: list[Message]) -> list[Message]:
        """A batch costs what its messages cost one by one (no model to share); it records its size."""
        self.batch_sizes = [*self.batch_sizes[-15:], len(msgs)]
        return [self.process(msg) for msg in msgs]

    def end_stream(self, end: StreamEnd) -> None:
        self.streams_ended = [*self.streams_ended[-15:], end.stream_id]

    def counters(self) -> dict[str, Any]:
        return {"messages": self.messages, "burned_s": round(self.burned_s, 3), "streams_ended": self.streams_ended,
                "batch_sizes": self.batch_sizes}
