"""A worker process: builds one node from its :class:`~flowgraph.island.transport.WorkerSpec` and runs its
unchanged code, one message (or one batch for ``process_batch``) at a time, answering each call with what the node
produced.

Run as ``python -m flowgraph.island.worker FD`` by :class:`~flowgraph.island.local.LocalProcess`; FD is its end of
the Unix socket. Everything runs on this process's main thread (start, the handlers, stop), so libraries that
care which thread built them see one thread, as they do on the graph's worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import inspect
import logging
import os
import pickle
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from ..context import GraphScope, NodeContext
from ..messages import Message
from ..node import Node
from ..streams import StreamRegistry
from . import cpus, wire
from .frames import RingAnnouncement, RingView, dump_answer, load_call
from .transport import BATCH_PORT, END_STREAM_PORT, WorkerSpec

log = logging.getLogger("flowgraph.island")


class ForwardedStreams(StreamRegistry):
    """The worker's stream registry: every update also travels to the graph's registry with the next answer."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[str, str, str, dict[str, Any]]] = []

    def update(self, stream_id: str, role: str, **fields: Any) -> None:
        super().update(stream_id, role, **fields)
        self.pending.append(("update", stream_id, role, fields))

    def remove(self, stream_id: str, role: str) -> None:
        super().remove(stream_id, role)
        self.pending.append(("remove", stream_id, role, {}))

    def drain(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        pending, self.pending = self.pending, []
        return pending


async def _inline(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """The worker's ``offload``: the node already runs off the graph's event loop, on this process's thread."""
    return fn(*args, **kwargs)


def node_context(spec: WorkerSpec, registry: StreamRegistry) -> NodeContext:
    """The context a remote node gets: its name, device, wired inputs, and a scope of its own whose stream
    registry reaches back to the graph's. No HTTP server and no graph metrics: a node that serves clients runs in
    the graph's process; hubs shared with ``ctx.shared`` are shared within the worker only."""
    inputs = None if spec.inputs is None else frozenset(spec.inputs)
    return NodeContext(name=spec.name, device=spec.device, scope=GraphScope(spec.graph, streams=registry),
                       inputs=inputs, offloader=_inline)


def _load_class(path: str) -> type[Node]:
    module_name, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Node)):
        raise TypeError(f"{path} is not a node class")
    return obj


def _outputs(result: Any, default: str | None) -> list[tuple[str, Any]]:
    """A handler's return value as ``(port, message)`` pairs — the runner's rules for blocking nodes."""
    if result is None:
        return []
    if isinstance(result, dict):
        return [(port, m) for port, value in result.items()
                for m in (value if isinstance(value, list | tuple) else (value,))]
    if default is None:
        raise TypeError("a node with several outputs must return {port: message}")
    return [(default, m) for m in (result if isinstance(result, list | tuple) else (result,))]


def _frame_ids(msg: Any) -> int | list[int] | None:
    """What an error report names: the message's frame_id, a batch's frame_ids."""
    if isinstance(msg, list):
        return [m.frame_id for m in msg if isinstance(m, Message)]
    return msg.frame_id if isinstance(msg, Message) else None


def _die_with_parent() -> None:
    """Ask the kernel to end this process when the graph's process ends (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the graph already ended before the request took effect
        os._exit(1)


def lower_priority(nice: int, group: bool = True) -> None:
    """This process ``nice`` levels below the graph, and (``group``) its session's scheduling group too.

    Where the kernel schedules by session (autogroup, on by default on desktop and many server kernels), a process's
    nice value only orders it among the processes of its own session; the sessions themselves share the CPU by
    their group's nice value. The worker has a session of its own, so without the group's nice value it would get a
    full share beside the graph and beside a viewer on the same host. Measured with ``tools/bench/stream_first.py``
    (2-core VM, 30 s per case): glass-to-glass p99 with CV on went from 109 ms to 41–48 ms (CV off: 38–48) and
    vibrio's analysed fps stayed within noise, because the CV still gets every cycle nobody else wants. A Ray
    actor passes ``group=False``: its session is Ray's, shared with other workers.
    """
    base = os.getpriority(os.PRIO_PROCESS, 0)
    for tid in cpus.threads():  # on Linux a nice value is per thread: the node's start() may have started some
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, min(19, base + nice))
    if group:
        with contextlib.suppress(OSError), open("/proc/self/autogroup", "w", encoding="ascii") as handle:
            handle.write(str(min(19, max(0, nice))))


def idle_threads() -> None:
    """Every thread of this process (and every thread they start) under ``SCHED_IDLE``: it runs only when no other
    task of its scheduling group wants the CPU (``nice: idle``)."""
    for tid in cpus.threads():
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))


def group_nice() -> int | None:
    """This process's scheduling-group nice value (autogroup), or None where the kernel has no autogroup."""
    try:
        with open("/proc/self/autogroup", encoding="ascii") as handle:
            return int(handle.read().rsplit("nice", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


class Worker:
    def __init__(self, link: wire.BlockingLink, spec: WorkerSpec) -> None:
        self.link = link
        self.spec = spec
        self.streams = ForwardedStreams()
        self.cls = _load_class(spec.node_class)
        self.node = self.cls(node_context(spec, self.streams), spec.params)
        self.handlers = {port: getattr(self.node, self.cls.handler_name(port) or "process")
                         for port in self.cls.inputs}
        self.default = next(iter(self.cls.outputs)) if len(self.cls.outputs) == 1 else None
        self.ring = RingView()
        self.loop = asyncio.new_event_loop()

    def extras(self, process_ms: float) -> dict[str, Any]:
        extras: dict[str, Any] = {"process_ms": process_ms}
        # every answer: a snapshot taken right after a message must count it (a few µs for a CV node's dict)
        with contextlib.suppress(Exception):
            extras["counters"] = self.node.counters()
        pending = self.streams.drain()
        if pending:
            extras["streams"] = pending
        return extras

    def serve(self) -> None:
        while True:
            try:
                kind, body = self.link.receive()
            except wire.Closed:
                return
            if kind is wire.Kind.EXIT:
                return
            if kind is wire.Kind.RING:
                announcement: RingAnnouncement = pickle.loads(body)
                self.ring.attach(announcement, self.link.fds.popleft())
            elif kind is wire.Kind.CALL:
                self.call(body)

    def call(self, body: bytes) -> None:
        started = time.perf_counter()
        msg: Any = None
        try:
            (port, msg), incoming = load_call(body, self.ring)
            if port == BATCH_PORT:
                outputs = self.batch(msg)
            else:
                result = self.node.end_stream(msg) if port == END_STREAM_PORT else self.handlers[port](msg)
                if inspect.isawaitable(result):
                    result = self.loop.run_until_complete(result)
                outputs = _outputs(result, self.default)
            answer = dump_answer((outputs, self.extras((time.perf_counter() - started) * 1000)), incoming)
        except Exception as exc:
            frame_id = _frame_ids(msg)
            report = {"error": f"{type(exc).__name__}: {exc} (frame {frame_id}, in worker process {os.getpid()})\n"
                               + "".join(traceback.format_exception(exc)).rstrip(),
                      "extras": self.extras((time.perf_counter() - started) * 1000)}
            self.link.send(wire.Kind.ERROR, pickle.dumps(report))
            return
        self.link.send(wire.Kind.ANSWER, answer)

    def batch(self, msgs: list[Any]) -> list[tuple[str, Any]]:
        """One ``process_batch`` call; every message's outputs, in the messages' order."""
        results = self.node.process_batch(msgs)
        if inspect.isawaitable(results):
            results = self.loop.run_until_complete(results)
        if not isinstance(results, list | tuple) or len(results) != len(msgs):
            raise TypeError(f"process_batch must return one result per message ({len(msgs)}), got "
                            f"{len(results) if isinstance(results, list | tuple) else type(results).__name__}")
        return [pair for result in results for pair in _outputs(result, self.default)]

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.node.stop())
        except Exception:
            log.exception("node %r: stop() failed in its worker process", self.spec.name)
        self.loop.close()


def main(argv: list[str]) -> int:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the graph decides when its workers stop
    link = wire.BlockingLink(socket.socket(fileno=int(argv[1])))
    try:
        kind, body = link.receive()
    except wire.Closed:
        return 1
    if kind is not wire.Kind.INIT:
        return 2
    spec: WorkerSpec = pickle.loads(body)
    logging.basicConfig(level=spec.log_level, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s %(name)s [worker {spec.name} pid %(process)d] %(message)s")
    # CPUs first: libraries size their thread pools by the CPUs they may use when they load
    if spec.cpus is not None:
        cpus.confine(spec.cpus)
    try:
        worker = Worker(link, spec)
        worker.loop.run_until_complete(worker.node.start())
    except Exception as exc:
        link.send(wire.Kind.FAILED, pickle.dumps(f"{type(exc).__name__}: {exc}"))
        log.error("node %r failed to start", spec.name, exc_info=exc)
        return 1
    # Imports and model loading run at normal priority: the graph starts its nodes before any media flows, and
    # a niced start-up on a busy host takes minutes. The node's work from here on yields to the video path.
    if spec.nice:
        lower_priority(spec.nice)
    if spec.idle:  # in the graph's idle CPU group once READY (cpu_group); where there is none, the next best
        idle_threads()
    if spec.cpus is not None:
        cpus.confine(spec.cpus)  # threads start() made on its own terms
    link.send(wire.Kind.READY, pickle.dumps({"pid": os.getpid(), "nice": os.getpriority(os.PRIO_PROCESS, 0),
                                             "group_nice": group_nice(),
                                             "cpus": cpus.describe(cpus.available())}))
    try:
        worker.serve()
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
