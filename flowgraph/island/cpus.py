"""Which CPUs a worker process may run on (``cpus``, per node or in ``defaults``).

``all`` (default)
    every CPU the graph may use.
``"1-3,6"`` or ``[1, 2, 3, 6]``
    those CPUs (Linux cpuset list syntax); at least one of them must be one the graph may use.

Why not leave a CPU to the video path by default: with the workers in the idle CPU group (:mod:`.cpu_group`) a
pinned worker gave the viewers no better latency on the 2-CPU VM (``tools/bench/stream_first.py``: decoded p99
28–29 ms either way, CV off 25–28), and it cost analytics throughput whenever the other CPU was free: in the demo
with people in the picture, moriarty analysed 6.2–6.5 fps pinned against 7.8–7.9 on both CPUs (vibrio 19.7–20.6
against 17.9–18.8). Pin where a host runs other latency-critical work the scheduler cannot see.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def available() -> set[int]:
    """The CPUs this process may run on (its affinity mask; every CPU where the OS has no such call)."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def parse(value: Any) -> set[int]:
    """A cpuset list (``"0-2,5"``, ``3``, ``[1, 2]``) as a set of CPU numbers; ValueError naming what is wrong."""
    if isinstance(value, bool):
        raise ValueError(f"expected CPU numbers, got {value!r}")
    if isinstance(value, int):
        items: list[Any] = [value]
    elif isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError(f"expected a list like '1-3,6' or [1, 2], got {type(value).__name__}")
    cpus: set[int] = set()
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            if item < 0:
                raise ValueError(f"CPU numbers start at 0, got {item}")
            cpus.add(item)
            continue
        match = _RANGE.match(str(item))
        if match is None:
            raise ValueError(f"{str(item).strip()!r} is not a CPU number or range (like 2 or 1-3)")
        low, high = int(match[1]), int(match[2] or match[1])
        if high < low:
            raise ValueError(f"range {low}-{high} runs backwards")
        cpus.update(range(low, high + 1))
    if not cpus:
        raise ValueError("no CPUs listed")
    return cpus


def resolve(value: Any, allowed: set[int] | None = None) -> tuple[int, ...] | None:
    """The CPUs a worker gets for ``value`` (None: leave its affinity as inherited, every CPU the graph may use).
    ValueError when a list names no CPU the graph may use."""
    if value is None or value == "all":
        return None
    allowed = available() if allowed is None else allowed
    wanted = parse(value)
    usable = wanted & allowed
    if not usable:
        raise ValueError(
            f"none of CPUs {describe(wanted)} is available here (this process may use {describe(allowed)})"
        )
    return tuple(sorted(usable))


def describe(cpus: set[int] | tuple[int, ...] | list[int] | None) -> str:
    """``0-2,5`` for {0, 1, 2, 5}; ``all`` for None."""
    if cpus is None:
        return "all"
    ordered = sorted(cpus)
    parts: list[str] = []
    start = prev = ordered[0]
    for cpu in [*ordered[1:], -2]:
        if cpu == prev + 1:
            prev = cpu
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = cpu
    return ",".join(parts)


def confine(cpus: tuple[int, ...] | list[int]) -> None:
    """This process, every thread it has now and every thread it starts later, on ``cpus`` only (Linux: the
    mask is per thread and a new thread inherits its creator's)."""
    for tid in threads():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)


def threads() -> list[int]:
    """This process's thread ids (the kernel's ``/proc/self/task``); [0] (this thread) where there is none."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]
