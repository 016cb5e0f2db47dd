"""Runs an ExecutionPlan: wires channels, starts nodes, serves HTTP, shuts down in order.

Shutdown (SIGINT/SIGTERM or :meth:`Runtime.request_stop`): sources are asked to stop first; their end-of-stream
then flows down every edge, so lossless edges drain; whatever has not finished after ``drain_timeout`` seconds is
cancelled. A second signal cancels at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import TYPE_CHECKING, Any

from .access import check_exposure
from .channel import Channel
from .compile import ExecutionPlan
from .context import GraphScope, NodeContext
from .errors import Location, NodeError
from .metrics import RateMeter, prometheus_lines
from .runner import NodeRunner
from .stream_end import marker_fan_in

if TYPE_CHECKING:
    from .live import LiveGraph

log = logging.getLogger("flowgraph.runtime")


class Runtime:
    def __init__(
        self,
        plan: ExecutionPlan,
        *,
        host: str | None = None,
        port: int | None = None,
        metrics_port: int | None = None,
        drain_timeout: float = 5.0,
        serve: bool | None = None,
    ) -> None:
        self.plan = plan
        server_conf = plan.server
        self.host = host or server_conf.get("host", "127.0.0.1")
        self.port = port if port is not None else server_conf.get("port", 8080)
        self.metrics_port = metrics_port
        self.max_body = server_conf.get("max_body_bytes", 262_144)
        self.drain_timeout = drain_timeout
        self.serve = serve
        #: What the graph's nodes share (stream registry, HTTP server, hubs); built here so embedders and tests
        #: can place hubs before ``run``.
        self.scope = GraphScope(plan.name, server_factory=self._server, metrics=self.snapshot)
        self.server: Any = None
        self.runners: dict[str, NodeRunner] = {}
        self.channels: list[tuple[Any, Channel | None]] = []
        self.failure: NodeError | None = None
        self.started_at = 0.0
        self._stop = asyncio.Event()
        self._rates = RateMeter()
        self._signals = 0
        self.ready = asyncio.Event()
        self.exit_code: int | None = None
        #: Every node task of the run; live re-wiring adds the tasks of nodes it starts (:meth:`adopt`).
        self._tasks: list[asyncio.Task[None]] = []
        self._tasks_changed = asyncio.Event()
        #: Set by ``flowgraph run --watch`` (or an embedder) to accept new versions of the graph while it runs.
        self.live: LiveGraph | None = None

    # -- construction ---------------------------------------------------------------------------------------
    def _server(self) -> Any:
        if self.server is None:
            from .server import GraphServer

            self.server = GraphServer(self.host, self.port, self.max_body, conf=self.plan.server)
        return self.server

    def _build(self) -> None:
        for name in self.plan.order:
            node_plan = self.plan.nodes[name]
            connected = frozenset(edge.target_port for edge in self.plan.inputs_of(name))
            ctx = NodeContext(name=name, device=node_plan.device, scope=self.scope, inputs=connected)
            self.runners[name] = NodeRunner(node_plan, ctx, self._fatal)
        for edge in self.plan.edges:
            producer = self.runners[edge.source].node._outputs[edge.source_port]
            consumer = self.runners[edge.target]
            if edge.fused:
                port = edge.target_port

                async def deliver(msg: Any, consumer: NodeRunner = consumer, port: str = port) -> None:
                    await consumer.handle(port, msg)

                producer.fuse(deliver)
                self.runners[edge.source].fused_consumers.append(consumer)
                consumer.fused = True
                self.channels.append((edge, None))
            else:
                channel = Channel(edge.label, edge.queue, edge.policy)
                producer.connect(channel)
                consumer.attach_input(edge.target_port, channel, edge.feedback)
                self.channels.append((edge, channel))
        self.wire_markers()

    def wire_markers(self) -> None:
        """Tell each runner how many copies of a stream-end marker it waits for (after a build or a live edit)."""
        expected = marker_fan_in(self.plan)
        for name, runner in self.runners.items():
            runner.markers.expected = expected.get(name, {})

    def _fatal(self, error: NodeError) -> None:
        if self.failure is None:
            self.failure = error
        self._stop.set()

    def request_stop(self) -> None:
        self._stop.set()

    # -- running --------------------------------------------------------------------------------------------
    async def run(self, *, install_signals: bool = True) -> int:
        """Run until every node finished or a stop is requested; returns a process exit code."""
        if self.host != self.plan.server.get("host", "127.0.0.1"):  # --host: check the address actually used
            check_exposure(self.plan, self.host, where_host=Location("--host", 1, 1))
        self._build()
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._on_signal)
        cluster = None
        try:
            if self.plan.cluster:  # Ray first: placed nodes create their actors in setup()
                from .island.ray import open_cluster

                cluster = await open_cluster(self.plan)
            for runner in self.runners.values():
                await runner.setup()
            # sinks first, so every consumer is ready before the first message is produced
            for name in reversed(self.plan.order):
                await self.runners[name].start()
            if self.server is not None or self.serve or self.metrics_port is not None:
                self._add_builtin_routes()
                if self.metrics_port is not None:
                    self._server().extra_ports.append(self.metrics_port)
                await self._server().start()
            self.started_at = time.monotonic()
            self._rates.origin = self.started_at
            for name in reversed(self.plan.order):
                if not self.runners[name].fused:
                    self.adopt(self.runners[name].launch())
            self.ready.set()
            finished: asyncio.Future[list[Any]] = asyncio.ensure_future(self._until_finished())
            stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait([finished, stop], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not finished.done():
                await self._shutdown(finished)
            else:
                self._report(finished.result())
        finally:
            for runner in self.runners.values():
                await runner.stop()
            if self.server is not None:
                await self.server.stop()
            if cluster is not None:  # disconnects; a private Ray stops with the graph
                await asyncio.to_thread(cluster.shutdown)
            if install_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(NotImplementedError, RuntimeError):
                        loop.remove_signal_handler(sig)
        if self.failure is not None:
            log.error("graph %r stopped: %s", self.plan.name, self.failure)
            return 1
        return 0

    def adopt(self, task: asyncio.Task[None]) -> None:
        """Count ``task`` among the node tasks the run waits for (started now or later, by a live edit)."""
        self._tasks.append(task)
        self._tasks_changed.set()

    async def _until_finished(self) -> list[Any]:
        """Wait until every node task, including ones adopted meanwhile, has ended; their outcomes."""
        while True:
            pending = [task for task in self._tasks if not task.done()]
            if not pending:
                break
            self._tasks_changed.clear()
            changed = asyncio.ensure_future(self._tasks_changed.wait())
            try:
                await asyncio.wait([*pending, changed], return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
        return [asyncio.CancelledError() if task.cancelled() else task.exception() for task in self._tasks]

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("stopping graph %r (again to force)", self.plan.name)
            self._stop.set()
        else:
            log.warning("forced stop")
            for runner in self.runners.values():
                if runner.task is not None:
                    runner.task.cancel()

    async def _shutdown(self, finished: asyncio.Future[Any]) -> None:
        sources = [r for r in self.runners.values() if r.plan.source]
        for runner in sources:
            runner.request_stop()
        deadline = time.monotonic() + self.drain_timeout
        source_tasks = [r.task for r in sources if r.task is not None]
        if source_tasks:
            _, pending = await asyncio.wait(source_tasks, timeout=self.drain_timeout / 2)
            for task in pending:
                task.cancel()
        for runner in self.runners.values():
            runner.request_stop()
        remaining = max(0.1, deadline - time.monotonic())
        done, _ = await asyncio.wait({finished}, timeout=remaining)
        if not done:
            stuck = [r.name for r in self.runners.values() if r.task is not None and not r.task.done()]
            queued = sum(len(ch) for _, ch in self.channels if ch is not None)
            log.warning("drain timeout after %.1fs: cancelling %s (%d messages undelivered)", self.drain_timeout,
                        ", ".join(stuck), queued)
            for runner in self.runners.values():
                if runner.task is not None:
                    runner.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await finished
        if finished.done() and not finished.cancelled():
            self._report(finished.result())

    def _report(self, results: list[Any]) -> None:
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("a node task ended with %r", result)

    # -- observability ----------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Per-node and per-edge figures; rates are per second since the previous snapshot."""
        now = time.monotonic()
        nodes: dict[str, Any] = {}
        for name, runner in self.runners.items():
            stats = runner.stats
            node_plan = runner.plan
            # a source's work is what it emitted
            processed = (sum(out.sent for out in runner.node._outputs.values()) if node_plan.source
                         else stats.processed)
            nodes[name] = {
                "type": node_plan.node_type,
                "stage": node_plan.stage,
                "device": node_plan.device,
                "mode": node_plan.mode,
                "state": stats.state,
                "processed": processed,
                "errors": stats.errors,
                "restarts": stats.restarts,
                "last_error": stats.last_error,
                "rate_hz": self._rates.rate(f"n:{name}", processed, now),
                "process_ms": stats.process_time.summary_ms(),
                "capture_age_ms": stats.capture_age.summary_ms(),
                **({"batch": stats.batch.summary()} if stats.batch is not None else {}),
                "counters": runner.node.counters(),
                "outputs": {port: {"sent": out.sent, "rate_hz": self._rates.rate(f"o:{name}/{port}", out.sent, now)}
                            for port, out in runner.node._outputs.items()},
            }
        edges = []
        for edge, channel in self.channels:
            if channel is None:
                sent = self.runners[edge.source].node._outputs[edge.source_port].sent
                age: dict[str, float | None] = {"p50": None, "p99": None}
                depth, drops, puts = 0, 0, sent
            else:
                depth, drops, puts = len(channel), channel.drops, channel.puts
                age = channel.age.summary_ms()
            edges.append({
                "from": f"{edge.source}/{edge.source_port}", "to": f"{edge.target}/{edge.target_port}",
                "type": edge.type_name, "policy": edge.policy, "size": edge.queue, "fused": edge.fused,
                "depth": depth, "drops": drops, "puts": puts, "age_ms": age,
                "rate_hz": self._rates.rate(f"e:{edge.label}", puts, now),
            })
        return {
            "graph": self.plan.name,
            "time": time.time(),
            "uptime_s": round(now - self.started_at, 3) if self.started_at else 0.0,
            "nodes": nodes,
            "edges": edges,
        }

    def _add_builtin_routes(self) -> None:
        from aiohttp import web

        server = self._server()

        async def metrics_json(request: web.Request) -> web.Response:
            return web.json_response(self.snapshot())

        async def metrics_prom(request: web.Request) -> web.Response:
            text = prometheus_lines(self.snapshot())
            return web.Response(text=text, content_type="text/plain", charset="utf-8")

        async def graph(request: web.Request) -> web.Response:
            body = self.plan.to_dict()
            if self.live is not None:
                body["live"] = self.live.status()
            return web.json_response(body)

        async def health(request: web.Request) -> web.Response:
            failed = [n for n, r in self.runners.items() if r.stats.state == "failed"]
            status = 503 if failed else 200
            return web.json_response({"ok": not failed, "failed": failed}, status=status)

        async def stream_list(request: web.Request) -> web.Response:
            # the analytics API installs a richer /api/streams; graphs without it still list their streams
            return web.json_response({"streams": self.scope.streams.all()})

        for path, handler in (("/api/metrics", metrics_json), ("/api/graph", graph), ("/api/streams", stream_list)):
            if not server.has_route("GET", path):
                server.add_get(path, handler)
        if self.live is not None:
            self.live.add_routes(server)
        if not server.has_route("GET", "/metrics"):
            server.add_get("/metrics", metrics_prom)
        if not server.has_route("GET", "/healthz"):
            server.add_get("/healthz", health, surface="public")
        if not server.has_route("GET", "/graph"):
            from .viz import live_page

            async def graph_page(request: web.Request) -> web.Response:
                versions = "/api/graph/versions" if self.live is not None else None
                return web.Response(text=live_page(self.plan, "/api/metrics", versions), content_type="text/html")

            server.add_get("/graph", graph_page)
            server.link("live graph", "/graph")


async def run_plan(plan: ExecutionPlan, **kwargs: Any) -> int:
    """Convenience: run a plan to completion in the current event loop."""
    return await Runtime(plan, **kwargs).run()
