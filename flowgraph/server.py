"""The one HTTP server of a graph, shared by every node that serves clients, the REST API and metrics.

Every route belongs to a *surface* that says who may use it (see :mod:`flowgraph.access`):

``public``   anyone: the viewer page and its assets, ``/healthz``, CORS preflights
``watch``    anyone, rate-limited per client address: viewer signalling (``/api/stream/connect``, WHEP offers)
``read``     ``server.read_token`` when set: the read API, history, metrics, the graph page (default for GET)
``control``  ``server.token``: viewer stats and anything else that changes state (default for other methods)
``publish``  the handler checks the publisher's credential (WHIP); rate-limited like ``watch``
``self``     the handler checks its own credential (rules, WS analytics, a viewer's own session)

Limits: a connection must send its request headers within ``limits.header_timeout_s`` (and an idle keep-alive
connection closes as soon), at most ``limits.max_connections`` are open at once (more are answered 503 and
closed), and each client address may start ``limits.signalling_burst`` signalling requests at once, refilled at
``limits.signalling_per_s``. ``server.tls`` ({cert, key}) serves https and wss instead of http and ws.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .access import bearer, token_matches, unauthorized
from .limits import Limits, RateLimiter

log = logging.getLogger("flowgraph.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SURFACE_KINDS = ("public", "watch", "publish", "read", "control", "self")


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
    except RecursionError:
        # a body nested deeper than any parser should follow is the client's fault, whichever parser hit it
        return json_error(400, "the request is nested too deeply", path=request.path)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return json_error(500, "internal error", path=request.path)


#: The node whose ``setup`` is running (set by its runner): routes added meanwhile are that node's.
SETTING_UP: contextvars.ContextVar[str | None] = contextvars.ContextVar("flowgraph_setting_up", default=None)


class _Refuse(asyncio.Protocol):
    """Stands in for a request handler when the server is at its connection cap: 503, then close."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: application/json"
                        b"\r\nContent-Length: 38\r\n\r\n{\"error\": \"too many open connections\"}")
        transport.close()


class GraphServer:
    """An aiohttp application plus the sockets it listens on. Routes are added before :meth:`start`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, max_body_bytes: int = 262_144, *,
                 conf: dict[str, Any] | None = None) -> None:
        conf = conf or {}
        self.host = host
        self.port = port
        #: ``server.token``: control surfaces (and rules when their fuse node has no token of its own).
        self.token = str(conf.get("token") or "")
        #: ``server.read_token``: read surfaces (and WS analytics when ws_out has no token of its own).
        self.read_token = str(conf.get("read_token") or "")
        self.limits = Limits.from_conf(conf.get("limits") or {})
        tls = conf.get("tls") or {}
        self.tls: tuple[str, str] | None = (str(tls["cert"]), str(tls["key"])) if tls else None
        self.app = web.Application(client_max_size=max_body_bytes, middlewares=[_json_errors, self._guard])
        self.signalling = RateLimiter(self.limits.signalling_burst, self.limits.signalling_per_s)
        self._runner: web.AppRunner | None = None
        self._listeners: list[asyncio.AbstractServer] = []
        self.extra_ports: list[int] = []
        self.bound_ports: list[int] = []
        self.routes: list[tuple[str, str]] = []
        #: Routes by the node that added them (live re-wiring must not restart a node that serves clients).
        self.owners: dict[str, list[tuple[str, str]]] = {}
        self._surfaces: dict[tuple[str, str], str] = {}
        self._index: dict[str, str] = {}
        self.refused_connections = 0
        self.refused_requests = {"read": 0, "control": 0, "rate": 0}

    # -- routes ---------------------------------------------------------------------------------------------
    def add_route(self, method: str, path: str, handler: Handler, *, name: str | None = None,
                  surface: str | None = None) -> None:
        """Add a route; ``surface`` says who may use it (default: ``read`` for GET, else ``control``)."""
        surface = surface or ("read" if method in ("GET", "HEAD") else "control")
        if surface not in SURFACE_KINDS:
            raise ValueError(f"unknown surface {surface!r} (expected one of {', '.join(SURFACE_KINDS)})")
        self.app.router.add_route(method, path, handler, name=name)
        self.routes.append((method, path))
        owner = SETTING_UP.get()
        if owner is not None:
            self.owners.setdefault(owner, []).append((method, path))
        self._surfaces[(method, path)] = surface

    def add_get(self, path: str, handler: Handler, *, surface: str | None = None) -> None:
        self.add_route("GET", path, handler, surface=surface)

    def add_post(self, path: str, handler: Handler, *, surface: str | None = None) -> None:
        self.add_route("POST", path, handler, surface=surface)

    def add_static(self, prefix: str, directory: str) -> None:
        """Static files are public (the viewer page's assets)."""
        self.app.router.add_static(prefix, directory)
        self.routes.append(("GET", prefix + "/*"))
        owner = SETTING_UP.get()
        if owner is not None:
            self.owners.setdefault(owner, []).append(("GET", prefix + "/*"))
        self._surfaces[("GET", prefix)] = "public"
        self._surfaces[("HEAD", prefix)] = "public"

    def has_route(self, method: str, path: str) -> bool:
        return (method, path) in self.routes

    def surface_of(self, method: str, path: str) -> str | None:
        return self._surfaces.get((method, path))

    def link(self, title: str, path: str) -> None:
        """List a page on the server's index at ``/_index`` (and in the CLI's startup banner)."""
        self._index[title] = path

    @property
    def links(self) -> dict[str, str]:
        return dict(self._index)

    # -- who may ------------------------------------------------------------------------------------------------
    def allows_control(self, request: web.Request) -> bool:
        """Whether the request carries ``server.token`` (always False when there is none)."""
        return token_matches(bearer(request), [self.token])

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        resource = route.resource
        canonical = resource.canonical if resource is not None else request.path
        method = "GET" if request.method == "HEAD" else request.method
        surface = self._surfaces.get((method, canonical), "public" if resource is None else "control")
        if surface == "read" and self.read_token:
            if not token_matches(bearer(request, query=True), [self.read_token, self.token]):
                self.refused_requests["read"] += 1
                return unauthorized("read", "Authorization: Bearer <read token> or ?token=<read token>")
        elif surface == "control" and self.token:
            if not self.allows_control(request):
                self.refused_requests["control"] += 1
                return unauthorized("control")
        address = request.remote or "?"
        if surface in ("watch", "publish") and request.method == "POST" and self.limits.applies_to(address):
            wait = self.signalling.take(address)
            if wait > 0:
                self.refused_requests["rate"] += 1
                response = json_error(429, "too many signalling requests from this address",
                                      retry_after_s=round(wait, 1))
                response.headers["Retry-After"] = str(max(1, round(wait)))
                return response
        return await handler(request)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*self.tls)
        return context

    def _protocol(self) -> asyncio.BaseProtocol:
        assert self._runner is not None and self._runner.server is not None
        server = self._runner.server
        if len(server.connections) >= self.limits.max_connections:
            self.refused_connections += 1
            return _Refuse()
        return server()

    async def start(self) -> None:
        if not self.has_route("GET", "/_index"):
            self.add_get("/_index", self._serve_index)
        # keepalive_timeout also closes a connection that has not finished its first request's headers
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                                     keepalive_timeout=self.limits.header_timeout_s)
        await self._runner.setup()
        context = self._ssl_context()
        loop = asyncio.get_running_loop()
        for port in [self.port, *self.extra_ports]:
            listener = await loop.create_server(self._protocol, self.host, port, ssl=context, reuse_address=True,
                                                backlog=128)
            self._listeners.append(listener)
            sockets: list[Any] = list(getattr(listener, "sockets", None) or [])
            self.bound_ports.append(sockets[0].getsockname()[1] if sockets else port)
        self.port = self.bound_ports[0]
        log.info("serving on %s", self.url)

    async def stop(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners = []
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"{self.scheme}://{host}:{self.port}"

    async def _serve_index(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(self._index), content_type="application/json")
