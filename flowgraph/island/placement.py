"""Which nodes run in a worker process, decided at compile time.

``isolation`` (per node, or in ``defaults``):

``auto`` (default)
    what the node type declares (``Node.isolation``): ``process`` for the heavy CV types (vibrio, moriarty)
    when they run on the CPU in a worker thread, ``thread`` for everything else.
``process``
    the node's own worker process, below the graph's process: ``nice: idle`` when not given (:mod:`.cpu_group`).
``thread``
    the node's worker thread in the graph's process (``nice`` then lowers that thread).

A worker process runs on the CPUs ``cpus`` gives (:mod:`.cpus`): by default every CPU the graph may use.

Only a blocking, non-source node on the CPU can move (a plain ``def process`` in a worker thread today): ``async``
nodes serve the graph's clients and sources feed it; a node that registers HTTP routes in ``setup`` needs the
graph's server. Asking for ``process`` anywhere else is an error naming the node and the reason.
"""

from __future__ import annotations

from typing import Any

from ..node import Node
from .remote import RemoteNode
from .transport import BATCH_PORT

ISOLATIONS = ("auto", "thread", "process")
#: A worker process's priority when the node gives none: ``nice: idle`` — the idle CPU group (:mod:`.cpu_group`)
#: and nice 19 inside it (all it gets where there is no such group): analytics runs on CPU time the video path
#: does not want.
DEFAULT_NICE = 19
DEFAULT_IDLE = True


def why_not(cls: type[Node], mode: str, device: str) -> str | None:
    """Why a node cannot run in a worker process (None when it can)."""
    if cls.is_source():
        return "a source runs in the graph's process"
    if mode == "inline":
        return "a cheap node runs inline on the graph's loop"
    if mode == "async" or not cls.blocking():
        return "an async node runs on the graph's event loop (only a blocking 'def process' node can move)"
    if device != "cpu":
        return f"device {device}: process isolation is CPU-only for now"
    if cls.setup is not Node.setup:
        return "the node registers routes in setup() and needs the graph's HTTP server"
    return None


def resolve(requested: str | None, cls: type[Node], mode: str, device: str, *,
            strict: bool = True) -> tuple[str, str | None]:
    """``(isolation, problem)``: the isolation to use, or why ``process`` is refused. ``strict`` is False for a
    graph-wide default: ``defaults: {isolation: process}`` moves every node that can move."""
    requested = requested or "auto"
    if requested == "thread":
        return "thread", None
    problem = why_not(cls, mode, device)
    if requested == "process":
        if problem is None:
            return "process", None
        return "thread", problem if strict else None
    return ("process" if cls.isolation == "process" and problem is None else "thread"), None


def stand_in(cls: type[Node], nice: int = DEFAULT_NICE, max_batch: int = 1,
             cpus: tuple[int, ...] | None = None, idle: bool = False) -> type[Node]:
    """The class the runtime builds in place of ``cls``: same ports, params and summary; handlers forward. With
    ``max_batch`` > 1 and a ``cls.process_batch``, a batch goes to the worker as one call. ``cpus``: the worker's
    CPUs (:mod:`.cpus`; None = every CPU); ``idle``: the worker joins the idle CPU group (:mod:`.cpu_group`)."""
    namespace: dict[str, Any] = {
        "__doc__": cls.__doc__,
        "__module__": __name__,
        "remote_cls": cls,
        "island_nice": nice,
        "island_cpus": cpus,
        "island_idle": idle,
        "Params": cls.Params,
        "gpu": cls.gpu,
        "type_name": cls.type_name,
        "plan_notes": cls.plan_notes,  # what `validate --plan` says of the node is the original's
        "live_params": cls.live_params,
    }
    namespace.update(cls.inputs)
    namespace.update(cls.outputs)
    for port in cls.inputs:
        namespace[f"on_{port}"] = _forwarder(port)
    if max_batch > 1 and cls.batch_ports():
        namespace.update(batch_ports=cls.batch_ports, process_batch=_batch_forwarder)
    return type(f"Remote{cls.__name__}", (RemoteNode,), namespace)


async def _batch_forwarder(self: RemoteNode, msgs: list[Any]) -> None:
    await self.call(BATCH_PORT, msgs)


def _forwarder(port: str) -> Any:
    async def forward(self: RemoteNode, msg: Any) -> None:
        await self.call(port, msg)

    forward.__name__ = f"on_{port}"
    return forward
