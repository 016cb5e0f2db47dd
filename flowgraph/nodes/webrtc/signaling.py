"""HTTP signalling: ``POST /api/stream/connect`` (the platform's JSON contract), WHEP, stats and the viewer page.

Several ``webrtc_out`` nodes may share one graph server; the first registers the routes and a :class:`Router`
(the graph's shared ``ROUTER`` hub) sends each request to the node serving the requested stream.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from flowgraph.context import Hubs, Key
from flowgraph.limits import Limits
from flowgraph.server import json_error

from .errors import OFFER_PARSE_ERRORS, BadOffer, TooManyViewers, UnknownStream, ViewerRequestError, bad_offer

if TYPE_CHECKING:
    from flowgraph.server import GraphServer

log = logging.getLogger("flowgraph.webrtc.signaling")

WEB_DIR = Path(__file__).with_name("web")
#: WHEP players often live on another origin (a CDN page, OBS docks): let them post offers and read Location.
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Authorization", "Access-Control-Expose-Headers": "Location"}


class Backend(Protocol):
    """What a node offers the router: the viewers of some streams."""

    @property
    def name(self) -> str: ...
    @property
    def max_sdp_bytes(self) -> int: ...
    @property
    def default_stream(self) -> str: ...

    def known(self, stream_id: str) -> bool: ...
    def stream_ids(self) -> list[str]: ...
    def viewers_of(self, stream_id: str) -> int: ...
    def has_viewer(self, viewer_id: str) -> bool: ...
    async def connect(self, offer_sdp: str, stream_id: str) -> tuple[str, str]: ...
    async def disconnect(self, viewer_id: str) -> None: ...
    async def viewer_stats(self) -> dict[str, Any]: ...
    def page_config(self) -> dict[str, Any]: ...


def check_offer(sdp: Any, limit: int) -> str:
    """Reject what cannot be an SDP offer before aiortc parses it (size, encoding, shape)."""
    if isinstance(sdp, bytes):
        try:
            sdp = sdp.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadOffer("the offer is not UTF-8 text") from exc
    if isinstance(sdp, dict):  # a browser RTCSessionDescription passed as is
        sdp = sdp.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise BadOffer("missing offer: expected an SDP string")
    if len(sdp) > limit:
        raise BadOffer(f"the offer is {len(sdp)} bytes; the limit is {limit} (max_sdp_bytes)")
    if not sdp.lstrip().startswith("v=0"):
        raise BadOffer("the offer is not SDP (it must start with 'v=0')")
    lines = sdp.replace("\r\n", "\n").split("\n")
    if "m=video" not in [line.split(" ", 1)[0] for line in lines]:
        raise BadOffer("the offer has no video m-line (m=video ...)")
    # aiortc accepts a BUNDLE group naming unknown mids, then its connect task fails on its own (found by fuzzing)
    mids = {line[6:].strip() for line in lines if line.startswith("a=mid:")}
    for line in lines:
        if line.startswith("a=group:BUNDLE"):
            unknown = [mid for mid in line[len("a=group:BUNDLE"):].split() if mid not in mids]
            if unknown:
                raise BadOffer(f"a=group:BUNDLE names mid {unknown[0][:40]!r}, which no m-line has (a=mid:)")
    return sdp


class Router:
    """Routes viewer requests to the node that serves the stream."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.backends: list[Backend] = []
        self.limits = limits or Limits()
        #: per client address: (time, viewer_id) of the viewers it opened lately, oldest first
        self._recent: dict[str, deque[tuple[float, str]]] = {}
        self.refused_per_address = 0

    def add(self, backend: Backend) -> None:
        self.backends.append(backend)

    def stream_ids(self) -> list[str]:
        return sorted({s for b in self.backends for s in b.stream_ids()})

    def resolve(self, stream_id: str | None) -> tuple[Backend, str]:
        if not self.backends:
            raise UnknownStream("no webrtc_out node is running")
        if not stream_id:
            first = self.backends[0]
            stream_id = first.default_stream or next(iter(first.stream_ids()), "default")
        for backend in self.backends:
            if backend.known(stream_id):
                return backend, stream_id
        known = ", ".join(self.stream_ids()) or "none yet"
        raise UnknownStream(f"unknown stream {stream_id!r} (known: {known})")

    async def connect(self, offer: Any, stream_id: str | None, address: str = "?") -> tuple[str, str, str]:
        backend, stream_id = self.resolve(stream_id)
        sdp = check_offer(offer, backend.max_sdp_bytes)
        self._admit(address)
        try:
            viewer_id, answer = await backend.connect(sdp, stream_id)
        except OFFER_PARSE_ERRORS as exc:  # aiortc could not parse the peer's SDP: the peer's error
            log.info("viewer offer from %s refused: %s: %s", address, type(exc).__name__, str(exc)[:160])
            raise bad_offer(exc) from None
        if self.limits.applies_to(address):
            self._recent.setdefault(address, deque()).append((time.monotonic(), viewer_id))
        return stream_id, viewer_id, answer

    def _admit(self, address: str) -> None:
        """Refuse an address whose recent viewers (pending offers included) are still open at the limit: a few
        offers that never finish ICE must not hold a stream's ``max_viewers`` until they time out."""
        horizon = time.monotonic() - self.limits.viewer_window_s
        for key in list(self._recent):
            kept = deque((t, v) for t, v in self._recent[key] if t >= horizon and self._exists(v))
            if kept:
                self._recent[key] = kept
            else:
                del self._recent[key]
        if self.limits.applies_to(address) and len(self._recent.get(address, ())) >= self.limits.viewers_per_address:
            self.refused_per_address += 1
            raise TooManyViewers(f"this address opened {self.limits.viewers_per_address} viewers in the last "
                                 f"{self.limits.viewer_window_s:g}s that are still open (limits.viewers_per_address)")

    def _exists(self, viewer_id: str) -> bool:
        return any(b.has_viewer(viewer_id) for b in self.backends)

    async def disconnect(self, viewer_id: str) -> None:
        # no router-side map: viewers that end by themselves (timeouts, failures) leave nothing behind here
        for backend in self.backends:
            if backend.has_viewer(viewer_id):
                await backend.disconnect(viewer_id)
                return
        raise web.HTTPNotFound(reason=f"no viewer {viewer_id!r}")

    # -- handlers -------------------------------------------------------------------------------------------
    async def handle_connect(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return json_error(400, "expected a JSON body {\"offer\": sdp, \"stream_id\"?: id}")
        except RecursionError:
            return json_error(400, "the JSON body is nested too deeply")
        if not isinstance(body, dict):
            return json_error(400, "expected a JSON object {\"offer\": sdp, \"stream_id\"?: id}")
        stream_id = body.get("stream_id")
        if stream_id is not None and not isinstance(stream_id, str):
            return json_error(400, "stream_id must be a string")
        try:
            stream_id, viewer_id, answer = await self.connect(body.get("offer"), stream_id, request.remote or "?")
        except ViewerRequestError as exc:
            return json_error(exc.status, exc.message)
        return web.json_response({"answer": answer, "type": "answer", "stream_id": stream_id,
                                  "viewer_id": viewer_id, "location": f"/whep/{stream_id}/{viewer_id}"})

    async def handle_whep(self, request: web.Request) -> web.Response:
        stream_id = request.match_info["stream_id"]
        if request.content_type != "application/sdp":
            return json_error(415, "WHEP offers must be sent as Content-Type: application/sdp")
        try:
            stream_id, viewer_id, answer = await self.connect(await request.read(), stream_id, request.remote or "?")
        except ViewerRequestError as exc:
            error = json_error(exc.status, exc.message)
            error.headers.update(CORS)
            return error
        location = f"/whep/{stream_id}/{viewer_id}"
        return web.Response(status=201, text=answer, content_type="application/sdp",
                            headers={"Location": location, "ETag": f'"{viewer_id}"', **CORS})

    async def handle_options(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=CORS)

    async def handle_whep_delete(self, request: web.Request) -> web.Response:
        viewer_id = request.match_info["viewer_id"]
        try:
            await self.disconnect(viewer_id)
        except web.HTTPNotFound:
            return json_error(404, f"no viewer {viewer_id!r}")
        except ViewerRequestError as exc:
            return json_error(exc.status, exc.message)
        return web.Response(status=200, headers=CORS)

    async def handle_stats(self, request: web.Request) -> web.Response:
        merged: dict[str, Any] = {"streams": {}, "viewers": [], "nodes": {}}
        for backend in self.backends:
            stats = await backend.viewer_stats()
            merged["streams"].update(stats.get("streams", {}))
            merged["viewers"].extend(stats.get("viewers", []))
            merged["nodes"][backend.name] = {k: v for k, v in stats.items() if k not in ("streams", "viewers")}
        return web.json_response(merged)

    async def handle_streams(self, request: web.Request) -> web.Response:
        viewers = {s: sum(b.viewers_of(s) for b in self.backends) for s in self.stream_ids()}
        return web.json_response({"streams": self.stream_ids(), "viewers": viewers})

    async def handle_config(self, request: web.Request) -> web.Response:
        config = self.backends[0].page_config() if self.backends else {}
        return web.json_response({**config, "streams": self.stream_ids()})

    async def handle_page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


#: The graph's one router (every webrtc_out node registers with it).
ROUTER: Key[Router] = Key("webrtc.router")


def install_routes(server: GraphServer, hubs: Hubs, *, page: bool) -> Router:
    """The graph's router, registering the routes the first time (one set per graph server)."""
    return hubs.shared(ROUTER, lambda: _routed(server, page=page))


def _routed(server: GraphServer, *, page: bool) -> Router:
    router = Router(server.limits)
    # who may (see flowgraph.server): watching is public and rate-limited; a viewer's session URL (an
    # unguessable id only its viewer and server.token holders see) is the credential to end it; the stats that
    # list every viewer id are control
    server.add_post("/api/stream/connect", router.handle_connect, surface="watch")
    server.add_post("/whep/{stream_id}", router.handle_whep, surface="watch")
    server.add_route("DELETE", "/whep/{stream_id}/{viewer_id}", router.handle_whep_delete, surface="self")
    server.add_route("OPTIONS", "/whep/{stream_id}", router.handle_options, surface="public")
    server.add_route("OPTIONS", "/whep/{stream_id}/{viewer_id}", router.handle_options, surface="public")
    server.add_get("/api/webrtc/stats", router.handle_stats, surface="control")
    server.add_get("/api/webrtc/streams", router.handle_streams, surface="public")
    server.add_get("/api/webrtc/config", router.handle_config, surface="public")
    server.add_static("/webrtc", str(WEB_DIR))
    if page:
        root_free = not server.has_route("GET", "/")
        if root_free:
            server.add_get("/", router.handle_page, surface="public")
        server.add_get("/watch", router.handle_page, surface="public")
        server.link("viewer", "/" if root_free else "/watch")
    return router
