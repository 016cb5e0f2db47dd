"""Which CPUs a worker process may run on (``cpus``, per node or in ``defaults``).

``auto`` (default)
    every CPU the graph may use except its first one, which is left to the video path: the graph's event loop,
    and on a shared host the publishers and viewers beside it. On a one-CPU host, every CPU.
``all``
    every CPU the graph may use.
``"1-3,6"`` or ``[1, 2, 3, 6]``
    those CPUs (Linux cpuset list syntax); at least one of them must be one the graph may use.

Why ``auto`` leaves a CPU: the video path (the graph's event loop, a publisher's encoder and a viewer's browser on
a shared host) always has a CPU where analytics never runs. Measured on the 2-CPU VM with ``nice: idle``
(``tools/bench/stream_first.py``, three rounds): the viewers' latency is the same either way (decoded p50/p99 14/28
ms with ``auto``, 13/29 with ``all``; CV off 13/25) and so is vibrio's analysed fps (16.6 and 16.3), but the server
and its workers used 65–72 % of a core instead of 103–113 %: a worker whose libraries size their thread pools to
one CPU wastes no time spinning across two. On a host with N CPUs ``auto`` costs the analytics 1/N of the machine
at most.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

#: Values of ``cpus`` that are not a list of CPUs.
KEYWORDS = ("auto", "all")
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
    """The CPUs a worker gets for ``value`` (None: leave its affinity as inherited). ValueError when a list names
    no CPU the graph may use."""
    allowed = available() if allowed is None else allowed
    if value is None or value == "auto":
        if len(allowed) < 2:
            return None
        return tuple(sorted(allowed - {min(allowed)}))
    if value == "all":
        return None
    wanted = parse(value)
    usable = wanted & allowed
    if not usable:
        raise ValueError(f"none of CPUs {describe(wanted)} is available here (this process may use "
                         f"{describe(allowed)})")
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
