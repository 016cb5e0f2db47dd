"""Live re-wiring: a new version of a running graph's YAML is checked whole, then only its difference is applied.

An invalid version changes nothing (its ``file:line:col`` error is logged and kept for ``/api/graph``). A valid
one is compared with the running plan (:mod:`.rewire`) and applied in three steps:

1. *stop* what goes: removed nodes drain their inputs by policy (``block`` edges are emptied first) and end;
   restarted nodes are detached from their channels first, so the messages queued for them wait for their
   successor; edges that disappear leave their consumer's input list (what they still held is counted as lost);
2. *build* what comes: new nodes (and the new instances of restarted ones) get channels — the kept ones, still
   holding their messages, or new ones with the new size and policy;
3. *start* them, sinks first, and hand their tasks to the runtime.

Unchanged nodes are never touched: their objects, state, channels and clients (viewers, publishers, WebSocket
clients) stay as they are. Params a node type declares live (``Node.live_params``) change in place.

A node that serves HTTP routes (it added routes in ``setup``) cannot be added, removed or restarted live — the
server's routes are fixed once it listens — and such an edit is refused, before anything stops, with a message
naming the node; changing its live params is fine. Edges are never fused in a graph that can be edited live (a
fused consumer has no channel to re-route).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .channel import Channel
from .compile import EdgePlan, ExecutionPlan, compile_plan
from .context import NodeContext
from .errors import FlowgraphError
from .registry import Registry
from .rewire import EdgeKey, GraphDiff, diff_plans, edge_key
from .runner import NodeRunner
from .spec import parse_spec

if TYPE_CHECKING:
    from .runtime import Runtime
    from .server import GraphServer

log = logging.getLogger("flowgraph.live")

#: Largest graph document accepted by ``PUT /api/graph`` (the loader's own file limit).
MAX_GRAPH_BYTES = 1 << 20


def unfused(plan: ExecutionPlan) -> ExecutionPlan:
    """The plan with every edge a channel (see the module docstring)."""
    for edge in plan.edges:
        edge.fused = False
    for node in plan.nodes.values():
        node.stage = node.name
    return plan


@dataclass
class Version:
    number: int
    applied_at: float
    source: str  # "start", "watch", "PUT /api/graph"
    sha256: str
    summary: str
    seconds: float = 0.0
    diff: dict[str, Any] = field(default_factory=dict)


@dataclass
class ApplyResult:
    ok: bool
    changed: bool = False
    version: int | None = None
    diff: GraphDiff | None = None
    error: str | None = None
    seconds: float = 0.0
    lost: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "changed": self.changed, "version": self.version, "error": self.error,
                "seconds": round(self.seconds, 4), "lost": self.lost,
                "diff": self.diff.to_dict() if self.diff is not None else None}


class LiveGraph:
    """Applies new versions of a running graph's YAML to its runtime, one at a time."""

    def __init__(self, runtime: Runtime, file: str, text: str, *, registry: Registry | None = None,
                 overrides: list[str] | None = None, env: dict[str, str] | None = None,
                 history: int = 50) -> None:
        self.runtime = runtime
        self.file = file
        self.registry = registry
        self.overrides = overrides
        self.env = env
        self.history: list[Version] = [Version(1, time.time(), "start", _sha(text), "started")]
        self.history_size = history
        self.last_error: str | None = None
        self.lost = 0
        self._lock = asyncio.Lock()
        self._text = text
        self._fresh: dict[str, NodeRunner] = {}
        unfused(runtime.plan)

    # -- applying ---------------------------------------------------------------------------------------------
    async def apply_text(self, text: str, source: str = "api") -> ApplyResult:
        """Check ``text`` as a whole graph and apply what differs from the running one."""
        async with self._lock:
            started = time.monotonic()
            try:
                # checking a graph takes milliseconds to tens of them: off the loop, which carries the video
                new = unfused(await asyncio.to_thread(self._compile, text))
            except FlowgraphError as exc:
                self.last_error = str(exc)
                log.error("graph edit refused, the running graph is unchanged:\n%s", exc)
                return ApplyResult(ok=False, error=str(exc))
            diff = diff_plans(self.runtime.plan, new)
            if diff.empty:
                self._text = text
                return ApplyResult(ok=True, diff=diff, version=self.history[-1].number)
            refused = self._refusal(diff) or await self._prepare(new, diff)
            if refused:
                self.last_error = refused
                log.error("graph edit refused, the running graph is unchanged: %s", refused)
                return ApplyResult(ok=False, diff=diff, error=refused)
            lost = await self._apply(new, diff)
            seconds = time.monotonic() - started
            self.lost += lost
            self.last_error = None
            self._text = text
            changes = [line for line in diff.describe().splitlines() if not line.startswith("  ")]
            version = Version(self.history[-1].number + 1, time.time(), source, _sha(text), "; ".join(changes),
                              seconds, diff.to_dict())
            self.history = [*self.history, version][-self.history_size:]
            log.info("graph version %d applied in %.0f ms (%s):\n%s", version.number, seconds * 1000, source,
                     diff.describe())
            return ApplyResult(ok=True, changed=True, version=version.number, diff=diff, seconds=seconds,
                               lost=lost)

    def _compile(self, text: str) -> ExecutionPlan:
        return compile_plan(parse_spec(text, self.file, self.overrides, self.env), self.registry)

    def _refusal(self, diff: GraphDiff) -> str | None:
        server = self.runtime.server
        owners = server.owners if server is not None else {}
        serving = sorted(n for n in diff.touched() if owners.get(n))
        if serving:
            old = self.runtime.plan
            kinds = ", ".join(f"{n!r} ({old.nodes[n].node_type})" for n in serving)
            return (f"node(s) {kinds} serve HTTP routes, which are fixed once the server listens: removing or "
                    f"restarting them needs a restart of the graph (their live params can change in place)")
        return None

    async def _prepare(self, new: ExecutionPlan, diff: GraphDiff) -> str | None:
        """Build and set up the nodes that come, while the old ones still run (a worker process boots, models
        load); a node that wants HTTP routes now cannot have them: the edit is refused before anything stops."""
        rt = self.runtime
        self._fresh = {}
        for name in new.order:
            if name in diff.added or name in diff.restarted:
                node_plan = new.nodes[name]
                connected = frozenset(edge.target_port for edge in new.inputs_of(name))
                ctx = NodeContext(name=name, device=node_plan.device, scope=rt.scope, inputs=connected)
                self._fresh[name] = NodeRunner(node_plan, ctx, rt._fatal)
        for name, runner in self._fresh.items():
            try:
                await runner.setup()
            except Exception as exc:
                for built in self._fresh.values():
                    await built.stop()
                self._fresh = {}
                if isinstance(exc, RuntimeError) and "frozen" in str(exc):
                    return (f"node {name!r} ({new.nodes[name].node_type}) serves HTTP routes, which are fixed once "
                            f"the server listens: adding it needs a restart of the graph")
                return f"node {name!r} ({new.nodes[name].node_type}): setup() failed: {exc}"
        return None

    async def _apply(self, new: ExecutionPlan, diff: GraphDiff) -> int:
        """Apply a checked ``diff`` whose coming nodes :meth:`_prepare` built, in the module docstring's three
        steps; returns how many queued messages were lost with edges that changed or went."""
        going = set(diff.removed) | set(diff.restarted)
        coming = set(diff.added) | set(diff.restarted)
        self._update_live_params(new, diff)
        channels = {edge_key(edge): channel for edge, channel in self.runtime.channels if channel is not None}
        new_edges = {edge_key(edge): edge for edge in new.edges}
        kept = {key for key in channels if key in new_edges and key not in diff.edges_changed}
        # 1. stop what goes
        lost = self._detach(channels, kept, going, coming)
        await self._stop(going)
        # 2. wire what comes (built and set up by _prepare)
        self._wire(new, new_edges, channels, kept, coming)
        # 3. start, sinks first
        await self._start(new, coming)
        return lost

    def _update_live_params(self, new: ExecutionPlan, diff: GraphDiff) -> None:
        for name in diff.live:
            runner = self.runtime.runners[name]
            runner.node.update_params(new.nodes[name].params)
            runner.plan = new.nodes[name]

    def _detach(self, channels: dict[EdgeKey, Channel], kept: set[EdgeKey], going: set[str],
                coming: set[str]) -> int:
        """Unhook the channels that change hands; returns the messages lost with edges that change or go.

        Nodes that stay keep sending into kept channels throughout; a going node finishes the message it holds
        and hands its output channels over unclosed (their consumers see no end).
        """
        runners = self.runtime.runners
        lost = 0
        for key, channel in channels.items():
            producer, consumer = runners[key[0]], runners[key[2]]
            if key not in kept and key[0] not in going:
                producer.node._outputs[key[1]].disconnect(channel)
            if key in kept:
                if key[2] in going:
                    consumer.detach_input(channel)  # its messages wait for the successor
            elif key[2] in going and key[2] not in coming:
                channel.close()  # a removed consumer drains what is queued, by its policy, then ends
            else:
                lost += len(channel)
                consumer.detach_input(channel)
        return lost

    async def _stop(self, going: set[str]) -> None:
        """Stop the going nodes (in the running plan's order), cancelling any that outlast the drain timeout."""
        rt = self.runtime
        stopping = [rt.runners[name] for name in rt.plan.order if name in going]
        for runner in stopping:
            runner.handover = True
            runner.request_stop()
        tasks = [r.task for r in stopping if r.task is not None and not r.task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=rt.drain_timeout)
            for task in pending:
                log.warning("node task %s did not stop within %.1fs: cancelled", task.get_name(), rt.drain_timeout)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for runner in stopping:
            await runner.stop()
            for output in runner.node._outputs.values():
                for channel in list(output.channels):
                    output.disconnect(channel)
            del rt.runners[runner.name]

    def _wire(self, new: ExecutionPlan, new_edges: dict[EdgeKey, EdgePlan], channels: dict[EdgeKey, Channel],
              kept: set[EdgeKey], coming: set[str]) -> None:
        """Adopt the prepared nodes and connect every edge of ``new``: kept channels to the coming nodes at their
        ends, new channels (the edge's size and policy) for the rest; ``new`` becomes the running plan."""
        rt = self.runtime
        rt.runners.update(self._fresh)
        wired: list[tuple[Any, Channel | None]] = []
        for key, edge in new_edges.items():
            channel = channels[key] if key in kept else Channel(edge.label, edge.queue, edge.policy)
            if key not in kept or key[0] in coming:
                rt.runners[key[0]].node._outputs[key[1]].connect(channel)
            if key not in kept or key[2] in coming:
                rt.runners[key[2]].attach_input(key[3], channel, edge.feedback)
            wired.append((edge, channel))
        rt.channels = wired
        rt.plan = new
        rt.wire_markers()

    async def _start(self, new: ExecutionPlan, coming: set[str]) -> None:
        """Start the coming nodes, sinks first, and hand their tasks to the runtime; one whose start fails is
        marked failed (the graph goes on)."""
        rt = self.runtime
        fresh = [rt.runners[name] for name in reversed(new.order) if name in coming]
        self._fresh = {}
        for runner in fresh:
            try:
                await runner.start()
            except Exception as exc:  # the graph goes on; this node reports its failure like any other
                runner.stats.state = "failed"
                runner.stats.errors += 1
                runner.stats.last_error = f"start() failed: {exc}"
                log.error("node %s: start() failed after the edit: %s", runner.name, exc, exc_info=exc)
        for runner in fresh:
            if runner.stats.state != "failed":
                rt.adopt(runner.launch())

    # -- sources of new versions ----------------------------------------------------------------------------
    async def watch(self, path: str | Path, interval: float = 0.05) -> None:
        """Apply the file whenever its content changes (until cancelled). Polls its size and mtime (cheap) and
        reads it only when they move, so a save is picked up within ``interval``."""
        target = Path(path)
        seen = _sha(self._text)
        stamp: tuple[int, int] | None = None
        while True:
            await asyncio.sleep(interval)
            try:
                info = os.stat(target)  # one cheap syscall per poll; reading waits for a change
                if (info.st_mtime_ns, info.st_size) == stamp:
                    continue
                stamp = (info.st_mtime_ns, info.st_size)
                text = await asyncio.to_thread(target.read_text, encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                self.last_error = f"{target}: cannot read: {exc}"
                continue
            digest = _sha(text)
            if digest != seen:
                seen = digest
                await self.apply_text(text, source="watch")

    # -- HTTP -------------------------------------------------------------------------------------------------
    def add_routes(self, server: GraphServer) -> None:
        """``PUT /api/graph`` (a new YAML; bearer token from ``GRAPH_TOKEN``) and ``GET /api/graph/versions``."""
        from aiohttp import web

        from .server import json_error

        token = (self.env if self.env is not None else os.environ).get("GRAPH_TOKEN", "")

        async def put_graph(request: web.Request) -> web.Response:
            if not token:
                return json_error(403, "graph edits over HTTP are off: set GRAPH_TOKEN to a secret to turn them on")
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return json_error(401, "graph edits need 'Authorization: Bearer <GRAPH_TOKEN>'")
            if request.content_length is not None and request.content_length > MAX_GRAPH_BYTES:
                return json_error(413, f"graph document larger than {MAX_GRAPH_BYTES} bytes")
            raw = await request.content.read(MAX_GRAPH_BYTES + 1)
            if len(raw) > MAX_GRAPH_BYTES:
                return json_error(413, f"graph document larger than {MAX_GRAPH_BYTES} bytes")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return json_error(400, f"graph document is not UTF-8 (byte {exc.start})")
            result = await self.apply_text(text, source="PUT /api/graph")
            return web.json_response(result.to_dict(), status=200 if result.ok else 400)

        async def versions(request: web.Request) -> web.Response:
            return web.json_response(self.status())

        server.add_route("PUT", "/api/graph", put_graph)
        server.add_get("/api/graph/versions", versions)

    def status(self) -> dict[str, Any]:
        return {
            "version": self.history[-1].number,
            "last_error": self.last_error,
            "lost_in_edits": self.lost,
            "history": [vars(v) for v in self.history],
        }


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
