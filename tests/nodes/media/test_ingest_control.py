"""Keyframe requests reach only the ingest whose stream they name (one viewer tier controls several streams)."""

from __future__ import annotations

import asyncio

from flowgraph.messages import Control
from flowgraph.node import Node
from flowgraph.ports import Output
from flowgraph.registry import Registry
from flowgraph.testing import compile_text, running


class Requests(Node):
    """Asks stream 'a' for a keyframe three times."""

    control = Output(Control)

    async def run(self) -> None:
        for _ in range(3):
            await self.control.send(Control(command="keyframe", stream_id="a"))
            await asyncio.sleep(0.05)
        await self.wait_stopping()


async def test_control_for_another_stream_is_ignored() -> None:
    registry = Registry.default()
    registry.register("requests", Requests)
    plan = compile_text("""
nodes:
  req: {node: requests}
  a:
    node: ingest
    params: {url: "testsrc://", stream_id: a, width: 160, height: 96, fps: 10, people: 0}
    inputs: {control: req/control}
  b:
    node: ingest
    params: {url: "testsrc://", stream_id: b, width: 160, height: 96, fps: 10, people: 0}
    inputs: {control: req/control}
""", registry=registry)
    async with running(plan) as rt:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if rt.runners["a"].node.counters()["keyframe_requests"] == 3:
                break
        a, b = rt.runners["a"].node.counters(), rt.runners["b"].node.counters()
    assert a["keyframe_requests"] == 3 and a["controls_ignored"] == 0
    assert b["keyframe_requests"] == 0 and b["controls_ignored"] == 3
