"""Live re-wiring: edits applied to a running graph; unchanged nodes keep their objects, state and channels."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from flowgraph.compile import compile_plan
from flowgraph.live import LiveGraph, unfused
from flowgraph.node import Node
from flowgraph.rewire import diff_plans
from flowgraph.runtime import Runtime
from flowgraph.spec import parse_spec
from flowgraph.testing import collected, compile_text, running

BASE = """
name: live
nodes:
  t: {node: tick, params: {hz: 200}}
  s: {node: slow, params: {delay_s: 0.001}, inputs: {inp: {from: t/out, policy: block, queue: 64}}}
  c: {node: collect, inputs: {inp: {from: s/out, policy: block}}}
"""


def values(rt: Runtime, node: str) -> list[int]:
    return [m.value for m in collected(rt, node)]


def gap_free(seq: list[int]) -> bool:
    return seq == list(range(seq[0], seq[0] + len(seq))) if seq else False


async def eventually(check: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


def live_runtime(rt: Runtime, text: str = BASE) -> LiveGraph:
    rt.live = LiveGraph(rt, "graph.yaml", text)
    return rt.live


@pytest.fixture
def plan() -> Runtime:
    return unfused(compile_text(BASE))  # type: ignore[return-value]


def test_diff_names_what_changes() -> None:
    old = compile_text(BASE)
    extra = "  d: {node: collect, inputs: {inp: t/out}}\n"
    new = compile_text(BASE.replace("delay_s: 0.001}", "delay_s: 0.002, mode: busy}")
                       .replace("  c: {node: collect", extra + "  c: {node: collect")
                       .replace("from: s/out, policy: block}", "from: s/out, policy: drop_oldest, queue: 4}"))
    d = diff_plans(old, new)
    assert d.added == ["d"] and d.removed == []
    assert d.restarted == {"s": ["params.delay_s", "params.mode"]}
    assert d.live == {} and d.unchanged == ["t", "c"]
    assert d.edges_added == [("t", "out", "d", "inp")]
    assert d.edges_changed == {("s", "out", "c", "inp"): ["policy block -> drop_oldest", "queue 8 -> 4"]}
    live_only = diff_plans(old, compile_text(BASE.replace("delay_s: 0.001", "delay_s: 0.004")))
    assert live_only.live == {"s": ["params.delay_s"]} and not live_only.restarted
    assert "~ node s live: params.delay_s (no restart)" in live_only.describe()
    assert diff_plans(old, compile_text(BASE)).empty


def test_a_new_max_batch_restarts_the_node() -> None:
    text = "nodes: {t: {node: tick}, b: {node: burn, isolation: thread, max_batch: 4, inputs: {inp: t/out}}}"
    old = compile_text(text)
    d = diff_plans(old, compile_text(text.replace("max_batch: 4", "max_batch: 2, batch_wait_ms: 5")))
    assert d.restarted == {"b": ["max_batch", "batch_wait_ms"]}
    assert diff_plans(old, compile_text(text)).empty


async def test_add_and_remove_a_node_while_the_rest_flows(plan) -> None:
    async with running(plan) as rt:
        live = live_runtime(rt)
        collector, slow = rt.runners["c"].node, rt.runners["s"].node
        assert await eventually(lambda: len(values(rt, "c")) > 20)
        added = await live.apply_text(BASE + "  d: {node: collect, inputs: {inp: t/out}}\n")
        assert added.ok and added.changed and added.diff is not None and added.diff.added == ["d"]
        assert await eventually(lambda: len(values(rt, "d")) > 20)
        removed = await live.apply_text(BASE)
        assert removed.ok and removed.diff is not None and removed.diff.removed == ["d"]
        assert "d" not in rt.runners
        before = len(values(rt, "c"))
        assert await eventually(lambda: len(values(rt, "c")) > before + 20)
        # the untouched nodes are the same objects, and what they received has no gap
        assert rt.runners["c"].node is collector and rt.runners["s"].node is slow
        assert gap_free(values(rt, "c"))
        assert [v.number for v in live.history] == [1, 2, 3]


async def test_a_restarted_node_takes_over_the_queued_messages(plan) -> None:
    async with running(plan) as rt:
        live = live_runtime(rt)
        old_slow = rt.runners["s"].node
        assert await eventually(lambda: len(values(rt, "c")) > 20)
        result = await live.apply_text(BASE.replace("delay_s: 0.001}", "delay_s: 0.001, mode: busy}"))
        assert result.ok and result.diff is not None and result.diff.restarted == {"s": ["params.mode"]}
        assert rt.runners["s"].node is not old_slow and rt.runners["s"].node.params.mode == "busy"
        before = len(values(rt, "c"))
        assert await eventually(lambda: len(values(rt, "c")) > before + 50)
        assert gap_free(values(rt, "c"))  # block edges: nothing lost across the restart
        assert result.lost == 0


async def test_live_params_change_in_place(plan) -> None:
    async with running(plan) as rt:
        live = live_runtime(rt)
        node = rt.runners["s"].node
        result = await live.apply_text(BASE.replace("delay_s: 0.001", "delay_s: 0.003"))
        assert result.ok and result.diff is not None and result.diff.live == {"s": ["params.delay_s"]}
        assert rt.runners["s"].node is node and node.params.delay_s == 0.003
        assert rt.runners["s"].stats.state == "running"


async def test_reroute_an_edge_and_change_its_policy(plan) -> None:
    text = BASE + "  u: {node: tick, params: {hz: 100, stream_id: other}}\n"
    async with running(unfused(compile_text(text))) as rt:
        live = live_runtime(rt, text)
        collector = rt.runners["c"].node
        rerouted = text.replace("from: s/out, policy: block}", "from: u/out, policy: drop_oldest, queue: 4}")
        result = await live.apply_text(rerouted)
        assert result.ok and result.diff is not None
        assert result.diff.edges_added == [("u", "out", "c", "inp")]
        assert ("s", "out", "c", "inp") in result.diff.edges_removed
        count = len(collected(rt, "c"))
        assert await eventually(lambda: len(collected(rt, "c")) > count + 20)
        assert collected(rt, "c")[-1].stream_id == "other" and rt.runners["c"].node is collector
        edge = next(e for e in rt.snapshot()["edges"] if e["to"] == "c/inp")
        assert edge["from"] == "u/out" and edge["policy"] == "drop_oldest" and edge["size"] == 4


async def test_an_invalid_edit_changes_nothing(plan) -> None:
    async with running(plan) as rt:
        live = live_runtime(rt)
        runners = dict(rt.runners)
        result = await live.apply_text(BASE.replace("node: slow", "node: slwo"))
        assert not result.ok and result.error is not None
        assert result.error.startswith("graph.yaml:5:") and "slwo" in result.error and "slow" in result.error
        assert rt.runners == runners and live.last_error == result.error
        assert [v.number for v in live.history] == [1]
        before = len(values(rt, "c"))
        assert await eventually(lambda: len(values(rt, "c")) > before + 20)


async def test_five_edits_in_one_second_end_in_the_last_one(plan) -> None:
    async with running(plan) as rt:
        live = live_runtime(rt)
        delays = [0.001 * k for k in range(2, 7)]
        extra = "  x{k}: {{node: collect, inputs: {{inp: t/out}}}}\n"
        edits = [BASE.replace("delay_s: 0.001", f"delay_s: {d}") + extra.format(k=k) for k, d in enumerate(delays)]
        results = await asyncio.gather(*(live.apply_text(text) for text in edits))
        assert all(r.ok and r.changed for r in results)
        assert rt.runners["s"].node.params.delay_s == delays[-1]
        assert {n for n in rt.runners if n.startswith("x")} == {"x4"}
        assert await eventually(lambda: len(values(rt, "x4")) > 10)
        assert gap_free(values(rt, "c"))


async def test_nodes_that_serve_http_are_not_restarted_or_added_live(reg) -> None:
    async def answer(request: object) -> None:
        return None

    class Api(Node):
        """Registers a route (like webrtc_out or ws_out)."""

        async def setup(self) -> None:
            self.ctx.server.add_get(f"/api/{self.name}", answer)  # type: ignore[arg-type]

        async def run(self) -> None:
            await self.wait_stopping()

    reg.register("api", Api)
    text = "nodes:\n  a: {node: api}\n  t: {node: tick, params: {hz: 50}}\n  c: {node: collect, inputs: {inp: t/out}}\n"
    async with running(unfused(compile_plan(parse_spec(text, "graph.yaml"), reg))) as rt:
        rt.live = LiveGraph(rt, "graph.yaml", text, registry=reg)
        result = await rt.live.apply_text(text.replace("a: {node: api}", "a: {node: api, nice: 3}"))
        assert not result.ok and result.error is not None and "'a' (api) serve HTTP routes" in result.error
        assert rt.runners["a"].stats.state == "running"
        added = await rt.live.apply_text(text + "  b: {node: api}\n")
        assert not added.ok and added.error is not None and "'b' (api) serves HTTP routes" in added.error
        assert "b" not in rt.runners and rt.runners["a"].stats.state == "running"
        # a node that only overrides setup() without routes is restarted as usual
        changed = await rt.live.apply_text(text.replace("hz: 50", "hz: 40"))
        assert changed.ok and changed.diff is not None and changed.diff.restarted == {"t": ["params.hz"]}


async def test_put_api_graph_needs_the_token(plan, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = Runtime(plan, port=0, serve=True)
    rt.live = LiveGraph(rt, "graph.yaml", BASE, env={"GRAPH_TOKEN": "s3cret"})
    task = asyncio.ensure_future(rt.run(install_signals=False))
    await rt.ready.wait()
    try:
        url = rt.server.url + "/api/graph"
        edit = BASE + "  d: {node: collect, inputs: {inp: t/out}}\n"
        async with aiohttp.ClientSession() as http:
            async with http.put(url, data=edit) as r:
                assert r.status == 401
            async with http.put(url, data=edit, headers={"Authorization": "Bearer nope"}) as r:
                assert r.status == 401
            async with http.put(url, data="nodes: [", headers={"Authorization": "Bearer s3cret"}) as r:
                body = await r.json()
                assert r.status == 400 and body["error"].startswith("graph.yaml:1:")
            async with http.put(url, data=edit, headers={"Authorization": "Bearer s3cret"}) as r:
                body = await r.json()
                assert r.status == 200 and body["version"] == 2 and body["diff"]["added"] == ["d"]
            async with http.get(rt.server.url + "/api/graph") as r:
                graph = await r.json()
                assert "d" in graph["nodes"] and graph["live"]["version"] == 2
    finally:
        rt.request_stop()
        await asyncio.wait_for(task, 30)


async def test_put_api_graph_is_off_without_a_token(plan) -> None:
    rt = Runtime(plan, port=0, serve=True)
    rt.live = LiveGraph(rt, "graph.yaml", BASE, env={})
    task = asyncio.ensure_future(rt.run(install_signals=False))
    await rt.ready.wait()
    try:
        async with aiohttp.ClientSession() as http, http.put(rt.server.url + "/api/graph", data=BASE) as r:
            assert r.status == 403 and "GRAPH_TOKEN" in (await r.json())["error"]
    finally:
        rt.request_stop()
        await asyncio.wait_for(task, 30)


async def test_watch_applies_the_saved_file(plan, tmp_path: Path) -> None:
    path = tmp_path / "graph.yaml"
    path.write_text(BASE)
    async with running(plan) as rt:
        live = live_runtime(rt)
        watcher = asyncio.create_task(live.watch(path, interval=0.05))
        try:
            path.write_text(BASE + "  d: {node: collect, inputs: {inp: t/out}}\n")
            assert await eventually(lambda: "d" in rt.runners and len(values(rt, "d")) > 5)
            path.write_text(BASE.replace("tick", "tock"))  # invalid: nothing changes, the error is kept
            assert await eventually(lambda: live.last_error is not None)
            assert "d" in rt.runners and "tock" in (live.last_error or "")
        finally:
            watcher.cancel()


def test_cli_diff(tmp_path: Path) -> None:
    old, new = tmp_path / "a.yaml", tmp_path / "b.yaml"
    old.write_text(BASE)
    new.write_text(BASE.replace("delay_s: 0.001", "delay_s: 0.01") + "  d: {node: collect, inputs: {inp: t/out}}\n")
    run = subprocess.run([sys.executable, "-m", "flowgraph.cli", "diff", str(old), str(new)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1, run.stderr
    assert "+ node d" in run.stdout and "~ node s live: params.delay_s (no restart)" in run.stdout
    same = subprocess.run([sys.executable, "-m", "flowgraph.cli", "diff", str(old), str(old)], capture_output=True,
                          text=True, timeout=60)
    assert same.returncode == 0 and "no changes" in same.stdout


async def test_the_graph_page_shows_edits_as_they_land(plan) -> None:
    from flowgraph.nodes.webrtc.browser import Chromium

    rt = Runtime(plan, port=0, serve=True)
    rt.live = LiveGraph(rt, "graph.yaml", BASE, env={})
    task = asyncio.ensure_future(rt.run(install_signals=False))
    await rt.ready.wait()
    try:
        async with Chromium() as browser:
            page = await browser.open(rt.server.url + "/graph")
            # the page may still be loading: optional chaining keeps the wait from throwing on a missing element
            await page.wait_for("document.getElementById('version')?.textContent.includes('graph version 1')",
                                timeout=30)
            assert await page.eval("document.getElementById('node-d') === null")
            result = await rt.live.apply_text(BASE + "  d: {node: collect, inputs: {inp: t/out}}\n")
            assert result.ok
            # the page notices the new version, redraws itself with node d, and lists the edit in its history
            await page.wait_for("document.getElementById('node-d') !== null", timeout=30)
            await page.wait_for("document.getElementById('version').textContent.includes('graph version 2')",
                                timeout=30)
            assert "+ node d" in await page.eval("document.getElementById('history').textContent")
            await rt.live.apply_text(BASE.replace("tick", "tock"))
            await page.wait_for("document.getElementById('version').className === 'refused'", timeout=30)
            assert "tock" in await page.eval("document.getElementById('version').textContent")
    finally:
        rt.request_stop()
        await asyncio.wait_for(task, 30)
