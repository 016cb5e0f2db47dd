"""Per-stream end markers: every node frees a stream's state once, joins wait for every branch, the graph goes on."""

from __future__ import annotations

import asyncio
from typing import Any

from flowgraph.messages import Data, Message, StreamEnd
from flowgraph.node import Node
from flowgraph.ports import Input, Output
from flowgraph.registry import Registry
from flowgraph.testing import compile_text, run_to_end


class Streams(Node):
    """Two streams interleaved; stream ``a`` ends halfway, ``b`` goes on and comes back as a new ``a``."""

    out = Output(Data)

    async def run(self) -> None:
        for i in range(20):
            await self.out.send(Data(stream_id="a" if i < 10 or i >= 15 else "x", value=i))
            await self.out.send(Data(stream_id="b", value=i))
            if i == 9:
                await self.out.send(StreamEnd(stream_id="a", reason="test", origin=self.name))
            await asyncio.sleep(0)


class Slow(Node):
    """A branch that lags: its messages of ``a`` reach the join after the other branch's end marker."""

    inp = Input(Data)
    out = Output(Data)

    async def process(self, msg: Data) -> None:
        await asyncio.sleep(0.005)
        await self.out.send(msg)


class PerStream(Node):
    """Keeps a count per stream; records which streams it freed and in what state the marker found it."""

    left = Input(Data)
    right = Input(Data)
    out = Output(Data)

    def __init__(self, ctx: Any, params: Any = None) -> None:
        super().__init__(ctx, params)
        self.counts: dict[str, int] = {}
        self.freed: list[tuple[str, int]] = []
        self.after_end: list[Message] = []

    async def process(self, msg: Data) -> None:
        self.counts[msg.stream_id] = self.counts.get(msg.stream_id, 0) + 1
        await self.out.send(msg)

    def end_stream(self, end: StreamEnd) -> None:
        self.freed.append((end.stream_id, self.counts.pop(end.stream_id, 0)))


class Sink(Node):
    inp = Input(Message)

    def __init__(self, ctx: Any, params: Any = None) -> None:
        super().__init__(ctx, params)
        self.seen: list[Message] = []

    async def process(self, msg: Message) -> None:
        self.seen.append(msg)

    def end_stream(self, end: StreamEnd) -> None:  # markers never reach process
        self.seen.append(end)


def registry() -> Registry:
    reg = Registry.default()
    for name, cls in {"streams": Streams, "slow": Slow, "per_stream": PerStream, "sink": Sink}.items():
        reg.register(name, cls)
    return reg


async def test_a_join_frees_a_stream_once_every_branch_delivered_its_end() -> None:
    rt = await run_to_end(compile_text("""
nodes:
  src: {node: streams}
  fast: {node: passthrough, inputs: {inp: src/out}}
  slow: {node: slow, inputs: {inp: {from: src/out, policy: block, queue: 64}}}
  join: {node: per_stream, inputs: {left: {from: fast/out, policy: block, queue: 64},
                                    right: {from: slow/out, policy: block, queue: 64}}}
  sink: {node: sink, inputs: {inp: {from: join/out, policy: block, queue: 64}}}
""", registry=registry()), timeout=30)
    assert rt.exit_code == 0
    join: Any = rt.runners["join"].node
    # freed once, after both branches brought all of the first 'a' (10 messages x 2 branches); the fast branch may
    # already have brought some of the returning 'a' (15..19) by then: those are freed with it, never leaked
    assert len(join.freed) == 1 and join.freed[0][0] == "a" and join.freed[0][1] >= 20
    assert join.freed[0][1] + join.counts.get("a", 0) == 30
    assert join.counts["b"] == 40 and join.counts["x"] == 10
    seen = rt.runners["sink"].node.seen  # type: ignore[attr-defined]
    markers = [m for m in seen if isinstance(m, StreamEnd)]
    assert len(markers) == 1 and markers[0].reason == "test"
    assert rt.runners["join"].stats.streams_ended == 1


async def test_a_marker_is_never_taken_for_a_message_and_passes_every_policy() -> None:
    rt = await run_to_end(compile_text("""
nodes:
  src: {node: streams}
  cv: {node: passthrough, inputs: {inp: {from: src/out, policy: latest}}}
  live: {node: passthrough, inputs: {inp: {from: src/out, policy: drop_oldest, queue: 2}}}
  a: {node: sink, inputs: {inp: {from: cv/out, policy: block, queue: 64}}}
  b: {node: sink, inputs: {inp: {from: live/out, policy: block, queue: 64}}}
""", registry=registry()), timeout=30)
    for name in ("a", "b"):
        seen = rt.runners[name].node.seen  # type: ignore[attr-defined]
        assert [m.stream_id for m in seen if isinstance(m, StreamEnd)] == ["a"]
        # along one path the marker comes after every message of the ended run, before any of the new run
        position = next(i for i, m in enumerate(seen) if isinstance(m, StreamEnd))
        assert all(m.value < 10 for m in seen[:position] if m.stream_id == "a")
        assert all(m.value >= 15 for m in seen[position + 1:] if m.stream_id == "a")


async def test_a_node_in_a_worker_process_frees_the_stream_in_its_process() -> None:
    """A process-isolated node's stand-in hands the marker to the worker, where the node's own end_stream runs
    (its counters come back from that process); the marker still goes on downstream once."""
    rt = await run_to_end(compile_text("""
nodes:
  src: {node: streams}
  cv: {node: burn, isolation: process, params: {ms: 0}, inputs: {inp: {from: src/out, policy: block, queue: 64}}}
  sink: {node: sink, inputs: {inp: {from: cv/out, policy: block, queue: 64}}}
""", registry=registry()), timeout=120)
    assert rt.exit_code == 0
    assert rt.runners["cv"].node.counters()["streams_ended"] == ["a"]
    seen = rt.runners["sink"].node.seen  # type: ignore[attr-defined]
    assert [m.stream_id for m in seen if isinstance(m, StreamEnd)] == ["a"]
    assert sum(1 for m in seen if not isinstance(m, StreamEnd)) == 40
