"""Ray placement: a node's unchanged code in Ray actors, behind the same edges as a local island.

``cluster: {engine: ray, address: local}`` starts a private Ray for the graph (stopped with it); any other address
(or ``RAY_ADDRESS``) joins a running cluster. A node with ``placement: {replicas, resources, shard_by}`` runs in
``replicas`` actors, each asking Ray for ``resources`` (checked at compile time by :mod:`.ray_plan`).

The graph keeps a :class:`RayNode` in the node's place, a :class:`~flowgraph.island.remote.RemoteNode` with one
:class:`ActorTransport` per replica. Its input channels are the graph's (type, bound, policy, drops and age
metrics unchanged) and it takes a message only when the replica it goes to is free — one message in flight per
replica, the credit — so ``latest`` never has more than one frame in flight per replica, ``block`` backpressures
and ``drop_oldest`` drops and counts:

* ``shard_by: stream_id`` — a stream always goes to the same replica (trackers, decoders keep their state): on
  its first message, the replica holding the fewest streams; the stream leaves it when it ends;
* ``round_robin`` — messages go to the next free replica; outputs leave in the order their inputs arrived, so the
  next stateful consumer sees frames in order.

Messages travel through Ray's object store: a ``VideoFrame``'s picture is a numpy array, read in place by an actor
on the same host; its decoder-side ``source`` and CUDA event stay behind. A frame that comes back inside an answer
(``Tracks.frame``) is not shipped back: the graph side puts its own object in its place.

A killed actor (SIGKILL of its worker, a removed Ray node) surfaces as :class:`~.transport.WorkerDied` for the
message it held — counted in ``lost`` — and goes through the node's ``on_error`` like a local worker: ``restart``
and ``skip_message`` start a fresh actor for that replica (the others keep running with their state), ``stop``
stops the graph.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import os
import time
from typing import Any, ClassVar

from ..messages import StreamEnd, VideoFrame
from ..node import Node, NodeContext
from .ray_plan import Placement, cluster_address
from .remote import START_TIMEOUT_S, STOP_TIMEOUT_S, RemoteNode
from .transport import Answer, RemoteError, WorkerDied, WorkerSpec

log = logging.getLogger("flowgraph.ray")

#: Ray namespace of flowgraph's actors when the graph does not name one.
NAMESPACE = "flowgraph"


# -- the cluster ------------------------------------------------------------------------------------------------
class RayCluster:
    """The graph's connection to Ray: started privately (``local``) or joined (an address)."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.started_here = False
        self.joined_existing = False
        self.address = cluster_address(conf, dict(os.environ))

    def connect(self) -> dict[str, Any]:
        import ray

        register_serializers()
        if ray.is_initialized():  # an embedder (or a test) connected this process already: use that Ray
            self.joined_existing = True
            with contextlib.suppress(Exception):
                self.address = str(ray.get_runtime_context().gcs_address)
            return self.describe()
        namespace = str(self.conf.get("namespace") or NAMESPACE)
        common: dict[str, Any] = {"namespace": namespace, "configure_logging": False, "log_to_driver": True}
        if self.address == "local":
            kwargs: dict[str, Any] = {"include_dashboard": False, "_node_ip_address": "127.0.0.1"}
            if self.conf.get("num_cpus") is not None:
                kwargs["num_cpus"] = int(self.conf["num_cpus"])
            if self.conf.get("num_gpus") is not None:
                kwargs["num_gpus"] = int(self.conf["num_gpus"])
            if self.conf.get("resources"):  # a private Ray declares the custom resources the graph names (1 each)
                kwargs["resources"] = {str(r): 1.0 for r in self.conf["resources"]}
            ray.init(address="local", **kwargs, **common)  # "local": a new Ray, never one found in /tmp/ray
            self.started_here = True
        else:
            ray.init(address=self.address, **common)
        return self.describe()

    def describe(self) -> dict[str, Any]:
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
        resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
        return {"address": self.address, "started_here": self.started_here, "nodes": len(nodes),
                "resources": {k: v for k, v in resources.items() if not k.startswith("node:")}}

    def check(self, wanted: dict[str, dict[str, float]]) -> list[str]:
        """Problems with what nodes ask for per replica (``{node: {resource: amount}}``), against the live
        cluster: a request that no single Ray node can ever meet."""
        import ray

        problems = []
        offers = [n["Resources"] for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
        for name, resources in wanted.items():
            if not any(all(have.get(r, 0.0) >= amount for r, amount in resources.items()) for have in offers):
                best = ", ".join(f"{r} {max((h.get(r, 0.0) for h in offers), default=0.0):g}" for r in resources)
                problems.append(f"node {name!r} asks each replica for {_fmt(resources)}, but no Ray node of the "
                                f"cluster at {self.address} offers that (largest offers: {best})")
        return problems

    def shutdown(self) -> None:
        """Disconnect; a private Ray (``address: local``) stops with it. A Ray the process was already connected
        to (an embedder's, a test's) is left connected."""
        import ray

        if ray.is_initialized() and not self.joined_existing:
            ray.shutdown()


def _fmt(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in resources.items()) + "}"


async def open_cluster(plan: Any) -> RayCluster:
    """Connect to (or start) the graph's Ray before any node is set up. Raises
    :class:`~flowgraph.errors.FlowgraphError` when a placement asks for what no Ray node offers."""
    from ..errors import FlowgraphError

    cluster = RayCluster(plan.cluster)
    info = cluster.connect()  # on the loop's thread (Ray installs signal handlers); nothing flows yet
    log.info("Ray at %s: %d node(s), resources %s%s", cluster.address, info["nodes"], info["resources"],
             " (started for this graph)" if cluster.started_here else "")
    wanted = {name: dict(n.placement.resources) for name, n in plan.nodes.items() if n.placement is not None}
    problems = await asyncio.to_thread(cluster.check, wanted)
    if problems:
        await asyncio.to_thread(cluster.shutdown)
        raise FlowgraphError("; ".join(problems))
    return cluster


# -- serialisation ------------------------------------------------------------------------------------------------
def _frame_out(frame: VideoFrame) -> tuple[Any, ...]:
    # the picture (numpy: out of band, zero-copy on one host) and the metadata; ``source`` (the decoder's own
    # frame) and a CUDA event cannot leave the process
    return (frame.image, frame.format, frame.device, frame.stream_id, frame.frame_id, frame.pts, frame.time_base,
            frame.t_capture)


def _frame_in(state: tuple[Any, ...]) -> VideoFrame:
    image, fmt, device, stream_id, frame_id, pts, time_base, t_capture = state
    return VideoFrame(image=image, format=fmt, device=device, stream_id=stream_id, frame_id=frame_id, pts=pts,
                      time_base=time_base, t_capture=t_capture)


def register_serializers() -> None:
    """How a ``VideoFrame`` crosses into (and out of) Ray, in this process."""
    import ray.util

    ray.util.register_serializer(VideoFrame, serializer=_frame_out, deserializer=_frame_in)


# -- the actor ----------------------------------------------------------------------------------------------------
class _Echo:
    """Stands for "the message you sent me" (or one of its fields) in an answer: it is not shipped back."""

    __slots__ = ("field",)

    def __init__(self, field: str | None) -> None:
        self.field = field


def strip_echoes(outputs: list[tuple[str, Any]], msg: Any) -> list[tuple[str, Any]]:
    """Replace fields of the outputs that are the input message (or one of its fields) by :class:`_Echo`."""
    given: dict[int, str | None] = {id(msg): None}
    if dataclasses.is_dataclass(msg):
        for f in dataclasses.fields(msg):
            value = getattr(msg, f.name)
            if value is not None and not isinstance(value, int | float | str | bool):
                given.setdefault(id(value), f.name)
    out: list[tuple[str, Any]] = []
    for port, value in outputs:
        if value is msg:  # a node that forwards what it was given (a filter, a pass-through)
            out.append((port, _Echo(None)))
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {f.name: _Echo(given[id(getattr(value, f.name))]) for f in dataclasses.fields(value)
                       if getattr(value, f.name) is not None and id(getattr(value, f.name)) in given}
            if changes:
                value = dataclasses.replace(value, **changes)
        out.append((port, value))
    return out


def restore_echoes(outputs: list[tuple[str, Any]], msg: Any) -> list[tuple[str, Any]]:
    """The graph side of :func:`strip_echoes`: put the graph's own objects back."""
    out = []
    for port, value in outputs:
        if isinstance(value, _Echo):
            out.append((port, msg if value.field is None else getattr(msg, value.field)))
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {f.name: (msg if echo.field is None else getattr(msg, echo.field))
                       for f in dataclasses.fields(value) if isinstance(echo := getattr(value, f.name), _Echo)}
            if changes:
                value = dataclasses.replace(value, **changes)
        out.append((port, value))
    return out


class NodeHost:
    """Runs one node inside a Ray actor, one message at a time, on one thread with an event loop of its own.

    A blocking node's return value and whatever an ``async`` node sends on its outputs during the call (its
    pipelined work included: the loop runs until nothing is ready) come back as the call's answer."""

    def __init__(self, spec: WorkerSpec) -> None:
        from .worker import ForwardedStreams, _load_class, node_context

        register_serializers()
        self.spec = spec
        self.streams = ForwardedStreams()
        self.cls = _load_class(spec.node_class)
        self.node = self.cls(node_context(spec, self.streams), spec.params)
        self.handlers = {port: getattr(self.node, self.cls.handler_name(port) or "process")
                         for port in self.cls.inputs}
        self.default = next(iter(self.cls.outputs)) if len(self.cls.outputs) == 1 else None
        self.loop = asyncio.new_event_loop()
        self.sent: list[tuple[str, Any]] = []
        for port, output in self.node._outputs.items():
            output.fuse(self._catcher(port))

    def _catcher(self, port: str) -> Any:
        async def catch(msg: Any) -> None:
            self.sent.append((port, msg))

        return catch

    def start(self) -> dict[str, Any]:
        import ray

        from .worker import idle_threads, lower_priority

        self.loop.run_until_complete(self.node.start())
        if self.spec.nice:
            lower_priority(self.spec.nice, group=False)
        if self.spec.idle:  # Ray's cgroups are Ray's: SCHED_IDLE ranks the actor's threads within them
            idle_threads()
        context = ray.get_runtime_context()
        return {"pid": os.getpid(), "nice": os.getpriority(os.PRIO_PROCESS, 0), "ray_node": context.get_node_id(),
                "ray_ip": ray.util.get_node_ip_address()}  # type: ignore[no-untyped-call]

    def _settle(self) -> None:
        """Run the node's own tasks until nothing is ready (a pipelined async node finishes what it began)."""
        for _ in range(10_000):
            self.loop.run_until_complete(asyncio.sleep(0))
            if not getattr(self.loop, "_ready", ()):
                return

    def _run(self, result: Any) -> Any:
        if inspect.isawaitable(result):
            result = self.loop.run_until_complete(result)
        self._settle()
        return result

    def _answer(self, result: Any, msg: Any, started: float) -> tuple[bool, Any]:
        from .worker import _outputs

        produced = self.sent + _outputs(result, self.default)
        self.sent = []
        # the graph side's runner forwards stream-end markers itself
        produced = [(port, m) for port, m in produced if type(m) is not StreamEnd]
        return True, (strip_echoes(produced, msg), self._extras(started))

    def call(self, port: str, msg: Any) -> tuple[bool, Any]:
        """``(True, (outputs, extras))`` or ``(False, report)`` when the node raised."""
        started = time.perf_counter()
        try:
            return self._answer(self._run(self.handlers[port](msg)), msg, started)
        except Exception as exc:
            return False, self._report(exc, msg, started)

    def end_stream(self, end: StreamEnd) -> tuple[bool, Any]:
        started = time.perf_counter()
        try:
            return self._answer(self._run(self.node.end_stream(end)), end, started)
        except Exception as exc:
            return False, self._report(exc, end, started)

    def flush(self) -> tuple[bool, Any]:
        started = time.perf_counter()
        try:
            return self._answer(self._run(self.node.flush()), None, started)
        except Exception as exc:
            return False, self._report(exc, None, started)

    def _report(self, exc: Exception, msg: Any, started: float) -> dict[str, Any]:
        import traceback

        self.sent = []
        frame_id = getattr(msg, "frame_id", None)
        text = (f"{type(exc).__name__}: {exc} (frame {frame_id}, in Ray actor pid {os.getpid()})\n"
                + "".join(traceback.format_exception(exc)).rstrip())
        return {"error": text, "extras": self._extras(started)}

    def _extras(self, started: float) -> dict[str, Any]:
        extras: dict[str, Any] = {"process_ms": (time.perf_counter() - started) * 1000}
        with contextlib.suppress(Exception):  # counters are best effort
            extras["counters"] = self.node.counters()
        pending = self.streams.drain()
        if pending:
            extras["streams"] = pending
        return extras

    def stop(self) -> None:
        try:
            self.loop.run_until_complete(self.node.stop())
        finally:
            self.loop.close()


_ACTOR: Any = None


def _actor_class() -> Any:
    """The Ray actor class, made on first use (importing ray is slow; ``validate`` never does)."""
    global _ACTOR
    if _ACTOR is None:
        import ray

        _ACTOR = ray.remote(max_restarts=0, max_task_retries=0)(NodeHost)
    return _ACTOR


# -- the transport ------------------------------------------------------------------------------------------------
class ActorTransport:
    """One Ray actor for one replica of a node (see :class:`~flowgraph.island.transport.Transport`)."""

    def __init__(self, name: str, replica: int, resources: dict[str, float]) -> None:
        self.name = name
        self.replica = replica
        self.resources = resources
        self._actor: Any = None
        self._info: dict[str, Any] = {}
        self._dead = False
        self.calls = 0
        self.starts = 0

    @property
    def alive(self) -> bool:
        return self._actor is not None and not self._dead

    @property
    def pid(self) -> int | None:
        pid = self._info.get("pid")
        return int(pid) if pid is not None else None

    def _options(self) -> dict[str, Any]:
        resources = dict(self.resources)
        options: dict[str, Any] = {"num_cpus": resources.pop("CPU", 0.0), "num_gpus": resources.pop("GPU", 0.0)}
        if "memory" in resources:
            options["memory"] = resources.pop("memory")
        if resources:
            options["resources"] = resources
        return options

    async def launch(self, spec: WorkerSpec) -> None:
        import ray

        if not ray.is_initialized():  # never let Ray auto-start a cluster nobody asked for
            raise RuntimeError(f"node {self.name!r} is placed on Ray, but this graph is not connected to Ray (a "
                               f"graph with placements needs cluster: when it starts)")
        await self.close(timeout=2.0)
        self._actor = _actor_class().options(**self._options()).remote(spec)
        self._dead = False
        self._info = {}
        self.starts += 1

    async def start(self, spec: WorkerSpec, timeout: float) -> dict[str, Any]:
        import ray

        if not self.alive:
            await self.launch(spec)
        try:
            self._info = await asyncio.wait_for(self._actor.start.remote(), timeout)
        except TimeoutError:
            await self.close(0.5)
            raise RuntimeError(f"node {self.name!r} replica {self.replica}: its Ray actor did not start within "
                               f"{timeout:.0f}s (asks for {_fmt(self.resources)}: are they free on some Ray "
                               f"node?)") from None
        except ray.exceptions.RayError as exc:
            await self.close(0.5)
            raise RuntimeError(f"node {self.name!r} replica {self.replica} failed to start in Ray: {exc}") from None
        return self._info

    async def _invoke(self, method: str, *args: Any) -> Any:
        import ray

        if not self.alive:
            raise WorkerDied(f"Ray actor of node {self.name!r} replica {self.replica} is not running")
        self.calls += 1
        try:
            return await getattr(self._actor, method).remote(*args)
        except ray.exceptions.RayActorError as exc:  # ActorDiedError, ActorUnavailableError, a removed node
            self._dead = True
            raise WorkerDied(f"Ray actor of node {self.name!r} replica {self.replica} (pid {self.pid}) died: "
                             f"{type(exc).__name__}") from None

    @staticmethod
    def _unpack(reply: tuple[bool, Any], msg: Any) -> Answer:
        ok, body = reply
        if not ok:
            raise RemoteError(body["error"], body.get("extras"))
        outputs, extras = body
        return Answer(restore_echoes(outputs, msg), extras)

    async def call(self, port: str, msg: Any) -> Answer:
        return self._unpack(await self._invoke("call", port, msg), msg)

    async def end_stream(self, end: StreamEnd) -> Answer:
        return self._unpack(await self._invoke("end_stream", end), end)

    async def flush(self) -> Answer:
        return self._unpack(await self._invoke("flush"), None)

    async def close(self, timeout: float) -> int | None:
        import ray

        actor, self._actor = self._actor, None
        if actor is None:
            return None
        try:
            if not self._dead:
                await asyncio.wait_for(actor.stop.remote(), timeout)
        except (TimeoutError, ray.exceptions.RayError):
            pass
        finally:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        return 0

    def stats(self) -> dict[str, Any]:
        return {"replica": self.replica, "pid": self.pid, "ray_node": self._info.get("ray_node"),
                "ray_ip": self._info.get("ray_ip"), "calls": self.calls, "starts": self.starts,
                "alive": self.alive}


# -- the stand-in -------------------------------------------------------------------------------------------------
class RayNode(RemoteNode):
    """Base of the stand-ins of Ray-placed nodes: ``replicas`` actors, messages sharded or dealt round-robin."""

    placement: ClassVar[Placement] = Placement()
    #: ``on_error: restart``: the runner's stop() + start() after an actor died replace the dead replicas only
    restarts_on_error: ClassVar[bool] = False

    def __init__(self, ctx: NodeContext, params: Any = None) -> None:
        self.transports = [ActorTransport(ctx.name, i, self.placement.resources)
                           for i in range(self.placement.replicas)]
        super().__init__(ctx, params)
        self._inflight: dict[int, asyncio.Task[None]] = {}  # replica -> its call in flight
        self._order = 0  # round_robin: outputs leave in arrival order
        self._next_out = 0
        self._ready: dict[int, Answer | None] = {}
        self._failure: BaseException | None = None  # a background call's failure, raised on the next message
        self._restarting = False  # the runner's stop() then start() of a restart replace dead replicas only
        #: messages an actor held when it died (they are gone)
        self.lost = 0
        #: shard_by stream_id: stream -> its replica, from the stream's first message to its end
        self._streams: dict[str, int] = {}

    def _transport(self) -> Any:
        return self.transports[0]

    async def setup(self) -> None:
        for transport in self.transports:  # every actor is created before any is awaited: they boot side by side
            await transport.launch(self.spec())

    async def start(self) -> None:
        self._last_start = time.monotonic()
        self._restarting = False
        infos = await asyncio.gather(*(t.start(self.spec(), START_TIMEOUT_S) for t in self.transports
                                       if not t.alive or not t._info))
        if infos:
            self._worker_info = infos[0]
            self.worker_starts += 1
        where = "; ".join(f"replica {t.replica} on Ray node {str(t._info.get('ray_node'))[:8]} "
                          f"({t._info.get('ray_ip')}, pid {t.pid})" for t in self.transports)
        self.log.info("runs in Ray: %s", where)

    async def stop(self) -> None:
        if self._restarting:  # a restart after an actor died: the healthy replicas keep running
            self._restarting = False
            for transport in self.transports:
                if not transport.alive:
                    await transport.close(0.5)
            return
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*(t.close(STOP_TIMEOUT_S) for t in self.transports), return_exceptions=True)

    def _replica_for(self, msg: Any) -> int | None:
        """The replica ``msg`` must go to (None: any free one)."""
        if len(self.transports) == 1:
            return 0
        if self.placement.shard_by == "stream_id":
            stream = str(getattr(msg, "stream_id", ""))
            index = self._streams.get(stream)
            if index is None:  # a new stream: the replica holding the fewest streams keeps it until it ends
                load = [0] * len(self.transports)
                for held in self._streams.values():
                    load[held] += 1
                index = self._streams[stream] = load.index(min(load))
            return index
        return None

    async def _free(self, index: int | None) -> int:
        """Wait until the wanted replica (or, for None, any replica) has no call in flight."""
        while True:
            busy = self._inflight
            if index is not None and index not in busy:
                return index
            if index is None:
                for i in range(len(self.transports)):
                    if i not in busy:
                        return i
            waiting = [busy[index]] if index is not None else list(busy.values())
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)

    async def call(self, port: str, msg: Any) -> None:
        index = await self._free(self._replica_for(msg))
        transport = self.transports[index]
        if not transport.alive:
            await self._respawn_one(transport)
        if len(self.transports) == 1:  # one actor: the call itself is the credit, as for a local worker
            answer = await self._call_one(transport, transport.call(port, msg))
            await self._emit(answer)
            return
        slot = self._order
        self._order += 1
        self._inflight[index] = asyncio.create_task(self._dispatch(index, transport.call(port, msg), slot),
                                                    name=f"ray:{self.name}:{index}")
        failure, self._failure = self._failure, None
        if failure is not None:  # a replica failed meanwhile: the runner applies on_error (this message is sent)
            if isinstance(failure, WorkerDied) and self.restarts_on_error:
                self._restarting = True
            raise failure

    async def _call_one(self, transport: ActorTransport, pending: Any) -> Answer:
        started = time.perf_counter()
        try:
            answer: Answer = await pending
        except RemoteError as exc:
            self.remote_errors += 1
            self._absorb(exc.extras)
            raise
        except WorkerDied:
            self.worker_deaths += 1
            self.lost += 1
            if len(self.transports) == 1 and self.restarts_on_error:
                self._restarting = True
            raise
        self._absorb(answer.extras)
        self.remote_time.add(time.perf_counter() - started)
        return answer

    async def _dispatch(self, index: int, pending: Any, slot: int) -> None:
        result: Answer | None = None
        try:
            result = await self._call_one(self.transports[index], pending)
        except (RemoteError, WorkerDied) as exc:
            if self._failure is None:  # the next message raises it: the runner applies on_error
                self._failure = exc
        finally:
            self._inflight.pop(index, None)
            self._ready[slot] = result
            while self._next_out in self._ready:  # outputs leave in the order their messages arrived
                ready = self._ready.pop(self._next_out)
                self._next_out += 1
                if ready is not None:
                    await self._emit(ready)

    async def _emit(self, answer: Answer) -> None:
        for port_name, out in answer.outputs:
            await self._outputs[port_name].send(out)

    async def _respawn_one(self, transport: ActorTransport) -> None:
        wait = self._last_start + self.respawn_backoff_s - time.monotonic()
        if wait > 0 and await self.wait_stopping(wait):
            raise RuntimeError(f"node {self.name!r}: graph stopping, Ray actor not restarted")
        self.log.warning("Ray actor of replica %d gone: starting a fresh one", transport.replica)
        self._last_start = time.monotonic()
        await transport.close(0.5)
        await transport.start(self.spec(), START_TIMEOUT_S)
        self.worker_starts += 1

    async def _drain(self) -> None:
        while self._inflight:
            await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)

    async def end_stream(self, end: StreamEnd) -> None:
        """The stream's replica (every replica, round-robin) frees its state; what it still held goes out first."""
        await self._drain()
        index = self._replica_for(end)
        self._streams.pop(end.stream_id, None)
        targets = self.transports if index is None else [self.transports[index]]
        for transport in targets:
            if transport.alive:
                with contextlib.suppress(WorkerDied, RemoteError):
                    await self._emit(await self._call_one(transport, transport.end_stream(end)))

    async def flush(self) -> None:
        await self._drain()
        for transport in self.transports:
            if transport.alive:
                with contextlib.suppress(WorkerDied, RemoteError):
                    await self._emit(await self._call_one(transport, transport.flush()))

    def counters(self) -> dict[str, Any]:
        counters = super().counters()
        island = counters["island"]
        for key in ("pid", "ray_node", "ray_ip", "calls", "replica", "starts"):
            island.pop(key, None)
        island.update(isolation="ray", alive=all(t.alive for t in self.transports), lost=self.lost,
                      shard_by=self.placement.shard_by, replicas=[t.stats() for t in self.transports],
                      ray_nodes=sorted({str(t._info.get("ray_node")) for t in self.transports if t._info}))
        return counters


def ray_stand_in(cls: type[Node], nice: int, idle: bool, placement: Placement,
                 restarts_on_error: bool) -> type[Node]:
    """The class the runtime builds in place of ``cls`` when it is placed on Ray."""
    from .placement import stand_in

    base = stand_in(cls, nice, idle=idle)
    namespace = {k: v for k, v in vars(base).items() if k not in ("__dict__", "__weakref__")}
    namespace.update(placement=placement, restarts_on_error=restarts_on_error)
    return type(f"Ray{cls.__name__}", (RayNode,), namespace)
