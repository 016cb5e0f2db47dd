"""An idle CPU group for worker processes: analytics runs on CPU time nothing else wants.

Priority by nice value does not keep the video path's latency when analytics saturates the host. The kernel's
fair scheduler (EEVDF since Linux 6.6) lets a running task finish its time slice before a task that wakes up gets
the CPU, and every frame's journey is a chain of such wakeups: the publisher's encoder threads, the graph's event
loop, the viewer's network, decoder and compositor threads. Each can wait a slice behind a CV thread, whatever
the CV's nice value: on the 2-CPU VM, workers at nice 10 put the viewers' p99 (capture → decoded in the browser)
5–13 ms above CV off; in the idle group, 0–6 ms (``tools/bench/stream_first.py``). ``SCHED_IDLE`` on the worker's
threads did not help either: it only ranks a task among the tasks of its own group (its session, under autogroup),
and at the top the groups compete as equals.

A CPU group marked idle (the cgroup ``cpu.idle`` flag, Linux ≥ 5.15, both cgroup versions) is ranked at the top:
a task of any other group that wakes up preempts it at once, and it gets only the CPU time left over. The graph
creates one such group beside its own (``flowgraph-analytics-<pid>`` under the graph's CPU cgroup) and moves each
worker process into it after the worker has loaded its models (loading at idle priority on a busy host would take
minutes); it removes the group when its last worker ends, and the empty groups of graph processes that were killed
before they could.

Where the host does not allow it (no write access to the CPU cgroup: not root and no delegated cgroup; a cgroup
v2 hierarchy whose parent holds processes and has no ``cpu`` controller for its children), workers keep their nice
value and scheduling-group nice, the reason is logged once and the island counters say ``cpu_group: null``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger("flowgraph.island")
#: Name of a graph process's group, followed by its pid.
PREFIX = "flowgraph-analytics-"


def _cpu_hierarchy() -> tuple[Path, str]:
    """(mount point, this process's path in it) of the CPU controller; OSError naming why there is none."""
    v1: dict[str, Path] = {}
    v2: Path | None = None
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) < 4:
                continue
            if fields[2] == "cgroup":
                for option in fields[3].split(","):
                    v1.setdefault(option, Path(fields[1]))
            elif fields[2] == "cgroup2" and v2 is None:
                v2 = Path(fields[1])
    with open("/proc/self/cgroup", encoding="utf-8") as own:
        memberships = [line.rstrip("\n").split(":", 2) for line in own if line.count(":") >= 2]
    if "cpu" in v1:
        for _, controllers, path in memberships:
            if "cpu" in controllers.split(","):
                return v1["cpu"], path
    if v2 is not None:
        for hierarchy, _, path in memberships:
            if hierarchy == "0":
                return v2, path
    raise OSError("no cgroup hierarchy with the cpu controller is mounted")


class IdleGroup:
    """One idle CPU group per graph process; workers join it when they are ready and it goes with the last."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.members: set[int] = set()
        self.problem: str | None = None

    def admit(self, pid: int) -> str | None:
        """Move process ``pid`` (all its threads) into the idle group; its path, or None where the host does not
        allow it (the reason is logged once)."""
        try:
            path = self.path or self._create()
            (path / "cgroup.procs").write_text(str(pid), encoding="ascii")
        except OSError as exc:
            if self.problem is None:
                self.problem = str(exc)
                log.warning("worker processes stay in their own scheduling group, by nice value only: no idle CPU "
                            "group (%s)", exc)
            return None
        self.members.add(pid)
        return str(path)

    def leave(self, pid: int) -> None:
        """``pid`` has ended (reaped): remove the group once no worker is left in it."""
        self.members.discard(pid)
        if not self.members and self.path is not None:
            with contextlib.suppress(OSError):  # busy: a worker not reaped yet; the next leave tries again
                self.path.rmdir()
                self.path = None

    def _create(self) -> Path:
        mount, own = _cpu_hierarchy()
        parent = mount / own.lstrip("/")
        if mount.joinpath("cgroup.controllers").exists():  # cgroup v2: children get the cpu controller only if asked
            enabled = (parent / "cgroup.subtree_control").read_text(encoding="ascii").split()
            if "cpu" not in enabled:
                (parent / "cgroup.subtree_control").write_text("+cpu", encoding="ascii")
        _remove_stale(parent)
        path = parent / f"{PREFIX}{os.getpid()}"
        path.mkdir(exist_ok=True)
        try:
            (path / "cpu.idle").write_text("1", encoding="ascii")
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            raise
        self.path = path
        return path


def _remove_stale(parent: Path) -> None:
    """Remove the empty groups of graph processes that have ended without removing theirs (killed): their
    workers died with them (``PR_SET_PDEATHSIG``), the folders would stay until reboot."""
    for child in parent.glob(f"{PREFIX}*"):
        pid = child.name[len(PREFIX):]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):  # not empty (a worker still running): left alone
                child.rmdir()
        except PermissionError:  # alive, someone else's
            continue


#: The graph process's group (every local worker of every graph in this process).
GROUP = IdleGroup()
