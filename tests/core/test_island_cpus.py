"""``cpus``: which CPUs a node's worker process runs on (flowgraph.island.cpus) — parsing, resolving on this host, the
graph's errors with their lines, and a real worker confined to what the graph says."""

from __future__ import annotations

import os

import pytest

from flowgraph.errors import GraphError
from flowgraph.island import cpus
from flowgraph.testing import collected, compile_text, running, until


def test_cpuset_lists_parse_and_print_back() -> None:
    assert cpus.parse("0-2,5") == {0, 1, 2, 5}
    assert cpus.parse(" 3 ") == {3} and cpus.parse(3) == {3} and cpus.parse([4, "6-7"]) == {4, 6, 7}
    assert cpus.describe({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8" and cpus.describe([4]) == "4"
    assert cpus.describe(None) == "all"
    for bad, why in (("2-1", "backwards"), ("one", "not a CPU number"), ([-1], "start at 0"), ([], "no CPUs"),
                     (True, "expected CPU numbers"), ({"a": 1}, "expected a list")):
        with pytest.raises(ValueError, match=why):
            cpus.parse(bad)


def test_a_list_resolves_to_the_cpus_the_graph_may_use() -> None:
    assert cpus.resolve(None, {0, 1}) is None and cpus.resolve("all", {0, 1}) is None, "all: affinity as inherited"
    assert cpus.resolve([3, 5], {2, 3, 5}) == (3, 5)
    assert cpus.resolve("1-3", {0, 1, 2}) == (1, 2), "CPUs the graph may not use are left out"
    with pytest.raises(ValueError, match="none of CPUs 8-9 is available here"):
        cpus.resolve([8, 9], {0, 1})


def test_the_plan_says_where_each_worker_runs_and_bad_cpus_name_their_line() -> None:
    allowed = cpus.available()
    plan = compile_text("""
nodes:
  src: {node: frames, params: {width: 64, height: 32, count: 1}}
  a: {node: burn, isolation: process, inputs: {inp: src/frames}}
  b: {node: burn, isolation: process, cpus: "MINE", inputs: {inp: src/frames}}
""".replace("MINE", str(max(allowed))))
    assert plan.nodes["a"].cpus is None and plan.nodes["b"].cpus == (max(allowed),)
    assert f"CPUs {max(allowed)}" in plan.describe() and "CPUs all" in plan.describe()
    assert plan.to_dict()["nodes"]["a"]["cpus"] == "all"
    plan = compile_text(f"""
defaults: {{cpus: "{min(allowed)}"}}
nodes:
  src: {{node: frames, params: {{count: 1}}}}
  a: {{node: burn, isolation: process, inputs: {{inp: src/frames}}}}
  t: {{node: burn, isolation: thread, inputs: {{inp: src/frames}}}}
""")
    assert plan.nodes["a"].cpus == (min(allowed),), "a graph-wide default applies to worker processes"
    assert plan.nodes["t"].cpus is None, "and leaves nodes on threads alone"

    for isolation, cpus_value, why in (("process", '"5-2"', "runs backwards"),
                                       ("process", "[4000]", "none of CPUs 4000 is available here"),
                                       ("thread", "[0]", "cpus pins a worker process")):
        with pytest.raises(GraphError) as err:
            compile_text(f"""
nodes:
  src: {{node: frames, params: {{count: 1}}}}
  a:
    node: burn
    isolation: {isolation}
    cpus: {cpus_value}
    inputs: {{inp: src/frames}}
""")
        assert "graph.yaml:7:" in str(err.value) and why in str(err.value), "the error names the cpus line"
    with pytest.raises(GraphError):  # the schema: not a number, a list or a word
        compile_text("nodes: {src: {node: frames, cpus: {first: 1}}}")
    plan = compile_text("""
nodes:
  src: {node: frames, params: {count: 1}}
  a: {node: burn, isolation: process, inputs: {inp: src/frames}}
""", overrides=[f"a.cpus={max(allowed)}"])
    assert plan.nodes["a"].cpus == (max(allowed),), "--set a.cpus=N sets the node key"


def _allowed_list(pid: int, tid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{tid}/status", encoding="ascii") as handle:
        line = next(line for line in handle if line.startswith("Cpus_allowed_list:"))
    return cpus.parse(line.split(":", 1)[1].strip())


async def test_a_worker_and_every_thread_it_starts_run_on_its_cpus_only() -> None:
    allowed = cpus.available()
    mine = max(allowed)
    # numpy's BLAS threads start when the worker imports it, before it reads its spec: confined too
    async with running(f"""
nodes:
  src: {{node: frames, params: {{width: 160, height: 90, fps: 60, count: 0, pool: 4}}}}
  cv:
    node: burn
    isolation: process
    cpus: [{mine}]
    params: {{ms: 1, report: true}}
    inputs: {{inp: {{from: src/frames, policy: latest}}}}
  out: {{node: collect, inputs: {{inp: cv/out}}}}
""") as rt:
        assert await until(lambda: len(collected(rt, "out")) >= 5)
        node = rt.runners["cv"].node
        pid = node.transport.pid
        tids = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
        assert all(_allowed_list(pid, tid) == {mine} for tid in tids), "every thread of the worker"
        assert _allowed_list(os.getpid(), os.getpid()) == allowed, "the graph's own process keeps every CPU"
        assert rt.snapshot()["nodes"]["cv"]["counters"]["island"]["cpus"] == str(mine)
