"""Multi-stream ingest: one ``ingest`` node serves every authorised RTMP and WHIP publisher as its own stream.

Each admitted publisher (see :mod:`.admission`) gets a source of its own — the same :class:`~.rtmp.RtmpSource` /
:class:`~.whip.WhipSource` a single-stream ingest uses — and a pump task that sends its packets on the node's one
``packets`` output, stamped with the stream's id. When the publisher leaves (unpublish, disconnect, idle timeout,
over its bandwidth) the pump sends one :class:`~flowgraph.messages.StreamEnd` for that stream and frees the slot;
every node downstream frees that stream's state on it. The graph keeps running.

A stream that comes back (same key) before its previous run has ended waits for that end marker to go out first, so
downstream never sees the new run's packets before the old run's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from flowgraph.context import Key
from flowgraph.messages import StreamEnd
from flowgraph.server import json_error

from .admission import Admission, AdmissionConfig, BandwidthGuard, Publisher, Refused

if TYPE_CHECKING:
    from .ingest import Ingest
    from .rtmp_server import RtmpServer, RtmpSession
    from .whip import WhipSession

log = logging.getLogger("flowgraph.media.ingest")

#: Graph-wide: stream id → the multi-stream ingest that serves it (a key admitted by two nodes is one stream).
CLAIMS: Key[dict[str, MultiIngest]] = Key("media.stream_claims")


@dataclass
class LiveStream:
    """One admitted stream: its source, who publishes it, its pump, its figures."""

    stream_id: str
    source: Any
    publisher: Publisher
    guard: BandwidthGuard | None
    started: float = field(default_factory=time.time)
    pump: asyncio.Task[None] | None = None
    end_reason: str = "unpublished"
    #: The publisher left: the stream ends once its queued packets are out (no takeover any more).
    finishing: bool = False
    whip_sessions: dict[str, WhipSession] = field(default_factory=dict)
    # rates for /api/streams
    bytes: int = 0
    packets: int = 0
    _rate_at: float = field(default_factory=time.monotonic)
    _rate_bytes: int = 0
    _rate_packets: int = 0
    bitrate_kbps: float = 0.0
    fps_measured: float = 0.0

    def rates(self, now: float) -> None:
        dt = now - self._rate_at
        if dt >= 0.5:
            self.bitrate_kbps = round((self.bytes - self._rate_bytes) * 8 / dt / 1000, 1)
            self.fps_measured = round((self.packets - self._rate_packets) / dt, 2)
            self._rate_at, self._rate_bytes, self._rate_packets = now, self.bytes, self.packets


class MultiIngest:
    """The publishers of one multi-stream ingest node, over RTMP (``rtmp://host:port/app``) or WHIP."""

    def __init__(self, node: Ingest, config: AdmissionConfig) -> None:
        self.node = node
        self.admission = Admission(config)
        self.protocol = "whip" if node._scheme() == "whip" else "rtmp"
        self.streams: dict[str, LiveStream] = {}
        #: The latest pump of each stream id (a returning stream waits for the previous run's end marker).
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self.ended = 0
        self.over_bandwidth = 0
        self.server: RtmpServer | None = None
        if self.protocol == "rtmp":
            self.host, self.port, self.app = parse_rtmp_app(node.params.url)
        self.whip_path = whip_base_path(node.params.url) if self.protocol == "whip" else ""
        self._accepting = False

    # -- lifecycle (the node's start, run and stop) -------------------------------------------------------------
    async def start(self) -> None:
        """Listen before the graph reports ready, so a publisher may connect at once."""
        from .rtmp_server import RtmpServer

        if self.protocol == "rtmp" and self.server is None:
            self.server = await RtmpServer.acquire(self.node.ctx, self.host, self.port)
            self.server.register_app(self.app, self._admit_rtmp)
        self._accepting = True

    async def run(self) -> None:
        try:
            while not await self.node.wait_stopping(1.0):
                self.report()
        finally:
            await self._end_all()

    async def _end_all(self) -> None:
        self._accepting = False
        for live in list(self.streams.values()):
            live.end_reason = "graph stopping"
            await self._close_publisher(live)
            live.source.stop()
        pumps = [task for task in self._pumps.values() if not task.done()]
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)

    async def stop(self) -> None:
        from .rtmp_server import RtmpServer

        await self._end_all()
        if self.server is not None:
            self.server.unregister_app(self.app)
            await RtmpServer.release(self.node.ctx, self.server)
            self.server = None
        await self.admission.close()

    def report(self) -> None:
        now = time.monotonic()
        registry = self.node.ctx.streams
        for live in self.streams.values():
            live.rates(now)
            registry.update(live.stream_id, "ingest", node=self.node.name, protocol=live.publisher.protocol,
                            publisher=live.publisher.client, since=live.started, bitrate_kbps=live.bitrate_kbps,
                            fps_measured=live.fps_measured, **{k: v for k, v in live.source.describe().items()
                                                             if k != "publisher"})

    # -- admission --------------------------------------------------------------------------------------------
    async def _admit(self, who: Publisher, make: Any) -> LiveStream:
        if not self._accepting:
            raise Refused("ingest is not accepting publishers now", 503, "stopping")
        stream_id = await self.admission.admit(who, busy=self._busy)
        claims = self.node.ctx.shared(CLAIMS, dict)
        owner = claims.get(stream_id)
        if owner is not None and owner is not self:  # the same key live over RTMP and WHIP: one stream, one source
            self.admission.release(stream_id)
            raise Refused(f"stream {stream_id!r} is live on ingest {owner.node.name!r}", 409, "stream_busy")
        claims[stream_id] = self
        live = self.streams.get(stream_id)
        if live is not None and not live.finishing:  # takeover: the stream goes on with its new publisher
            log.warning("stream %s: publisher %s takes over from %s", stream_id, who.client, live.publisher.client)
            live.publisher = who
            return live
        kbps = int(self.node.params.max_kbps)
        live = LiveStream(stream_id, make(stream_id), who, BandwidthGuard(kbps) if kbps else None)
        live.source.on_change = lambda: self._changed(live)
        self.streams[stream_id] = live
        previous = self._pumps.get(stream_id)
        live.pump = self._pumps[stream_id] = asyncio.create_task(self._pump(live, previous),
                                                                 name=f"ingest:{self.node.name}:{stream_id}")
        log.info("stream %s: %s publisher %s admitted (%d live)", stream_id, who.protocol, who.client,
                 len(self.streams))
        return live

    def _busy(self, stream_id: str) -> str | None:
        """Why a newcomer may not take ``stream_id`` over now (None: it may), from the live source."""
        live = self.streams.get(stream_id)
        if live is None or live.finishing:
            return None
        reason: str | None = live.source.refusal(self.admission.config.takeover)
        return reason

    async def _admit_rtmp(self, session: RtmpSession, key: str) -> Any:
        from .rtmp import RtmpSource

        def make(stream_id: str) -> RtmpSource:
            url = f"rtmp://{self.host}:{self.port}/{self.app}/{stream_id}"
            return RtmpSource(stream_id, url, self.node.ctx, idle_timeout_s=float(self.node.params.timeout_s),
                              takeover=self.admission.config.takeover)

        live = await self._admit(Publisher(key, session.peer, "rtmp", self.app), make)
        return live.source

    def _changed(self, live: LiveStream) -> None:
        """The source's publisher changed; one that left (and was not taken over) ends the stream."""
        if live.source.state == "waiting" and live.source.publisher is None and not live.finishing:
            live.finishing = True
            live.source.finish()
            self.admission.release(live.stream_id)
        self.node._publish_info(force=True)

    async def _pump(self, live: LiveStream, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(previous)
        source, guard, send = live.source, live.guard, self.node.packets.send
        iterator = source.queued() if hasattr(source, "queued") else source.packets()
        cancelled = False
        try:
            async with contextlib.aclosing(iterator) as packets:
                async for packet in packets:
                    size = len(packet.data)
                    if guard is not None and not guard.spend(size, time.monotonic()):
                        self.over_bandwidth += 1
                        live.end_reason = f"over bandwidth ({self.node.params.max_kbps} kbit/s)"
                        log.warning("stream %s: publisher %s exceeds %d kbit/s: disconnected", live.stream_id,
                                    live.publisher.client, self.node.params.max_kbps)
                        await self._close_publisher(live)
                        break
                    live.bytes += size
                    live.packets += 1
                    await send(packet)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            source.stop()
            self.admission.release(live.stream_id)
            claims = self.node.ctx.shared(CLAIMS, dict)
            if self.streams.get(live.stream_id) is live:
                del self.streams[live.stream_id]
                if claims.get(live.stream_id) is self:
                    del claims[live.stream_id]
                self.node.ctx.streams.end(live.stream_id)
            if self._pumps.get(live.stream_id) is asyncio.current_task():
                del self._pumps[live.stream_id]
            self.ended += 1
            if not cancelled:
                log.info("stream %s ended: %s", live.stream_id, live.end_reason)
                await send(StreamEnd(stream_id=live.stream_id, reason=live.end_reason, origin=self.node.name))

    async def _close_publisher(self, live: LiveStream) -> None:
        session = getattr(live.source, "_session", None)
        if session is not None:
            result = session.close()
            if asyncio.iscoroutine(result):
                await result

    # -- control from viewers ---------------------------------------------------------------------------------
    def source_of(self, stream_id: str) -> Any:
        live = self.streams.get(stream_id)
        return None if live is None else live.source

    # -- WHIP -------------------------------------------------------------------------------------------------
    def install_whip(self, server: Any) -> None:
        base = self.whip_path
        server.add_post(base, self._whip_post)
        server.add_post(base + "/{name}", self._whip_post)
        server.add_route("DELETE", base + "/{name}/{session}", self._whip_delete)
        server.add_route("PATCH", base + "/{name}/{session}", self._whip_patch)
        server.link("WHIP ingest (any authorised key)", base + "/<key>")

    async def _whip_post(self, request: web.Request) -> web.StreamResponse:
        from .whip import WhipSession, WhipSource

        header = request.headers.get("Authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else request.match_info.get("name", "")
        if request.content_type != "application/sdp":
            return json_error(415, f"expected Content-Type application/sdp, got {request.content_type!r}")
        try:
            live = await self._admit(Publisher(key, str(request.remote), "whip", self.whip_path),
                                     lambda stream_id: WhipSource(stream_id, self.node.offload))
        except Refused as exc:
            log.warning("WHIP publisher %s refused: %s", request.remote, exc.reason)
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return web.json_response({"error": exc.reason}, status=exc.status, headers=headers)
        offer = await request.text()
        session = WhipSession(live.source, str(request.remote))
        try:
            if "m=video" not in offer:
                raise ValueError("the SDP offer has no video section")
            answer = await session.answer(offer)
        except Exception as exc:  # a peer's bad SDP must not take anything down
            await session.close()
            if live.source.publisher is None and not live.finishing:  # never had a publisher: free the slot
                live.finishing = True
                live.source.finish()
                self.admission.release(live.stream_id)
            log.warning("WHIP %s: bad offer from %s: %s", self.whip_path, request.remote, exc)
            return json_error(400, f"cannot answer this offer: {exc}")
        live.source.attach(session)  # before closing a taken-over session, whose leaving would end the stream
        for old in list(live.whip_sessions.values()):
            await old.close()
        live.whip_sessions = {session.id: session}
        location = f"{self.whip_path}/{live.stream_id}/{session.id}"
        return web.Response(status=201, text=answer, content_type="application/sdp",
                            headers={"Location": location, "ETag": f'"{session.id}"'})

    async def _whip_delete(self, request: web.Request) -> web.StreamResponse:
        live = self.streams.get(request.match_info["name"])
        session = None if live is None else live.whip_sessions.pop(request.match_info["session"], None)
        if session is None:
            return json_error(404, "no such WHIP session")
        await session.close()
        return web.Response(status=200)

    async def _whip_patch(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=405, headers={"Allow": "POST, DELETE"})

    def counters(self) -> dict[str, Any]:
        return {"streams_live": len(self.streams), "streams_ended": self.ended,
                "over_bandwidth": self.over_bandwidth, "admission": self.admission.describe()}


def parse_rtmp_app(url: str) -> tuple[str, int, str]:
    """``(host, port, app)`` from ``rtmp://host:port/app`` (a trailing ``/*`` is allowed)."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    parts = [p for p in parsed.path.split("/") if p and p != "*"]
    if not parts:
        raise ValueError(f"multi-stream RTMP url {url!r} needs an app: rtmp://host:port/APP (keys come from "
                         f"keys / keys_file / on_publish, not the url)")
    return parsed.hostname or "0.0.0.0", parsed.port or 1935, "/".join(parts)


def whip_base_path(url: str) -> str:
    from urllib.parse import urlparse

    path = urlparse(url).path.strip("/")
    return "/" + (path or "whip")
