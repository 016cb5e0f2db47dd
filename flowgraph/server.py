"""The one HTTP server of a graph, shared by every node that serves clients, the REST API and metrics."""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("flowgraph.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    """A JSON error body ``{"error": message, ...}`` with the given status."""
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP errors come back as JSON; an unexpected exception is logged and answered 500, never a crash."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        return json_error(exc.status, exc.reason, path=request.path)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return json_error(500, "internal error", path=request.path)


#: The node whose ``setup`` is running (set by its runner): routes added meanwhile are that node's.
SETTING_UP: contextvars.ContextVar[str | None] = contextvars.ContextVar("flowgraph_setting_up", default=None)


class GraphServer:
    """An aiohttp application plus the sockets it listens on. Routes are added before :meth:`start`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, max_body_bytes: int = 262_144) -> None:
        self.host = host
        self.port = port
        self.app = web.Application(client_max_size=max_body_bytes, middlewares=[_json_errors])
        self._runner: web.AppRunner | None = None
        self.extra_ports: list[int] = []
        self.bound_ports: list[int] = []
        self.routes: list[tuple[str, str]] = []
        #: Routes by the node that added them (live re-wiring must not restart a node that serves clients).
        self.owners: dict[str, list[tuple[str, str]]] = {}
        self._index: dict[str, str] = {}

    # -- routes ---------------------------------------------------------------------------------------------
    def add_route(self, method: str, path: str, handler: Handler, *, name: str | None = None) -> None:
        self.app.router.add_route(method, path, handler, name=name)
        self.routes.append((method, path))
        owner = SETTING_UP.get()
        if owner is not None:
            self.owners.setdefault(owner, []).append((method, path))

    def add_get(self, path: str, handler: Handler) -> None:
        self.add_route("GET", path, handler)

    def add_post(self, path: str, handler: Handler) -> None:
        self.add_route("POST", path, handler)

    def add_static(self, prefix: str, directory: str) -> None:
        self.app.router.add_static(prefix, directory)
        self.routes.append(("GET", prefix + "/*"))
        owner = SETTING_UP.get()
        if owner is not None:
            self.owners.setdefault(owner, []).append(("GET", prefix + "/*"))

    def has_route(self, method: str, path: str) -> bool:
        return (method, path) in self.routes

    def link(self, title: str, path: str) -> None:
        """List a page on the server's index at ``/_index`` (and in the CLI's startup banner)."""
        self._index[title] = path

    @property
    def links(self) -> dict[str, str]:
        return dict(self._index)

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.has_route("GET", "/_index"):
            self.add_get("/_index", self._serve_index)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        for port in [self.port, *self.extra_ports]:
            site = web.TCPSite(self._runner, self.host, port, reuse_address=True)
            await site.start()
            server = getattr(site, "_server", None)
            sockets = getattr(server, "sockets", None) or []
            self.bound_ports.append(sockets[0].getsockname()[1] if sockets else port)
        self.port = self.bound_ports[0]
        log.info("serving on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    async def _serve_index(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(self._index), content_type="application/json")
