"""WHIP ingest (WebRTC-HTTP Ingestion Protocol, RFC 9725): OBS 30+ and browsers publish over WebRTC.

``POST <path>`` with ``Content-Type: application/sdp`` (and ``Authorization: Bearer <token>`` when the node has a
token) answers ``201 Created`` with the SDP answer and a ``Location`` for the session; ``DELETE <location>`` ends it.
``<path>`` is ``/whip/<stream_id>`` for ``whip://``, or the path of ``whip:///some/path``. No trickle ICE: the
answer carries every candidate (aiortc gathers before answering).

Passthrough, not transcoding: aiortc decodes received video by default. Its ``RTCRtpReceiver`` hands each
reassembled frame to a decoder thread through a queue; this module swaps that queue (per receiver, before the
receiver starts, through :func:`flowgraph.nodes.webrtc.aiortc_adapter.tap_receiver`) for one that delivers the
*encoded* H.264 frames — already Annex-B from aiortc's depayloader — to
the ingest source on the event loop, and only passes the end-of-stream marker to the idle decoder thread. Nothing is
decoded. A publisher that negotiates VP8 (no H.264 in its offer) falls back to decode + libx264 re-encode in the
node's worker thread. Keyframe requests become RTCP PLI to the publisher.

Known cost: aiortc's jitter buffer releases a frame when the first packet of the next one arrives (one frame
interval, ≈ 33 ms at 30 fps).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from typing import Any
from urllib.parse import parse_qsl, urlparse

from aiohttp import web

from flowgraph.messages import Packet
from flowgraph.server import json_error

from .source import Source

log = logging.getLogger("flowgraph.media.whip")

TIME_BASE = Fraction(1, 90_000)
QUEUE_FRAMES = 240


class WhipSource(Source):
    """Packets of whichever WHIP session currently publishes this stream."""

    is_async = True

    def __init__(self, stream_id: str, offload: Callable[..., Any]) -> None:
        super().__init__(stream_id)
        self.state = "waiting"
        self.offload = offload
        self._queue: asyncio.Queue[tuple[Any, Any, float] | None] = asyncio.Queue()
        self._session: WhipSession | None = None
        self._offset = 0
        self._session_origin: int | None = None
        self._last_pts: int | None = None
        self._transcoder: Any = None
        self._skip_to_key = False
        self._tasks: set[asyncio.Future[None]] = set()

    # -- sessions (event loop) --------------------------------------------------------------------------------
    def attach(self, session: WhipSession) -> None:
        """``session`` publishes this stream now (see :meth:`refusal`); the caller closes one it replaced."""
        self._take_publisher(session, session.peer)
        self.state = "connecting"
        self.on_change()
        self._session_origin = None

    def detach(self, session: WhipSession) -> None:
        self._drop_publisher(session)

    def deliver(self, session: WhipSession, codec: Any, frame: Any) -> None:
        if session is not self._session:
            return
        self.state = "live"
        self.last_media = time.monotonic()
        if self._queue.qsize() >= QUEUE_FRAMES:
            while not self._queue.empty():
                self._queue.get_nowait()
                self.counters.dropped += 1
            self._skip_to_key = True
        self._queue.put_nowait((codec, frame, time.time()))

    def request_keyframe(self) -> bool:
        session = self._session
        if session is None:
            return False
        task = asyncio.ensure_future(session.send_pli())
        self._tasks.add(task)  # owned until done (a PLI is one RTCP packet)
        task.add_done_callback(self._tasks.discard)
        return True

    def finish(self) -> None:
        """End after what is queued (a multi-stream ingest's publisher left)."""
        self._queue.put_nowait(None)

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(RuntimeError):
            self._queue.put_nowait(None)

    # -- graph side -------------------------------------------------------------------------------------------
    def _timeline(self, timestamp: int) -> int:
        if self._session_origin is None:  # a new publisher's clock: continue where the last one stopped
            self._session_origin = timestamp
            self._offset = 0 if self._last_pts is None else self._last_pts + 3000 - timestamp
        pts = timestamp + self._offset
        self._last_pts = pts if self._last_pts is None else max(self._last_pts, pts)
        return pts

    async def packets(self) -> AsyncIterator[Packet]:
        while not self.stopping:
            item = await self._queue.get()
            if item is None:
                break
            codec, frame, t_capture = item
            pts = self._timeline(int(frame.timestamp))
            self.codec_in = codec.name.lower()
            if codec.name == "H264":
                packet = self.maker.from_annexb(bytes(frame.data), pts=pts, time_base=TIME_BASE,
                                                t_capture=t_capture)
                packets = [packet] if packet is not None else []
            else:
                packets = await self.offload(self._transcode, codec.name, frame, pts, t_capture)
            for packet in packets:
                if self._skip_to_key:
                    if not packet.keyframe:
                        self.counters.dropped += 1
                        continue
                    self._skip_to_key = False
                yield packet
        self.state = "ended"

    def _transcode(self, codec_name: str, frame: Any, pts: int, t_capture: float) -> list[Packet]:
        """Fallback for non-H.264 publishers (VP8): decode and re-encode with libx264 (worker thread)."""
        import av

        from .encoder import EncoderConfig, H264Encoder

        if self._transcoder is None or self._transcoder[0] != codec_name:
            self._transcoder = (codec_name, av.CodecContext.create(codec_name.lower(), "r"), None)
            log.info("stream %s: WHIP publisher sends %s: transcoding to H.264", self.stream_id, codec_name)
        name, decoder, encoder = self._transcoder
        try:
            pictures = decoder.decode(av.Packet(bytes(frame.data)))
        except av.FFmpegError:
            self.counters.corrupt += 1
            return []
        out = []
        for picture in pictures:
            width, height = picture.width - picture.width % 2, picture.height - picture.height % 2
            if encoder is None or (encoder.config.width, encoder.config.height) != (width, height):
                encoder = H264Encoder(EncoderConfig(width=width, height=height, fps=30.0))
                self._transcoder = (name, decoder, encoder)
            if (picture.width, picture.height) != (width, height):
                picture = picture.reformat(width=width, height=height)
            for data, _pts, key in encoder.encode(picture, pts):
                packet = self.maker.from_annexb(data, pts=pts, time_base=TIME_BASE, t_capture=t_capture, keyframe=key)
                if packet is not None:
                    out.append(packet)
        return out


class WhipSession:
    """One publisher's peer connection."""

    def __init__(self, source: WhipSource, peer: str) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        from flowgraph.nodes.webrtc.aiortc_adapter import contain_connect_failures

        contain_connect_failures()  # an offer that cannot connect closes this session, never leaks a task error
        self.id = secrets.token_urlsafe(12)
        self.source = source
        self.peer = peer
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.receivers: list[Any] = []
        self._closed = False

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            state = self.pc.connectionState
            if state in ("failed", "closed"):
                log.info("stream %s: WHIP session %s %s", source.stream_id, self.id, state)
                await self.close()

    async def answer(self, offer_sdp: str) -> str:
        from aiortc import RTCRtpReceiver, RTCSessionDescription

        from flowgraph.nodes.webrtc.aiortc_adapter import tap_receiver

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        videos = [t for t in self.pc.getTransceivers() if t.kind == "video"]
        if not videos:
            raise ValueError("the offer has no video")
        capabilities = RTCRtpReceiver.getCapabilities("video")
        h264 = [c for c in (capabilities.codecs if capabilities else [])
                if c.mimeType.lower() in ("video/h264", "video/rtx")]
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "video":
                transceiver.direction = "recvonly"
                if _offers_h264(offer_sdp):  # prefer passthrough H.264 over VP8 when the publisher offers both
                    transceiver.setCodecPreferences(h264)
                tap_receiver(transceiver.receiver, lambda codec, frame: self.source.deliver(self, codec, frame))
                self.receivers.append(transceiver.receiver)
            else:
                transceiver.direction = "inactive"  # audio is not ingested
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        return str(self.pc.localDescription.sdp)

    async def send_pli(self) -> None:
        from flowgraph.nodes.webrtc.aiortc_adapter import send_pli

        for receiver in self.receivers:
            for source in receiver.getSynchronizationSources():
                with contextlib.suppress(Exception):
                    await send_pli(receiver, source.source)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.source.detach(self)
        with contextlib.suppress(Exception):
            await self.pc.close()


def _offers_h264(sdp: str) -> bool:
    return "h264/90000" in sdp.lower()


class WhipEndpoint:
    """The HTTP side of one WHIP ingest node: routes on the graph server, sessions, bearer token."""

    def __init__(self, node: Any) -> None:
        self.node = node
        url = urlparse(node.params.url)
        path = url.path if url.path not in ("", "/") else f"/whip/{node.params.stream_id}"
        self.path = "/" + path.strip("/")
        self.token = node.params.token or dict(parse_qsl(url.query)).get("token", "")
        self.source: WhipSource | None = None
        self.sessions: dict[str, WhipSession] = {}

    def install(self, server: Any) -> None:
        server.add_post(self.path, self._post, surface="publish")
        server.add_route("DELETE", self.path + "/{session}", self._delete, surface="publish")
        server.add_route("PATCH", self.path + "/{session}", self._patch, surface="publish")
        server.link(f"WHIP ingest ({self.node.params.stream_id})", self.path)

    def new_source(self) -> WhipSource:
        self.source = WhipSource(self.node.params.stream_id, self.node.offload)
        return self.source

    def _authorized(self, request: web.Request) -> bool:
        if not self.token:
            return True
        header = request.headers.get("Authorization", "")
        return secrets.compare_digest(header.encode(), f"Bearer {self.token}".encode())

    async def _post(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            if self.source is not None:
                self.source.counters.rejected += 1
            log.warning("WHIP %s: publisher %s rejected: bad or missing bearer token", self.path, request.remote)
            return web.json_response({"error": "bad or missing bearer token"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        if request.content_type != "application/sdp":
            return json_error(415, f"expected Content-Type application/sdp, got {request.content_type!r}")
        source = self.source
        if source is None or source.stopping:
            return json_error(503, f"stream {self.node.params.stream_id!r} is not accepting publishers now")
        try:
            offer = (await request.read()).decode("utf-8")
        except UnicodeDecodeError:
            return json_error(400, "the SDP offer is not UTF-8 text")
        if "m=video" not in offer:
            return json_error(400, "the SDP offer has no video section")
        busy = source.refusal(self.node.params.takeover)
        if busy is not None:
            source.counters.refused_busy += 1
            log.warning("WHIP %s: publisher %s refused: %s", self.path, request.remote, busy)
            return json_error(409, busy)
        session = WhipSession(source, str(request.remote))
        try:
            answer = await session.answer(offer)
        except Exception as exc:  # a peer's bad SDP must not take anything down
            await session.close()
            log.warning("WHIP %s: bad offer from %s: %s", self.path, request.remote, exc)
            return json_error(400, f"cannot answer this offer: {exc}")
        source.attach(session)  # before closing the session it replaces, whose leaving would detach the stream
        for old in list(self.sessions.values()):
            await old.close()
        self.sessions = {session.id: session}
        location = f"{self.path}/{session.id}"
        log.info("stream %s: WHIP publisher %s connected (session %s)", source.stream_id, request.remote,
                 session.id)
        return web.Response(status=201, text=answer, content_type="application/sdp",
                            headers={"Location": location, "ETag": f'"{session.id}"'})

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.json_response({"error": "bad or missing bearer token"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        session = self.sessions.pop(request.match_info["session"], None)
        if session is None:
            return json_error(404, "no such WHIP session")
        await session.close()
        return web.Response(status=200)

    async def _patch(self, request: web.Request) -> web.StreamResponse:
        # trickle ICE / ICE restart are optional in WHIP; candidates are all in the offer/answer here
        return web.Response(status=405, headers={"Allow": "POST, DELETE"})

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            await session.close()
        self.sessions = {}

