"""The stand-in a graph runs in place of a node that lives in a worker process.

To the runtime it is an ordinary ``async`` node with the original's ports, params and device: its input channels
are the graph's (so the edge keeps its type, bound, policy, drops and age metrics), and each of its handlers hands
the message (or, for a node with ``process_batch``, the batch the runner took) to the worker and awaits the answer
before taking the next one. That await is the credit: the worker holds at most one message (or batch), the channel
in front of it does the rest — ``latest`` keeps the freshest frame of each stream waiting (never more than one call
in flight), ``block`` makes the producer wait, ``drop_oldest`` drops and counts.

Failures: an exception inside the node comes back as a :class:`~.transport.RemoteError` and goes through the
node's ``on_error`` like any other. A worker that dies (killed, crashed) raises :class:`~.transport.WorkerDied`
for the message it held; ``restart`` then stops and starts the stand-in (a fresh worker), ``stop`` stops the
graph, and ``skip_message`` starts a fresh worker when the next message arrives (at most one start every
``respawn_backoff_s``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

from ..messages import StreamEnd
from ..metrics import Samples
from ..node import Node, NodeContext
from .transport import END_STREAM_PORT, Answer, RemoteError, Transport, WorkerSpec

#: Seconds a worker has to import its libraries and run the node's ``start()`` (model loading included).
START_TIMEOUT_S = 120.0
#: Seconds a worker has to run the node's ``stop()`` before it is killed.
STOP_TIMEOUT_S = 5.0


class RemoteNode(Node):
    """Base of the stand-in classes :func:`flowgraph.island.placement.stand_in` builds, one per placed node."""

    #: The node class that runs in the worker.
    remote_cls: ClassVar[type[Node]]
    #: Niceness the worker process adds to its own (the graph's) priority.
    island_nice: ClassVar[int] = 10
    #: CPUs of the worker process (flowgraph.island.cpus); None = every CPU the graph may use.
    island_cpus: ClassVar[tuple[int, ...] | None] = None
    #: The worker joins the graph's idle CPU group (``nice: idle``, flowgraph.island.cpu_group).
    island_idle: ClassVar[bool] = False
    #: Seconds between respawns of a dead worker under ``on_error: skip_message``.
    respawn_backoff_s: ClassVar[float] = 0.5

    def __init__(self, ctx: NodeContext, params: Any = None) -> None:
        super().__init__(ctx, params)
        self.transport: Transport = self._transport()
        self._remote_counters: dict[str, Any] = {}
        #: Round trip of a call (graph side), and time inside the node (worker side).
        self.remote_time = Samples()
        self.node_time = Samples()
        self.worker_starts = 0
        self._death_counted = False  # the current worker's death was counted when a call saw it
        self.worker_deaths = 0
        self.remote_errors = 0
        self._last_start = float("-inf")
        self._worker_info: dict[str, Any] = {}

    def _transport(self) -> Transport:
        from .local import LocalProcess

        return LocalProcess(self.name)

    def spec(self) -> WorkerSpec:
        cls = self.remote_cls
        inputs = self.ctx.inputs
        return WorkerSpec(node_class=f"{cls.__module__}:{cls.__qualname__}", name=self.name, graph=self.ctx.graph,
                          device=self.device, params=self.params, nice=self.island_nice, cpus=self.island_cpus,
                          idle=self.island_idle,
                          log_level=logging.getLogger("flowgraph").getEffectiveLevel(),
                          inputs=None if inputs is None else sorted(inputs))

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def setup(self) -> None:
        # every node's setup() runs before the first start(): the workers import and load side by side
        await self.transport.launch(self.spec())

    async def start(self) -> None:
        self._last_start = time.monotonic()
        self._worker_info = await self.transport.start(self.spec(), START_TIMEOUT_S)
        self.worker_starts += 1
        self.log.info("runs in worker process %s (nice %s, scheduling group nice %s, CPUs %s)",
                      self._worker_info.get("pid"), self._worker_info.get("nice"), self._worker_info.get("group_nice"),
                      self._worker_info.get("cpus"))

    async def stop(self) -> None:
        await self.transport.close(STOP_TIMEOUT_S)

    async def call(self, port: str, msg: Any) -> None:
        if not self.transport.alive:
            if not self._death_counted:  # it died between messages (killed, crashed): counted, then replaced
                self.worker_deaths += 1
            await self._respawn()
        self._death_counted = False
        started = time.perf_counter()
        try:
            answer: Answer = await self.transport.call(port, msg)
        except RemoteError as exc:
            self.remote_errors += 1
            self._absorb(exc.extras)
            raise
        except Exception:
            if not self.transport.alive:
                self.worker_deaths += 1
                self._death_counted = True
            raise
        self._absorb(answer.extras)
        self.remote_time.add(time.perf_counter() - started)
        for port_name, out in answer.outputs:
            await self._outputs[port_name].send(out)

    async def end_stream(self, end: StreamEnd) -> None:
        """The node in the worker frees the stream's state too (the runner forwards the marker downstream)."""
        if self.transport.alive:
            await self.call(END_STREAM_PORT, end)

    async def _respawn(self) -> None:
        wait = self._last_start + self.respawn_backoff_s - time.monotonic()
        if wait > 0 and await self.wait_stopping(wait):
            raise RuntimeError(f"node {self.name!r}: graph stopping, worker not restarted")
        self.log.warning("worker process gone: starting a fresh one")
        await self.start()

    # -- figures ----------------------------------------------------------------------------------------------
    def _absorb(self, extras: dict[str, Any]) -> None:
        process_ms = extras.get("process_ms")
        if process_ms is not None:
            self.node_time.add(process_ms / 1000)
        counters = extras.get("counters")
        if counters is not None:
            self._remote_counters = counters
        updates = extras.get("streams")
        if updates:
            registry = self.ctx.streams
            for op, stream_id, role, fields in updates:
                if op == "update":
                    registry.update(stream_id, role, **fields)
                else:
                    registry.remove(stream_id, role)

    def counters(self) -> dict[str, Any]:
        call, inside = self.remote_time.summary_ms(), self.node_time.summary_ms()
        island = {"isolation": "process", "alive": self.transport.alive, "worker_starts": self.worker_starts,
                  "worker_deaths": self.worker_deaths, "remote_errors": self.remote_errors,
                  "call_ms_p50": call["p50"], "call_ms_p99": call["p99"], "node_ms_p50": inside["p50"],
                  "node_ms_p99": inside["p99"], "nice": self._worker_info.get("nice"),
                  "group_nice": self._worker_info.get("group_nice"), "cpus": self._worker_info.get("cpus"),
                  "cpu_group": self._worker_info.get("cpu_group"),
                  **self.transport.stats()}
        return {**self._remote_counters, "island": island}

