"""The one node protocol.

A node declares typed ports and a params dataclass, and does one thing::

    class Scale(Node):
        \"\"\"Multiplies numbers.\"\"\"
        numbers = Input(Data)
        scaled = Output(Data)

        @dataclass
        class Params:
            factor: float = param(2.0, "multiplier")

        async def process(self, msg: Data) -> None:
            await self.scaled.send(Data(value=msg.value * self.params.factor).like(msg))

How it runs follows from how it is written:

* ``async def process`` runs on the event loop (I/O nodes). Heavy calls inside go through ``await
  self.offload(fn, ...)``, which runs them in the node's own worker thread (and CUDA stream on a GPU).
* ``def process`` (plain) is a *blocking* node: it runs in the node's worker thread and **returns** what it
  produces — a message for the single output, a list of messages, or ``{port: message | [messages]}``.
  With ``cheap = True`` it instead runs inline on the loop and may be fused into its producer's stage.
* With several inputs, ``on_<port>`` handles that port; ``process`` handles the rest.
* A blocking node may also define ``process_batch(msgs) -> list`` (one result per message, in order; each what
  ``process`` would return). The runner then hands it up to ``max_batch`` messages that are already queued on one
  input ``process`` serves (on a ``latest`` edge: the newest frame of each stream), in one call in the worker
  thread; it never waits for a batch to fill beyond the node's ``batch_wait_ms`` (default 0). An
  ``async def process_batch`` sends its outputs itself (and nothing before it can still fail: a batch that raises
  under ``on_error: skip_message`` goes again one message at a time). ``process`` stays the one-message form.
* A source has no inputs and a ``run`` method: ``async def run`` sends on its outputs until ``self.stopping``;
  a plain ``def run`` is a generator run in the worker thread that yields messages (or ``(port, message)``).
  Returning ends the stream, which then propagates downstream.
* ``async def flush`` is called once every input has ended, to emit what is still held.
* Many streams share one node (``stream_id`` on every message): keep per-stream state in a dict created on a
  stream's first message, and free it in ``end_stream(end)``, which the runtime calls when that stream's
  :class:`~flowgraph.messages.StreamEnd` arrives (then it forwards the marker on every output).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .context import NodeContext as NodeContext  # re-exported: the node protocol in one import
from .messages import StreamEnd
from .params import NoParams
from .ports import BoundOutput, Input, Output

if TYPE_CHECKING:
    from .access import Surface

T = TypeVar("T")


class Node:
    """Base class of every node. Subclasses declare ports as ``Input``/``Output`` attributes."""

    #: Params dataclass, validated against its derived JSON Schema before anything starts.
    Params: ClassVar[type] = NoParams
    #: A plain ``process`` that is cheap enough to run inline on the loop (fusable into its producer's stage).
    cheap: ClassVar[bool] = False
    #: The node can use a CUDA device (``device: auto`` then picks CUDA when present).
    gpu: ClassVar[bool] = False
    #: ``end_stream`` sends the stream's :class:`~flowgraph.messages.StreamEnd` on itself, in order after the
    #: stream's last output (a node that pipelines work); otherwise the runtime forwards it after ``end_stream``.
    forwards_stream_end: ClassVar[bool] = False
    #: Where ``isolation: auto`` runs the node: ``"process"`` (heavy CPU work: its own worker process) or
    #: ``"thread"`` (a worker thread in the graph's process). See :mod:`flowgraph.island`.
    isolation: ClassVar[str] = "thread"
    #: Name in the registry; set when registered.
    type_name: ClassVar[str] = ""
    #: Params that a live edit of the graph changes in place (:meth:`update_params`), without a restart.
    live_params: ClassVar[frozenset[str]] = frozenset()
    #: Messages a node with ``process_batch`` takes per call unless the graph says ``max_batch`` (1 = never batch).
    max_batch: ClassVar[int] = 8

    inputs: ClassVar[dict[str, Input[Any]]] = {}
    outputs: ClassVar[dict[str, Output[Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        inputs: dict[str, Input[Any]] = {}
        outputs: dict[str, Output[Any]] = {}
        for klass in reversed(cls.__mro__):
            for key, value in vars(klass).items():
                if isinstance(value, Input):
                    inputs[key] = value
                elif isinstance(value, Output):
                    outputs[key] = value
        cls.inputs = inputs
        cls.outputs = outputs

    def __init__(self, ctx: NodeContext, params: Any = None) -> None:
        self.ctx = ctx
        self.params = params if params is not None else self.Params()
        self.log = logging.getLogger(f"flowgraph.node.{ctx.name}")
        self._outputs: dict[str, BoundOutput[Any]] = {name: BoundOutput(ctx.name, name) for name in self.outputs}
        # ``Output`` is a non-data descriptor: the instance attribute shadows it, so ``self.out`` on the hot path
        # is a dict lookup, not a Python-level ``__get__`` call
        vars(self).update(self._outputs)
        self._stopping = asyncio.Event()

    # -- identity ---------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.ctx.name

    @property
    def device(self) -> str:
        return self.ctx.device

    @property
    def stopping(self) -> bool:
        """True once the graph asked this node to stop; sources end their loop when they see it."""
        return self._stopping.is_set()

    async def wait_stopping(self, seconds: float | None = None) -> bool:
        """Sleep until asked to stop (or for ``seconds``); returns whether stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    # -- lifecycle (override what you need) -------------------------------------------------------------------
    async def setup(self) -> None:
        """Once per run, before the first ``start``: register HTTP routes (``self.ctx.server``), shared hubs."""

    async def start(self) -> None:
        """Acquire resources. Called before any message flows, and again after a restart's ``stop``."""

    async def stop(self) -> None:
        """Release resources. Called once, after the node's last message (or on failure before a restart)."""

    async def flush(self) -> None:
        """Every input has ended: emit whatever is still held."""

    def update_params(self, params: Any) -> None:
        """A live edit changed only params in ``live_params``: take them. Override when state derives from them."""
        self.params = params

    def end_stream(self, end: StreamEnd) -> Any:
        """Stream ``end.stream_id`` ended (the graph goes on): free its state. Plain or ``async def``; runs on the
        loop between two messages, never beside ``process``; called once per ended stream, after the stream's
        marker came on every input that carries it (a join frees a stream once no branch can still bring its
        messages)."""

    # -- helpers ----------------------------------------------------------------------------------------------
    async def offload(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a blocking call in this node's worker thread (inside its CUDA stream on a GPU stage)."""
        if self.ctx.offloader is None:
            return fn(*args, **kwargs)
        result: T = await self.ctx.offloader(fn, *args, **kwargs)
        return result

    # -- introspection used by the compiler and runtime ------------------------------------------------------
    @classmethod
    def is_source(cls) -> bool:
        """A node with a ``run`` method. It may still have inputs (e.g. a ``control`` feedback port): their
        messages are handled by ``on_<port>`` beside ``run``; an ``async def`` handler runs on the loop even when
        ``run`` is a blocking generator, so it is not queued behind the worker thread."""
        return cls.run is not Node.run

    @classmethod
    def handler_name(cls, port: str) -> str | None:
        for candidate in (f"on_{port}", "process"):
            if getattr(cls, candidate, None) is not getattr(Node, candidate, None):
                return candidate
        return None

    @classmethod
    def batch_ports(cls) -> frozenset[str]:
        """Input ports whose queued messages may go to ``process_batch`` together: those ``process`` serves."""
        if cls.process_batch is Node.process_batch:
            return frozenset()
        return frozenset(port for port in cls.inputs if cls.handler_name(port) == "process")

    @classmethod
    def blocking(cls) -> bool:
        """A plain (non-async) ``run`` or input handler: runs in the worker thread unless ``cheap``."""
        if cls.is_source():
            functions: list[Any] = [cls.run]
        elif cls.process is not Node.process:
            functions = [cls.process]
        else:
            functions = [getattr(cls, name) for name in (cls.handler_name(p) for p in cls.inputs) if name]
        return bool(functions) and not any(
            inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn) for fn in functions)

    @classmethod
    def surfaces(cls, params: Any) -> list[Surface]:
        """What this node lets network peers change (publish, rules, viewers, ws) and the credential guarding
        each; checked before start by :func:`flowgraph.access.check_exposure`. None by default."""
        return []

    @classmethod
    def summary(cls) -> str:
        doc = inspect.getdoc(cls) or ""
        return doc.splitlines()[0] if doc else ""

    @classmethod
    def plan_notes(cls, params: Any, device: str) -> list[str]:
        """Lines ``flowgraph validate --plan`` prints under this node (e.g. which backend ``auto`` picks, why)."""
        return []

    def counters(self) -> dict[str, Any]:
        """Node-specific figures for metrics (packets, bytes, drops, reconnects ...); override to report them."""
        return {}

    def run(self) -> Any:
        """Sources override this (``async def run`` or a generator ``def run``)."""
        raise NotImplementedError

    def process(self, msg: Any) -> Any:
        """Handle one message from any input without its own ``on_<port>`` handler (``async def`` or plain)."""
        raise NotImplementedError

    def process_batch(self, msgs: list[Any]) -> Any:
        """Optional: handle several queued messages of one input at once (e.g. one batched model call for the
        newest frame of several streams). Returns one result per message, in the messages' order, each what
        ``process`` would return for it (``async def``: sends its outputs itself and returns None)."""
        raise NotImplementedError
