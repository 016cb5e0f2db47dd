"""The node context: typed shared hubs, connected inputs, the stream registry and metrics a node sees."""

from __future__ import annotations

import pickle
from typing import ClassVar

from flowgraph.context import GraphScope, Key, NodeContext
from flowgraph.messages import Data
from flowgraph.node import Node
from flowgraph.ports import Input, Output
from flowgraph.registry import Registry
from flowgraph.testing import compile_text, run_to_end

TALLY: Key[list[str]] = Key("test.tally")


def test_shared_builds_once_and_keys_compare_by_name() -> None:
    scope = GraphScope("g")
    built: list[int] = []

    def factory() -> list[str]:
        built.append(1)
        return []

    first = scope.shared(TALLY, factory)
    again = scope.shared(Key[list[str]]("test.tally"), factory)  # rebuilt elsewhere (another process): same slot
    assert first is again and built == [1]
    assert pickle.loads(pickle.dumps(TALLY)) == TALLY
    assert scope.peek(Key[int]("test.other")) is None
    scope.discard(TALLY)
    assert scope.peek(TALLY) is None


def test_context_outside_a_graph_has_its_own_scope_and_no_server() -> None:
    ctx = NodeContext("lonely")
    assert ctx.graph == "graph" and ctx.inputs is None and ctx.metrics() == {}
    ctx.streams.update("cam", "test", fps=1.0)
    assert ctx.streams.known("cam")
    assert NodeContext("other").streams.ids() == []
    try:
        ctx.server  # noqa: B018
    except RuntimeError as exc:
        assert "'lonely'" in str(exc)
    else:
        raise AssertionError("a context outside a graph must not hand out a server")


class Probe(Node):
    """Records what its context says about the graph, and shares a hub with its siblings."""

    a = Input(Data, required=False)
    b = Input(Data, required=False)
    out = Output(Data)
    seen: ClassVar[dict[str, object]] = {}

    async def start(self) -> None:
        self.ctx.shared(TALLY, list).append(self.name)
        Probe.seen[self.name] = (self.ctx.inputs, self.ctx.graph, self.ctx.streams)

    async def process(self, msg: Data) -> None:
        await self.out.send(msg)


class Once(Node):
    out = Output(Data)

    async def run(self) -> None:
        await self.out.send(Data(value=1))


async def test_runtime_gives_each_node_its_connected_inputs_and_one_scope() -> None:
    registry = Registry.default()
    registry.register("probe", Probe)
    registry.register("once", Once)
    plan = compile_text("""
name: ctxgraph
nodes:
  src: {node: once}
  p1: {node: probe, inputs: {a: src/out}}
  p2: {node: probe, inputs: {b: p1/out}}
""", registry=registry)
    rt = await run_to_end(plan)
    assert rt.exit_code == 0
    assert rt.scope.peek(TALLY) is not None and sorted(rt.scope.peek(TALLY) or []) == ["p1", "p2"]
    assert Probe.seen["p1"] == (frozenset({"a"}), "ctxgraph", rt.scope.streams)
    assert Probe.seen["p2"] == (frozenset({"b"}), "ctxgraph", rt.scope.streams)
    assert set(rt.scope.metrics()["nodes"]) == {"src", "p1", "p2"}
