"""The seam between a stand-in node and wherever its node really runs.

A :class:`Transport` starts one worker for one node, hands it one message (or one batch, :data:`BATCH_PORT`) at a
time and brings back what the node produced. :class:`~flowgraph.island.local.LocalProcess` runs the worker as a
process on this host with pictures in shared memory; a Ray placement implements the same four calls with an actor
(``start`` = create the actor, ``call`` = an actor method with frames in the object store or, co-located, the same
ring) — the stand-in node, the edges, the failure policy and the metrics do not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class WorkerSpec:
    """Everything a worker needs to build the node: small, explicit, picklable."""

    node_class: str  # "package.module:QualName", imported in the worker
    name: str
    graph: str
    device: str
    params: Any
    nice: int
    log_level: int
    #: Input ports wired in the graph (``NodeContext.inputs``); None = all declared.
    inputs: list[str] | None = None
    #: CPUs the worker runs on (flowgraph.island.cpus); None = as inherited.
    cpus: tuple[int, ...] | None = None
    #: Join the graph's idle CPU group once ready (flowgraph.island.cpu_group), where the host allows.
    idle: bool = False


@dataclass
class Answer:
    """What one call produced: ``(port, message)`` in emission order, plus the worker's figures."""

    outputs: list[tuple[str, Any]]
    #: process_ms (time inside the node), counters (the node's, now and then), streams (registry updates)
    extras: dict[str, Any] = field(default_factory=dict)


class WorkerDied(RuntimeError):
    """The worker ended (killed, crashed, or closed its end) — the message it held is lost."""


class RemoteError(RuntimeError):
    """The node raised inside its worker; the message names the exception and carries its traceback."""

    def __init__(self, message: str, extras: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.extras = extras or {}


class Transport(Protocol):
    """One worker for one node."""

    @property
    def alive(self) -> bool: ...

    @property
    def pid(self) -> int | None: ...

    async def launch(self, spec: WorkerSpec) -> None:
        """Begin starting the worker without waiting for it (the graph boots all its workers side by side)."""
        ...

    async def start(self, spec: WorkerSpec, timeout: float) -> dict[str, Any]:
        """Finish starting the worker (launching it first unless :meth:`launch` did) and the node in it (its
        ``start()`` done); returns what the worker reports."""
        ...

    async def call(self, port: str, msg: Any) -> Answer:
        """Hand ``msg`` to the node's handler for ``port``; raises :class:`WorkerDied` or :class:`RemoteError`."""
        ...

    async def close(self, timeout: float) -> int | None:
        """Stop the node and the worker (killing it after ``timeout``); returns its exit code. Idempotent."""
        ...

    def stats(self) -> dict[str, Any]:
        """Transport figures for metrics (frames and bytes through shared memory, ...)."""
        ...


#: The port name under which a stream-end marker is handed to the worker: it calls the node's ``end_stream``.
END_STREAM_PORT = "__end_stream__"
#: The port name under which a list of messages is handed to the worker for the node's ``process_batch``; the
#: answer holds every message's outputs, in the messages' order.
BATCH_PORT = "__batch__"
