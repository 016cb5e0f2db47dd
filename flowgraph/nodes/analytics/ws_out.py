"""``ws_out``: pushes analytics to WebSocket clients at ``WS /stream/{stream_id}/analytics``.

Clients receive ``{"type", "payload", "seq"}`` text messages. Query parameters:

``types`` (or ``type``)
    comma-separated subset of ``detection,pose,speed,betting_opportunity`` (default: all).
``since``
    resume after this ``seq``: what the stream's ring buffer still holds is replayed first (a ``gap`` notice says
    what could not be). ``since=0`` replays the whole buffer.
``token``
    the bearer token, for browsers that cannot set ``Authorization: Bearer ...`` on a WebSocket.

A client may send JSON text: ``{"op": "subscribe", "types": [...]}`` changes its filter, ``{"op": "ping"}`` is
answered ``{"type": "pong", ...}``. Anything else closes the connection with a clear code: 1003 (binary frame),
1007 (not a JSON object), 1008 (unknown op or bad field), 1009 (larger than ``max_client_message_bytes``).
Refusals happen before the upgrade, as JSON: 400 (bad query), 401 (token), 403 (origin), 404 (unknown stream),
503 (connection limits).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowgraph.access import Surface, bearer, token_matches, unauthorized
from flowgraph.context import Key, NodeContext
from flowgraph.messages import Analytics, StreamEnd
from flowgraph.node import Node
from flowgraph.nodes.analytics.schemas import ANALYTICS_TYPES
from flowgraph.params import param
from flowgraph.ports import Input
from flowgraph.streams import ReportThrottle

from .ring import rings
from .ws_hub import WsClient, WsHub, notice

if TYPE_CHECKING:
    from aiohttp import web

QUERY_KEYS = ("types", "type", "since", "token")
#: The graph's one WebSocket hub (ws_out nodes on one graph share it; the first one's limits apply).
WS_HUB: Key[WsHub] = Key("analytics.ws_hub")


class WsOut(Node):
    """Pushes analytics to WebSocket clients (per-client bounded queues, resume by sequence number)."""

    analytics = Input(Analytics, "messages to push (ring-numbered by fuse; numbered here otherwise)")

    @dataclass
    class Params:
        path: str = param("/stream/{stream_id}/analytics", "WebSocket route (must contain {stream_id})",
                          pattern=r"^/.*\{stream_id\}.*$")
        queue_size: int = param(256, "messages queued per slow client before the oldest is dropped", minimum=1,
                                maximum=1_000_000)
        high_water_kb: int = param(256, "a client's socket backlog (KiB) beyond which messages queue", minimum=1)
        max_clients: int = param(10_000, "WebSocket clients in all", minimum=1)
        max_clients_per_stream: int = param(5_000, "WebSocket clients per stream", minimum=1)
        ping_interval_s: float = param(20.0, "ping every N seconds; no pong within N/2 closes (0 = off)", minimum=0)
        token: str = param("", "bearer token clients must present ('' = server.read_token; neither: open, "
                               "allowed on loopback only unless server.open lists ws)")
        allowed_origins: list[str] = param([], "browser Origins allowed (empty = any); non-browser clients "
                                               "without an Origin header are allowed")
        max_client_message_bytes: int = param(4096, "largest frame a client may send (larger: close 1009)",
                                              minimum=64)
        stall_timeout_s: float = param(0.0, "disconnect a client whose socket stays full this long (0 = never;"
                                            " it keeps losing its oldest messages instead)", minimum=0)
        streams: list[str] = param([], "stream ids accepted before their first message")
        allow_unknown_streams: bool = param(False, "accept clients for any stream id (else 404 until known)")

    @classmethod
    def surfaces(cls, params: Any) -> list[Surface]:
        return [Surface("ws", f"WS analytics ({params.path})", params.token, ("token",))]

    def __init__(self, ctx: NodeContext, params: WsOut.Params | None = None) -> None:
        super().__init__(ctx, params)
        p = self.params
        self.hub: WsHub = self.ctx.shared(WS_HUB, lambda: WsHub(
            queue_size=p.queue_size, high_water=p.high_water_kb * 1024, max_clients=p.max_clients,
            max_per_stream=p.max_clients_per_stream, stall_timeout_s=p.stall_timeout_s))
        self.rings = rings(self.ctx)
        self._reports = ReportThrottle(1.0)
        self._reported_viewers: dict[str, int] = {}

    async def setup(self) -> None:
        from .api import api_for

        p = self.params
        server = self.ctx.server
        if not server.has_route("GET", p.path):
            server.add_get(p.path, self._connect, surface="self")
            server.link("analytics WebSocket", p.path)
        api_for(self.ctx).hub = self.hub

    async def stop(self) -> None:
        await self.hub.close_all()

    async def process(self, msg: Analytics) -> None:
        if msg.seq < 0:
            self.rings.ensure(msg.stream_id).append(msg)
        self.hub.publish(msg)
        self._report(msg.stream_id)

    def end_stream(self, end: StreamEnd) -> None:
        """The stream ended: its clients stay (it may come back) and are told; its ring restarts at seq 1, so
        their resume position restarts too."""
        self.rings.drop(end.stream_id)
        self._reports.forget(end.stream_id)
        self._reported_viewers.pop(end.stream_id, None)
        frame = notice("stream_end", {"stream_id": end.stream_id, "reason": end.reason})
        for client in self.hub.clients(end.stream_id):
            client.last_seq = 0
            client.send_now(frame)

    def _report(self, stream_id: str) -> None:
        count = self.hub.count(stream_id)
        if not self._reports.due(stream_id, force=self._reported_viewers.get(stream_id) != count):
            return
        self._reported_viewers[stream_id] = count
        self.ctx.streams.update(stream_id, "ws_out", viewers=count)

    def counters(self) -> dict[str, Any]:
        return {k: v for k, v in self.hub.stats().items() if k != "streams"}

    # -- connections ----------------------------------------------------------------------------------------
    def _known(self, stream_id: str) -> bool:
        p = self.params
        return (p.allow_unknown_streams or stream_id in p.streams or self.rings.get(stream_id) is not None
                or self.ctx.streams.known(stream_id))

    def _refusal(self, request: web.Request, stream_id: str) -> web.Response | None:
        from flowgraph.server import json_error

        p = self.params
        server = self.ctx.server
        accepted = [p.token] if p.token else [server.read_token, server.token]
        if any(accepted) and not token_matches(bearer(request, query=True), accepted):
            return unauthorized("analytics", "Authorization: Bearer <token> or ?token=<token>")
        origin = request.headers.get("Origin")
        if p.allowed_origins and origin is not None and origin not in p.allowed_origins:
            return json_error(403, f"origin {origin!r} is not allowed", allowed=p.allowed_origins)
        unknown = sorted(set(request.query) - set(QUERY_KEYS))
        if unknown:
            return json_error(400, f"unknown query parameter {unknown[0]!r}", expected=", ".join(QUERY_KEYS))
        if not self._known(stream_id):
            return json_error(404, f"unknown stream {stream_id!r}", streams=self.rings.ids())
        reason = self.hub.admit(stream_id)
        if reason is not None:
            self.hub.refused += 1
            return json_error(503, reason)
        return None

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        from flowgraph.server import json_error

        stream_id = request.match_info["stream_id"]
        refusal = self._refusal(request, stream_id)
        if refusal is not None:
            return refusal
        raw_types = request.query.get("types", request.query.get("type"))
        types = _types(raw_types)
        if isinstance(types, str):
            return json_error(400, types, param="types", expected=",".join(ANALYTICS_TYPES))
        since = _since(request.query.get("since"))
        if isinstance(since, str):
            return json_error(400, since, param="since", expected="a non-negative integer seq")
        p = self.params
        ws = web.WebSocketResponse(heartbeat=p.ping_interval_s or None, max_msg_size=p.max_client_message_bytes,
                                   compress=False)
        if not ws.can_prepare(request).ok:
            return json_error(400, "expected a WebSocket upgrade", path=request.path)
        await ws.prepare(request)
        transport = request.transport
        if transport is None:
            return ws
        peer = request.remote or "?"
        client = WsClient(self.hub, ws, transport, stream_id, types, peer)
        if since is not None:
            client.resume(self.rings.get(stream_id), since)
        self.hub.add(client)
        self._report(stream_id)
        try:
            await self._serve(ws, client)
        finally:
            await self.hub.remove(client)
            self._report(stream_id)
        return ws

    async def _serve(self, ws: web.WebSocketResponse, client: WsClient) -> None:
        """Read what the client sends until it goes; a bad frame closes it with a code that says why."""
        from aiohttp import WSMsgType

        async for message in ws:
            if message.type == WSMsgType.BINARY:
                await ws.close(code=1003, message=b"binary frames are not accepted; send JSON text")
                return
            if message.type != WSMsgType.TEXT:
                return  # ERROR: aiohttp already closed with the protocol's code (1009 for oversized frames)
            try:
                request = json.loads(message.data)
            except ValueError:
                await ws.close(code=1007, message=b"expected a JSON object")
                return
            except RecursionError:
                await ws.close(code=1007, message=b"the JSON is nested too deeply")
                return
            if not isinstance(request, dict):
                await ws.close(code=1007, message=b"expected a JSON object")
                return
            problem = self._op(request, client)
            if problem is not None:
                await ws.close(code=1008, message=problem.encode()[:120])
                return

    def _op(self, request: dict[str, Any], client: WsClient) -> str | None:
        op = request.get("op")
        if op == "ping":
            client.send_now(notice("pong", {"timestamp": time.time(), "seq": client.last_seq}))
            return None
        if op == "subscribe":
            raw = request.get("types")
            if raw is None:
                client.types = None
                return None
            if not isinstance(raw, list) or not raw:
                return "subscribe: types must be a non-empty list"
            types = _types(",".join(str(t) for t in raw))
            if isinstance(types, str):
                return f"subscribe: {types}"
            client.types = types
            return None
        return f"unknown op {op!r} (expected subscribe or ping)"


def _types(raw: str | None) -> frozenset[str] | str | None:
    """A type filter from ``a,b``; a string is an error message."""
    if raw is None or raw == "":
        return None
    wanted = [t.strip() for t in raw.split(",") if t.strip()]
    bad = [t for t in wanted if t not in ANALYTICS_TYPES]
    if bad:
        return f"unknown analytics type {bad[0]!r}"
    return frozenset(wanted)


def _since(raw: str | None) -> int | str | None:
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return f"bad value {raw!r} for since"
    if value < 0:
        return f"bad value {raw!r} for since"
    return value
