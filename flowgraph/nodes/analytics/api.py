"""The REST API of the analytics path, on the graph's shared server.

``GET /api/streams``                          live streams: roles, viewers, fps, health
``GET /api/streams/{id}``                     one of them
``GET /api/streams/{id}/analytics``           stored messages (``from``, ``to``, ``type``, ``limit``)
``GET /api/streams/{id}/opportunities``       betting opportunities (``from``, ``to``, ``active``, ``limit``)
``GET|PUT|DELETE /api/streams/{id}/rules``    the rules in force for a stream; PUT replaces them live
``GET /api/openapi.json``                     the OpenAPI description of all of it

Errors are JSON ``{"error": ...}``: 400 for bad query parameters or rules (with ``param`` or ``path``), 401 for a
missing token, 404 for unknown streams, 503 when the store cannot be reached. Whichever analytics node is set up
first installs the routes; the others register themselves here (the shared ``API`` hub).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

from flowgraph.context import Key, NodeContext
from flowgraph.errors import ParamsError
from flowgraph.nodes.analytics.schemas import ANALYTICS_TYPES
from flowgraph.server import json_error
from flowgraph.streams import StreamRegistry, live_figures

from .backends import BackendDown
from .ring import RingRegistry, rings
from .rules import parse_rules

if TYPE_CHECKING:
    from aiohttp import web

    from flowgraph.server import GraphServer

    from .fuse import Fuse
    from .store import Store
    from .ws_hub import WsHub

MAX_LIMIT = 10_000
HEALTHY_S = 2.0
STALE_S = 30.0


class QueryError(ValueError):
    def __init__(self, param: str, message: str, expected: str) -> None:
        super().__init__(message)
        self.param = param
        self.expected = expected


class AnalyticsApi:
    """Routes plus the nodes they read from."""

    def __init__(self, streams: StreamRegistry, rings: RingRegistry) -> None:
        self.streams = streams
        self.rings = rings
        self.fuses: list[Fuse] = []
        self.stores: list[Store] = []
        self.hub: WsHub | None = None
        self.server: GraphServer | None = None

    def add_fuse(self, node: Fuse) -> None:
        self.fuses.append(node)

    def add_store(self, node: Store) -> None:
        self.stores.append(node)

    def install(self, server: Any) -> None:
        routes = [
            ("GET", "/api/streams", self.list_streams),
            ("GET", "/api/streams/{stream_id}", self.get_stream),
            ("GET", "/api/streams/{stream_id}/analytics", self.get_analytics),
            ("GET", "/api/streams/{stream_id}/opportunities", self.get_opportunities),
            ("GET", "/api/streams/{stream_id}/rules", self.get_rules),
            ("PUT", "/api/streams/{stream_id}/rules", self.put_rules),
            ("DELETE", "/api/streams/{stream_id}/rules", self.delete_rules),
            ("GET", "/api/openapi.json", self.openapi),
        ]
        self.server = server
        for method, path, handler in routes:
            if not server.has_route(method, path):
                # rules are changed with the fuse node's own token (else server.token): the handler checks it
                server.add_route(method, path, handler, surface="read" if method == "GET" else "self")
        server.link("analytics API (OpenAPI)", "/api/openapi.json")

    # -- streams --------------------------------------------------------------------------------------------
    def _ids(self) -> list[str]:
        return sorted(set(self.streams.ids()) | set(self.rings.ids()))

    async def _known(self, stream_id: str) -> bool:
        if stream_id in self._ids():
            return True
        for store in self.stores:
            try:
                if await store.has_stream(stream_id):
                    return True
            except Exception:  # an unreachable store cannot vouch for a stream; the others may
                continue
        return False

    def _summary(self, stream_id: str) -> dict[str, Any]:
        roles = self.streams.get(stream_id) or {"stream_id": stream_id}
        ring = self.rings.get(stream_id)
        now = time.time()
        updated = [float(v["updated"]) for v in roles.values() if isinstance(v, dict) and "updated" in v]
        if ring is not None and ring.last_time:
            updated.append(ring.last_time)
        age = now - max(updated) if updated else None
        health = "idle" if age is None else "ok" if age <= HEALTHY_S else "stale" if age <= STALE_S else "down"
        ws_viewers = self.hub.count(stream_id) if self.hub is not None else 0
        other_viewers = sum(int(v.get("viewers", 0)) for k, v in roles.items()
                            if isinstance(v, dict) and k != "ws_out" and isinstance(v.get("viewers"), int))
        fps = ring.fps() if ring is not None else None
        if not fps:
            reported = [v.get("fps") for v in roles.values() if isinstance(v, dict)]
            fps = next((float(f) for f in reported if isinstance(f, int | float) and f), fps)
        return {
            "stream_id": stream_id,
            "health": health,
            "age_s": None if age is None else round(age, 3),
            "fps": fps,
            "viewers": {"ws": ws_viewers, "other": other_viewers, "total": ws_viewers + other_viewers},
            "analytics": ring.stats() if ring is not None else None,
            "live": live_figures({k: v for k, v in roles.items() if isinstance(v, dict) and k != "live"}),
            "roles": {k: v for k, v in roles.items() if k not in ("stream_id", "live")},
        }

    async def list_streams(self, request: web.Request) -> web.Response:
        from aiohttp import web

        try:
            _no_params(request, ())
        except QueryError as exc:
            return json_error(400, str(exc), param=exc.param, expected=exc.expected)
        return web.json_response({"streams": [self._summary(s) for s in self._ids()], "time": time.time()})

    async def get_stream(self, request: web.Request) -> web.Response:
        from aiohttp import web

        stream_id = request.match_info["stream_id"]
        if stream_id not in self._ids():
            return _unknown(stream_id, self._ids())
        return web.json_response(self._summary(stream_id))

    # -- history --------------------------------------------------------------------------------------------
    async def get_analytics(self, request: web.Request) -> web.Response:
        try:
            _no_params(request, ("from", "to", "type", "types", "limit"))
            t_from, t_to = _window(request)
            types = _types(request.query.get("type", request.query.get("types")))
            limit = _limit(request.query.get("limit"), 1000)
        except QueryError as exc:
            return json_error(400, str(exc), param=exc.param, expected=exc.expected)
        return await self._history(request, t_from, t_to, types, limit, lambda items: items)

    async def get_opportunities(self, request: web.Request) -> web.Response:
        try:
            _no_params(request, ("from", "to", "active", "limit"))
            t_from, t_to = _window(request)
            limit = _limit(request.query.get("limit"), 100)
            active = _bool(request.query.get("active"), "active")
        except QueryError as exc:
            return json_error(400, str(exc), param=exc.param, expected=exc.expected)
        now = time.time()

        def shape(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            payloads = [m["payload"] for m in items]
            if active:
                payloads = [p for p in payloads if float(p.get("expires_at", 0)) > now]
            return payloads

        return await self._history(request, t_from, t_to, ["betting_opportunity"], limit, shape)

    async def _history(self, request: web.Request, t_from: float | None, t_to: float | None,
                       types: list[str] | None, limit: int, shape: Any) -> web.Response:
        from aiohttp import web

        stream_id = request.match_info["stream_id"]
        if not await self._known(stream_id):
            return _unknown(stream_id, self._ids())
        if self.stores:
            store = self.stores[0]
            try:
                items = await store.query(stream_id, t_from, t_to, types, limit)
            except BackendDown as exc:
                return json_error(503, f"store {store.describe()} is unreachable: {exc}", retry_after_s=1)
            source = f"store:{store.describe()}"
        else:
            ring = self.rings.get(stream_id)
            found = [] if ring is None else ring.window(t_from, t_to, types, limit)
            items = [{**m.to_wire(), "seq": m.seq} for m in found]
            source = "buffer"
        shaped = shape(items)
        return web.json_response({"stream_id": stream_id, "source": source, "count": len(shaped),
                                  "items": shaped}, dumps=_dumps)

    # -- rules ----------------------------------------------------------------------------------------------
    def _fuse_for(self, stream_id: str) -> Fuse | None:
        for node in self.fuses:
            if node.handles(stream_id):
                return node
        return self.fuses[0] if len(self.fuses) == 1 and stream_id in self._ids() else None

    async def get_rules(self, request: web.Request) -> web.Response:
        from aiohttp import web

        stream_id = request.match_info["stream_id"]
        node = self._fuse_for(stream_id)
        if node is None:
            return _unknown(stream_id, self._ids())
        return web.json_response(self._rules_body(node, stream_id))

    def _rules_body(self, node: Fuse, stream_id: str) -> dict[str, Any]:
        book = node.book
        return {"stream_id": stream_id, "origin": book.origin(stream_id), "version": book.version,
                "rules": [r.to_dict() for r in book.overrides.get(stream_id, book.default)]}

    def _editable_fuse(self, request: web.Request, stream_id: str) -> Fuse | web.Response:
        """The fuse node whose rules this request may change, or the 404/401 answer to send instead."""
        node = self._fuse_for(stream_id)
        if node is None:
            return _unknown(stream_id, self._ids())
        server_token = self.server.token if self.server is not None else ""
        return _authorise(request, node.params.api_token or server_token) or node

    async def put_rules(self, request: web.Request) -> web.Response:
        from aiohttp import web

        stream_id = request.match_info["stream_id"]
        node = self._editable_fuse(request, stream_id)
        if isinstance(node, web.Response):
            return node
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return json_error(400, "body is not JSON", expected='{"rules": [...]} or a list of rules')
        except RecursionError:
            return json_error(400, "body is nested too deeply", expected='{"rules": [...]} or a list of rules')
        raw = body.get("rules") if isinstance(body, dict) else body
        base: tuple[str | int, ...] = ("rules",) if isinstance(body, dict) else ()
        try:
            rules = parse_rules(raw if raw is not None else [], base)
        except ParamsError as exc:
            return json_error(400, exc.message, path=list(exc.path), expected=exc.expected)
        except RecursionError:
            return json_error(400, "rules are nested too deeply", expected="a list of rule mappings")
        node.book.set_stream(stream_id, rules)
        node.log.info("rules for stream %r replaced over REST: %d rules", stream_id, len(rules))
        return web.json_response(self._rules_body(node, stream_id))

    async def delete_rules(self, request: web.Request) -> web.Response:
        from aiohttp import web

        stream_id = request.match_info["stream_id"]
        node = self._editable_fuse(request, stream_id)
        if isinstance(node, web.Response):
            return node
        node.book.clear_stream(stream_id)
        return web.json_response(self._rules_body(node, stream_id))

    async def openapi(self, request: web.Request) -> web.Response:
        from aiohttp import web

        from .openapi import document

        return web.json_response(document(self.hub is not None))


#: The graph's one analytics API (fuse, store and ws_out nodes register with it).
API: Key[AnalyticsApi] = Key("analytics.api")


def api_for(ctx: NodeContext) -> AnalyticsApi:
    """The graph's analytics API, installing its routes on the graph server the first time."""
    def build() -> AnalyticsApi:
        api = AnalyticsApi(ctx.streams, rings(ctx))
        api.install(ctx.server)
        return api

    return ctx.shared(API, build)


# -- query parsing --------------------------------------------------------------------------------------------
def _no_params(request: web.Request, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise QueryError(unknown[0], f"unknown query parameter {unknown[0]!r}",
                         ", ".join(allowed) if allowed else "no query parameters")


#: The latest time a query may name (9999-12-31): beyond it no store can turn the number into a timestamp.
MAX_TIME = 253_402_300_799.0


def _time(raw: str | None, name: str) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            # an unencoded "+01:00" arrives as " 01:00" (form decoding): take it as meant
            stamp = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace(" ", "+"))
        except ValueError:
            raise QueryError(name, f"bad value {raw[:40]!r} for {name}",
                             "unix seconds or an ISO 8601 time") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        value = stamp.timestamp()
    if not 0.0 <= value <= MAX_TIME:  # nan, inf, 1e300, before 1970
        raise QueryError(name, f"bad value {raw[:40]!r} for {name}",
                         f"a time from 1970 to 9999: unix seconds (0 to {MAX_TIME:.0f}) or ISO 8601")
    return value


def _window(request: web.Request) -> tuple[float | None, float | None]:
    t_from = _time(request.query.get("from"), "from")
    t_to = _time(request.query.get("to"), "to")
    if t_from is not None and t_to is not None and t_from > t_to:
        raise QueryError("from", "from is after to", "from <= to")
    return t_from, t_to


def _types(raw: str | None) -> list[str] | None:
    if raw is None or raw == "":
        return None
    wanted = [t.strip() for t in raw.split(",") if t.strip()]
    for kind in wanted:
        if kind not in ANALYTICS_TYPES:
            raise QueryError("type", f"unknown analytics type {kind!r}", ", ".join(ANALYTICS_TYPES))
    return wanted


def _limit(raw: str | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError("limit", f"bad value {raw!r} for limit", f"an integer 1..{MAX_LIMIT}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise QueryError("limit", f"bad value {raw!r} for limit", f"an integer 1..{MAX_LIMIT}")
    return value


def _bool(raw: str | None, name: str) -> bool:
    if raw is None or raw == "":
        return False
    lowered = raw.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise QueryError(name, f"bad value {raw!r} for {name}", "true or false")


def _unknown(stream_id: str, known: list[str]) -> web.Response:
    return json_error(404, f"unknown stream {stream_id!r}", streams=known)


def _authorise(request: web.Request, token: str) -> web.Response | None:
    if not token:
        return None
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if hmac.compare_digest(given.encode(), token.encode()):
        return None
    response = json_error(401, "missing or wrong bearer token", expected="Authorization: Bearer <token>")
    response.headers["WWW-Authenticate"] = 'Bearer realm="analytics"'
    return response


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
