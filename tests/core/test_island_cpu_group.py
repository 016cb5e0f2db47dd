"""The idle CPU group (flowgraph.island.cpu_group): a real worker process lands in a cgroup marked ``cpu.idle``,
the group goes with the graph's last worker, and a host that does not allow it leaves workers running, by nice."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from flowgraph.island import cpu_group
from flowgraph.testing import collected, running, until
from flowgraph.top import render

GRAPH = """
nodes:
  src: {node: frames, params: {width: 160, height: 90, fps: 60, count: 0, pool: 4}}
  cv: {node: burn, params: {ms: 1}, inputs: {inp: {from: src/frames, policy: latest}}}
  out: {node: collect, inputs: {inp: cv/out}}
"""


def _cpu_cgroup(pid: int, tid: int | None = None) -> str:
    where = f"/proc/{pid}/task/{tid}/cgroup" if tid is not None else f"/proc/{pid}/cgroup"
    with open(where, encoding="ascii") as handle:
        for line in handle:
            number, controllers, path = line.rstrip("\n").split(":", 2)
            if "cpu" in controllers.split(",") or (number == "0" and not controllers):
                return path
    raise AssertionError("no cpu cgroup")


def _exists(path: Path) -> bool:
    return path.exists()


def _group_allowed() -> bool:
    """Whether this host lets the graph make an idle CPU group (root on a writable CPU cgroup)."""
    group = cpu_group.IdleGroup()
    try:
        group._create()
    except OSError:
        return False
    assert group.path is not None
    group.path.rmdir()
    return True


def _stale_group() -> Path:
    """The group a killed graph process left behind: named after a pid that has ended."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    mount, own = cpu_group._cpu_hierarchy()
    stale = mount / own.lstrip("/") / f"{cpu_group.PREFIX}{ended.pid}"
    stale.mkdir()
    return stale


async def test_a_worker_runs_in_an_idle_cpu_group_that_goes_with_it() -> None:
    if not _group_allowed():
        pytest.skip("this host gives no write access to the CPU cgroup (not root, no delegation)")
    stale = _stale_group()
    async with running(GRAPH) as rt:
        assert await until(lambda: len(collected(rt, "out")) >= 5)
        node = rt.runners["cv"].node
        pid = node.transport.pid
        group = cpu_group.GROUP.path
        assert group is not None and group.name == f"flowgraph-analytics-{os.getpid()}"
        assert (group / "cpu.idle").read_text().strip() == "1"
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        assert all(_cpu_cgroup(pid, tid).endswith(group.name) for tid in tids), "the worker, every thread of it"
        # and what it would fall back to without the group: SCHED_IDLE threads at nice 19
        assert all(os.sched_getscheduler(tid) == os.SCHED_IDLE for tid in tids)
        assert all(os.getpriority(os.PRIO_PROCESS, tid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 19)
                   for tid in tids)
        assert _cpu_cgroup(os.getpid()) != _cpu_cgroup(pid), "the graph's own process stays where it was"
        snap = rt.snapshot()
        assert snap["nodes"]["cv"]["counters"]["island"]["cpu_group"] == str(group)
        assert not _exists(stale), "a killed graph's empty group is removed when the next graph makes its own"
        console = Console(width=200, record=True)
        console.print(render(snap))
        assert f"pid {pid} · idle" in console.export_text(), "flowgraph top says so"
    assert not _exists(group), "the group is removed with the last worker"


def test_a_host_without_cpu_cgroups_leaves_workers_by_nice(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    def unavailable() -> tuple[Path, str]:
        raise OSError("no cgroup hierarchy with the cpu controller is mounted")

    monkeypatch.setattr(cpu_group, "_cpu_hierarchy", unavailable)  # a fault this host cannot cause: it has one
    group = cpu_group.IdleGroup()
    with caplog.at_level(logging.WARNING, logger="flowgraph.island"):
        assert group.admit(os.getpid()) is None and group.admit(os.getpid()) is None
    warnings = [r for r in caplog.records if "no idle CPU group" in r.getMessage()]
    assert len(warnings) == 1 and "cpu controller" in warnings[0].getMessage(), "said once, with the reason"
    assert group.members == set()
