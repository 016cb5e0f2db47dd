"""Batches (``process_batch``): the runner hands a node every message already queued on one input in one call —
on a ``latest`` edge the newest frame of each stream — with outputs, markers and metrics as one at a time."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from rich.console import Console

from flowgraph.errors import GraphError
from flowgraph.messages import Data, Message, StreamEnd
from flowgraph.metrics import prometheus_lines
from flowgraph.node import Node
from flowgraph.ports import Input, Output
from flowgraph.registry import Registry
from flowgraph.testing import collected, compile_text, run_to_end
from flowgraph.top import render

#: Set by the batch node when its first call started; the source queues its burst only then.
BUSY = threading.Event()
#: Set by the source once the burst is queued; the batch node's first call returns only then.
QUEUED = threading.Event()


class Burst(Node):
    """One message of stream ``w`` (the consumer gets busy with it), then the planned messages all at once."""

    out = Output(Data)
    plan: list[Message] = []

    async def run(self) -> None:
        await self.out.send(Data(stream_id="w", value=-1))
        assert await asyncio.to_thread(BUSY.wait, 60), "the consumer never started"
        for msg in self.plan:
            await self.out.send(msg)
        QUEUED.set()


class Batcher(Node):
    """Records every call: ``("one", [(stream, value)])``, ``("batch", [...])``, ``("end", stream)``."""

    inp = Input(Data)
    out = Output(Data)

    def __init__(self, ctx: Any, params: Any = None) -> None:
        super().__init__(ctx, params)
        self.calls: list[tuple[str, Any]] = []

    def _first(self) -> None:
        if not BUSY.is_set():
            BUSY.set()
            assert QUEUED.wait(60), "the source never queued its burst"

    def process(self, msg: Data) -> Data:
        self.calls.append(("one", [(msg.stream_id, msg.value)]))
        self._first()
        return Data(value=("one", msg.value)).like(msg)

    def process_batch(self, msgs: list[Data]) -> list[Data | None]:
        self.calls.append(("batch", [(m.stream_id, m.value) for m in msgs]))
        self._first()
        # one result per message; None for a message that produces nothing
        return [None if m.value == "quiet" else Data(value=("batch", m.value)).like(m) for m in msgs]

    def end_stream(self, end: StreamEnd) -> None:
        self.calls.append(("end", end.stream_id))


class Plain(Node):
    """No batch handler: always one message per call."""

    inp = Input(Data)
    out = Output(Data)

    def process(self, msg: Data) -> Data:
        return msg


class Sink(Node):
    inp = Input(Message)

    def __init__(self, ctx: Any, params: Any = None) -> None:
        super().__init__(ctx, params)
        self.received: list[Message] = []

    async def process(self, msg: Message) -> None:
        self.received.append(msg)

    def end_stream(self, end: StreamEnd) -> None:
        self.received.append(end)


def registry() -> Registry:
    reg = Registry.default()
    for name, cls in {"burst": Burst, "batcher": Batcher, "plain": Plain, "sink": Sink}.items():
        reg.register(name, cls)
    return reg


@pytest.fixture(autouse=True)
def fresh_events() -> None:
    BUSY.clear()
    QUEUED.clear()


def graph(edge: str, node: str = "b: {node: batcher", extra: str = "") -> str:
    return f"""
nodes:
  src: {{node: burst}}
  {node}{extra}, isolation: thread, inputs: {{inp: {edge}}}}}
  out: {{node: sink, inputs: {{inp: {{from: b/out, policy: block, queue: 64}}}}}}
"""


async def test_latest_edge_gives_one_call_with_the_newest_frame_of_each_stream() -> None:
    Burst.plan = [Data(stream_id=s, value=f"{s}{i}") for i in range(2) for s in "abc"]
    rt = await run_to_end(compile_text(graph("{from: src/out, policy: latest}"), registry=registry()))
    assert rt.exit_code == 0
    batcher = rt.runners["b"].node
    assert batcher.calls == [("one", [("w", -1)]),  # type: ignore[attr-defined]
                             ("batch", [("a", "a1"), ("b", "b1"), ("c", "c1")])]
    assert [m.value for m in collected(rt, "out")] == [("one", -1), ("batch", "a1"), ("batch", "b1"), ("batch", "c1")]
    assert [m.stream_id for m in collected(rt, "out")] == ["w", "a", "b", "c"], "outputs keep their inputs' order"
    snap = rt.snapshot()
    node = snap["nodes"]["b"]
    assert node["processed"] == 4 and node["errors"] == 0
    assert node["batch"]["sizes"] == {"1": 1, "3": 1} and node["batch"]["calls"] == 2
    assert node["batch"]["mean"] == 2.0 and node["batch"]["last"] == 3 and node["batch"]["max_batch"] == 8
    edge = next(e for e in snap["edges"] if e["to"] == "b/inp")
    assert edge["drops"] == 3 and edge["puts"] == 7, "a0, b0, c0 replaced by the newer frames"
    console = Console(width=200, record=True)
    console.print(render(snap))
    assert "finished · batch 2.0" in console.export_text(), "flowgraph top shows the mean batch"
    text = prometheus_lines(snap)
    assert 'flowgraph_node_batch_size_bucket{graph="graph",le="2",node="b"} 1.0' in text
    assert 'flowgraph_node_batch_size_bucket{graph="graph",le="4",node="b"} 2.0' in text
    assert 'flowgraph_node_batch_size_sum{graph="graph",node="b"} 4.0' in text


async def test_batches_stop_at_a_stream_end_and_respect_max_batch() -> None:
    Burst.plan = [Data(stream_id="a", value=1), Data(stream_id="b", value=1), StreamEnd(stream_id="a", reason="t"),
                  Data(stream_id="c", value=1), Data(stream_id="b", value=2), Data(stream_id="c", value="quiet"),
                  Data(stream_id="b", value=3)]
    text = graph("{from: src/out, policy: block, queue: 16}", extra=", max_batch: 3")
    rt = await run_to_end(compile_text(text, registry=registry()))
    assert rt.exit_code == 0
    assert rt.runners["b"].node.calls == [  # type: ignore[attr-defined]
        ("one", [("w", -1)]),
        ("batch", [("a", 1), ("b", 1)]),  # the marker ends the batch: a's state goes after a's last message
        ("end", "a"),
        ("batch", [("c", 1), ("b", 2), ("c", "quiet")]),  # max_batch 3
        ("one", [("b", 3)]),  # a lone message goes to process
    ]
    got = [(m.stream_id, type(m).__name__, getattr(m, "value", None)) for m in collected(rt, "out")]
    assert got[:5] == [("w", "Data", ("one", -1)), ("a", "Data", ("batch", 1)), ("b", "Data", ("batch", 1)),
                       ("a", "StreamEnd", None), ("c", "Data", ("batch", 1))]
    assert got[5:7] == [("b", "Data", ("batch", 2)), ("b", "Data", ("one", 3))], "None leaves nothing, in order"
    node = rt.snapshot()["nodes"]["b"]
    assert node["processed"] == 7 and node["batch"]["sizes"] == {"1": 2, "2": 1, "3": 1}


async def test_one_stream_is_served_one_message_at_a_time_as_before() -> None:
    Burst.plan = [Data(stream_id="a", value=i) for i in range(3)]
    rt = await run_to_end(compile_text(graph("{from: src/out, policy: latest}"), registry=registry()))
    calls = rt.runners["b"].node.calls  # type: ignore[attr-defined]
    assert calls == [("one", [("w", -1)]), ("one", [("a", 2)])], "one stream on latest: one slot, one frame"
    assert rt.snapshot()["nodes"]["b"]["batch"]["sizes"] == {"1": 2}
    # a node without a batch handler has no batch figures and takes one message per call
    Burst.plan = [Data(stream_id=s, value=1) for s in "abc"]
    BUSY.set()
    QUEUED.clear()
    plain = compile_text(graph("{from: src/out, policy: latest}", node="b: {node: plain"), registry=registry())
    assert plain.nodes["b"].max_batch == 1
    rt = await run_to_end(plain)
    assert "batch" not in rt.snapshot()["nodes"]["b"] and rt.runners["b"].stats.batch is None
    assert [m.stream_id for m in collected(rt, "out")][-3:] == ["a", "b", "c"]


async def test_batch_wait_ms_lets_a_late_stream_join() -> None:
    class Staggered(Burst):
        async def run(self) -> None:
            await self.out.send(Data(stream_id="a", value=1))
            await asyncio.sleep(0.05)
            await self.out.send(Data(stream_id="b", value=1))

    class Quick(Batcher):
        def _first(self) -> None:
            pass

    reg = registry()
    reg.register("staggered", Staggered)
    reg.register("quick", Quick)
    text = """
nodes:
  src: {node: staggered}
  b: {node: quick, isolation: thread, batch_wait_ms: 1000, inputs: {inp: {from: src/out, policy: latest}}}
  out: {node: sink, inputs: {inp: b/out}}
"""
    started = time.monotonic()
    rt = await run_to_end(compile_text(text, registry=reg))
    assert rt.runners["b"].node.calls[0] == ("batch", [("a", 1), ("b", 1)])  # type: ignore[attr-defined]
    assert time.monotonic() - started < 30


class Failing(Batcher):
    """A batch with value 2 in it fails; so does that message on its own."""

    def process(self, msg: Data) -> Data:
        if msg.value == 2:
            self.calls.append(("one", [(msg.stream_id, msg.value)]))
            raise RuntimeError("bad frame 2")
        return super().process(msg)

    def process_batch(self, msgs: list[Data]) -> list[Data | None]:
        super().process_batch(msgs)
        if any(m.value == 2 for m in msgs):
            raise RuntimeError("model fell over")
        return [Data(value=("batch", m.value)).like(m) for m in msgs]


async def test_a_failing_batch_goes_again_one_message_at_a_time_and_only_the_bad_one_is_skipped() -> None:
    reg = registry()
    reg.register("failing", Failing)
    Burst.plan = [Data(stream_id=s, value=v) for s, v in zip("abc", (1, 2, 3), strict=True)]
    Burst.plan.append(StreamEnd(stream_id="a", reason="t"))
    rt = await run_to_end(compile_text(graph("{from: src/out, policy: block}", node="b: {node: failing"),
                                       registry=reg))
    assert rt.exit_code == 0
    calls = rt.runners["b"].node.calls  # type: ignore[attr-defined]
    assert calls[1] == ("batch", [("a", 1), ("b", 2), ("c", 3)])
    assert calls[2:5] == [("one", [("a", 1)]), ("one", [("b", 2)]), ("one", [("c", 3)])], "each on its own"
    node = rt.snapshot()["nodes"]["b"]
    assert node["errors"] == 2 and "bad frame 2" in node["last_error"], "the batch's failure and the bad frame's"
    assert node["processed"] == 3, "w, then a and c on their own; b skipped"
    got = [(m.stream_id, m.value) for m in collected(rt, "out") if type(m) is Data]
    assert got == [("w", ("one", -1)), ("a", ("one", 1)), ("c", ("one", 3))]
    assert ("a", "StreamEnd") in [(m.stream_id, type(m).__name__) for m in collected(rt, "out")]


async def test_under_restart_a_failing_batch_goes_through_on_error_as_one() -> None:
    reg = registry()
    reg.register("failing", Failing)
    Burst.plan = [Data(stream_id=s, value=v) for s, v in zip("abc", (1, 2, 3), strict=True)]
    rt = await run_to_end(compile_text(graph("{from: src/out, policy: block}", node="b: {node: failing",
                                             extra=", on_error: {policy: restart, backoff_s: 0.01}"),
                                       registry=reg))
    assert rt.exit_code == 0
    node = rt.snapshot()["nodes"]["b"]
    assert node["errors"] == 1 and "model fell over" in node["last_error"] and node["restarts"] == 1
    assert node["processed"] == 1, "the failed batch's messages are dropped with it, not counted as processed"
    assert [m.stream_id for m in collected(rt, "out") if type(m) is Data] == ["w"]


def test_max_batch_is_checked_before_start() -> None:
    reg = registry()
    with pytest.raises(GraphError) as err:
        compile_text("""
nodes:
  src: {node: burst}
  b:
    node: plain
    max_batch: 4
    inputs: {inp: src/out}
""", registry=reg)
    assert "graph.yaml:6:" in str(err.value) and "no batch handler (process_batch)" in str(err.value)
    moriarty = compile_text("nodes: {src: {node: frames}, p: {node: moriarty, max_batch: 4, params: {max_batch: 2}, "
                            "inputs: {frames: src/frames}}}", registry=reg).nodes["p"]
    assert moriarty.max_batch == 4 and moriarty.params.max_batch == 2, "messages per call vs its crops per model call"
    with pytest.raises(GraphError):
        compile_text("nodes: {src: {node: burst}, b: {node: batcher, max_batch: 0, inputs: {inp: src/out}}}",
                     registry=reg)
    plan = compile_text(graph("src/out"), registry=reg, overrides=["b.max_batch=2", "b.batch_wait_ms=5"])
    assert plan.nodes["b"].max_batch == 2 and plan.nodes["b"].batch_wait_ms == 5
    assert "batches up to 2, waits up to 5 ms" in plan.describe()
    assert plan.to_dict()["nodes"]["b"]["max_batch"] == 2
    assert compile_text(graph("src/out", extra=", max_batch: 1"), registry=reg).nodes["b"].max_batch == 1
