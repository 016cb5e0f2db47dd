"""The RTMP server side: one listening socket per address, one session per publisher connection.

Sessions speak just enough RTMP for OBS and ffmpeg publishers (see ``rtmp_proto``): connect, createStream, publish
with the stream-key check, metadata, and FLV video tags — H.264 (classic and enhanced-RTMP ``avc1``) becomes
packets of the :class:`~.rtmp.RtmpSource` registered for the app/key; anything else is refused with a clear error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from flowgraph.context import Hubs, Key

from .h264 import parse_avcc_config
from .rtmp_proto import (
    ABORT,
    ACK,
    COMMAND_AMF0,
    COMMAND_AMF3,
    DATA_AMF0,
    MAX_MESSAGE_BYTES,
    PRE_PUBLISH_BUFFERED_BYTES,
    PRE_PUBLISH_MESSAGE_BYTES,
    SET_CHUNK_SIZE,
    SET_PEER_BANDWIDTH,
    USER_CONTROL,
    VIDEO,
    WINDOW_ACK_SIZE,
    ChunkParser,
    RtmpMessage,
    RtmpProtocolError,
    amf0_decode_all,
    amf0_encode,
    encode_chunks,
    server_handshake,
)

if TYPE_CHECKING:
    from .rtmp import RtmpSource

log = logging.getLogger("flowgraph.media.rtmp")

#: A multi-stream ingest's answer to ``publish`` on its app: ``await admit(session, key)`` returns the source the
#: publisher feeds, or raises :class:`~.admission.Refused`.
Admit = Callable[["RtmpSession", str], Awaitable["RtmpSource"]]

OUT_CHUNK_SIZE = 4096
#: From TCP accept to an accepted ``publish``, in all (not per read): a peer cannot trickle bytes to stay.
PRE_PUBLISH_S = 10.0
#: A publisher that does not take what we send (acks, status) for this long is gone.
DRAIN_TIMEOUT_S = 10.0
WINDOW = 2_500_000
TIME_BASE = Fraction(1, 1000)
FLV_CODECS = {2: "Sorenson H.263", 3: "screen video", 4: "VP6", 5: "VP6 alpha", 6: "screen video 2", 7: "H.264",
              12: "HEVC (non-standard)"}


#: The graph's RTMP servers by listen address (nodes on one port share one server).
RTMP_SERVERS: Key[dict[tuple[str, int], RtmpServer]] = Key("media.rtmp_servers")


class RtmpServer:
    """One listening socket serving every :class:`RtmpSource` registered on its address."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sources: dict[tuple[str, str], RtmpSource] = {}
        #: app → the multi-stream ingest admitting any authorised key on it.
        self.admitters: dict[str, Admit] = {}
        self.rejected = 0
        self._server: asyncio.Server | None = None
        self._sessions: set[RtmpSession] = set()
        self._users = 0

    @classmethod
    async def acquire(cls, hubs: Hubs, host: str, port: int) -> RtmpServer:
        servers = hubs.shared(RTMP_SERVERS, dict)
        server = servers.get((host, port))
        if server is None:
            server = servers[(host, port)] = cls(host, port)
            try:
                await server.start()
            except OSError:
                del servers[(host, port)]
                raise
        server._users += 1
        return server

    @classmethod
    async def release(cls, hubs: Hubs, server: RtmpServer) -> None:
        server._users -= 1
        if server._users <= 0:
            hubs.shared(RTMP_SERVERS, dict).pop((server.host, server.port), None)
            await server.close()

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        except OSError as exc:
            raise OSError(exc.errno, f"RTMP server cannot listen on {self.host}:{self.port}: {exc.strerror}") from exc
        sockets: Any = self._server.sockets or []
        if sockets and self.port == 0:
            self.port = sockets[0].getsockname()[1]
        log.info("RTMP server listening on %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for session in list(self._sessions):
                session.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def register(self, source: RtmpSource) -> None:
        key = (source.app, source.key)
        if key in self.sources and self.sources[key] is not source:
            raise ValueError(f"two ingest nodes claim rtmp app/key {source.app}/*** on port {self.port}")
        self.sources[key] = source

    def register_app(self, app: str, admit: Admit) -> None:
        """Every key on ``app`` not claimed by a single-stream ingest goes to ``admit``."""
        if app in self.admitters:
            raise ValueError(f"two multi-stream ingest nodes claim rtmp app {app!r} on port {self.port}")
        self.admitters[app] = admit

    def unregister_app(self, app: str) -> None:
        self.admitters.pop(app, None)

    def unregister(self, source: RtmpSource) -> None:
        if self.sources.get((source.app, source.key)) is source:
            del self.sources[(source.app, source.key)]

    def reject(self, peer: str, app: str, why: str) -> None:
        self.rejected += 1
        for source in self.sources.values():
            if source.app == app or len(self.sources) == 1:
                source.counters.rejected += 1
        log.warning("RTMP publisher %s rejected: %s", peer, why)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = RtmpSession(self, reader, writer)
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)


class RtmpSession:
    """One publisher connection: handshake, connect/createStream/publish, then media until it leaves."""

    def __init__(self, server: RtmpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader, self.writer = reader, writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.parser = ChunkParser(PRE_PUBLISH_MESSAGE_BYTES, PRE_PUBLISH_BUFFERED_BYTES)
        self.app = ""
        self.source: RtmpSource | None = None
        self.length_size = 4
        self.peer_window = 0
        self._acked = 0
        self._closed = False
        self.encoder_name: str | None = None
        self.accepted = time.monotonic()
        self.first_packet_ms: float | None = None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.writer.close()

    def _quick_ack(self) -> None:
        """Acknowledge at once instead of Linux's delayed ACK. Publishers (FFmpeg without tcp_nodelay, librtmp)
        send each command as a small segment behind Nagle's algorithm, so every delayed ACK stalls the connect →
        createStream → publish sequence by ≈ 40 ms. The flag does not stick: it is set again after each read."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None and hasattr(socket, "TCP_QUICKACK"):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    async def run(self) -> None:
        deadline = self.accepted + PRE_PUBLISH_S
        try:
            self._quick_ack()
            await asyncio.wait_for(server_handshake(self.reader, self.writer), PRE_PUBLISH_S)
            while not self._closed:
                if self.source is not None:
                    timeout = self.source.idle_timeout_s
                else:  # not yet publishing: the whole connect → publish exchange has one deadline
                    timeout = deadline - time.monotonic()
                    if timeout <= 0:
                        raise _PrePublishTimeout
                self._quick_ack()
                try:
                    data = await asyncio.wait_for(self.reader.read(65536), timeout)
                except TimeoutError:
                    if self.source is None:
                        raise _PrePublishTimeout from None
                    raise
                if not data:
                    break
                for message in self.parser.feed(data):
                    pending = self._handle(message)
                    if pending is not None:  # a publish that waits on admission (key list, HTTP callback)
                        await pending
                if self.source is not None:  # the key is right: frames may come now
                    self.parser.max_message_bytes = MAX_MESSAGE_BYTES
                    self.parser.max_buffered_bytes = 4 * MAX_MESSAGE_BYTES
                self._maybe_ack()
                await asyncio.wait_for(self.writer.drain(), DRAIN_TIMEOUT_S)
        except _PrePublishTimeout:
            self.server.reject(self.peer, self.app, f"no publish within {PRE_PUBLISH_S:g}s of connecting")
        except TimeoutError:
            log.warning("RTMP publisher %s: no data, closing", self.peer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except RtmpProtocolError as exc:
            log.warning("RTMP publisher %s: protocol error: %s", self.peer, str(exc)[:200])
        except Exception as exc:  # a peer's bytes must never take the server down or flood the log
            log.error("RTMP publisher %s: dropped after %s: %s", self.peer, type(exc).__name__, str(exc)[:200])
            log.debug("RTMP publisher %s: traceback", self.peer, exc_info=exc)
        finally:
            if self.source is not None:
                log.info("stream %s: publisher %s left", self.source.stream_id, self.peer)
                self.source.detach(self)
            self.close()

    # -- sending ----------------------------------------------------------------------------------------------
    def _send(self, csid: int, type_id: int, payload: bytes, stream_id: int = 0) -> None:
        if not self._closed:
            self.writer.write(encode_chunks(csid, type_id, stream_id, payload, OUT_CHUNK_SIZE))

    def _command(self, *values: Any, stream_id: int = 0) -> None:
        self._send(3 if stream_id == 0 else 5, COMMAND_AMF0, amf0_encode(*values), stream_id)

    def _maybe_ack(self) -> None:
        if self.peer_window and self.parser.bytes_read - self._acked >= self.peer_window:
            self._acked = self.parser.bytes_read
            self._send(2, ACK, (self._acked & 0xFFFFFFFF).to_bytes(4, "big"))

    # -- receiving --------------------------------------------------------------------------------------------
    def _handle(self, msg: RtmpMessage) -> Awaitable[None] | None:
        kind = msg.type_id
        if kind == VIDEO:
            self._video(msg)
        elif kind in (COMMAND_AMF0, COMMAND_AMF3):
            payload = msg.payload[1:] if kind == COMMAND_AMF3 else msg.payload  # AMF3 commands start with 0x00
            return self._command_in(amf0_decode_all(payload), msg.stream_id)
        elif kind == DATA_AMF0:
            self._metadata(amf0_decode_all(msg.payload))
        elif kind == WINDOW_ACK_SIZE and len(msg.payload) >= 4:
            self.peer_window = int.from_bytes(msg.payload[:4], "big")
        elif kind == ABORT and len(msg.payload) >= 4:
            self.parser.abort(int.from_bytes(msg.payload[:4], "big"))
        elif kind == USER_CONTROL and msg.payload[:2] == b"\x00\x06":  # ping request → ping response
            self._send(2, USER_CONTROL, b"\x00\x07" + msg.payload[2:6])
        # SET_CHUNK_SIZE is applied by the parser; ACK, SET_PEER_BANDWIDTH and AUDIO need nothing from us
        return None

    def _command_in(self, values: list[Any], stream_id: int) -> Awaitable[None] | None:
        if len(values) < 2 or not isinstance(values[0], str):
            return None
        name, txn = values[0], values[1]
        args = values[3:]
        if name == "connect":
            info = values[2] if len(values) > 2 and isinstance(values[2], dict) else {}
            self.app = str(info.get("app", "")).strip("/")
            if "?" in self.app:
                self.app = self.app.split("?", 1)[0]
            self._send(2, WINDOW_ACK_SIZE, WINDOW.to_bytes(4, "big"))
            self._send(2, SET_PEER_BANDWIDTH, WINDOW.to_bytes(4, "big") + b"\x02")
            self._send(2, SET_CHUNK_SIZE, OUT_CHUNK_SIZE.to_bytes(4, "big"))
            self._command("_result", txn, {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
                          {"level": "status", "code": "NetConnection.Connect.Success",
                           "description": "Connection succeeded.", "objectEncoding": 0.0})
        elif name == "createStream":
            self._command("_result", txn, None, 1.0)
        elif name == "publish":
            key = str(args[0]).split("?", 1)[0] if args else ""
            if not key and "/" in self.app:  # the whole URL typed as the server, stream key left empty
                self.app, key = self.app.rsplit("/", 1)
            return self._publish(key, stream_id or 1)
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            if self.source is not None:
                self.source.detach(self)
                self.source = None
        elif name == "play":
            self._status(stream_id or 1, "error", "NetStream.Play.Failed", "this server only accepts publishers")
            self.close()
        # releaseStream, FCPublish, getStreamLength ... need no answer for OBS or ffmpeg
        return None

    def _status(self, stream_id: int, level: str, code: str, description: str) -> None:
        self._command("onStatus", 0.0, None, {"level": level, "code": code, "description": description},
                      stream_id=stream_id)

    def _publish(self, key: str, stream_id: int) -> Awaitable[None] | None:
        source = self.server.sources.get((self.app, key))
        admit = self.server.admitters.get(self.app)
        if source is None and admit is not None:
            return self._admit(admit, key, stream_id)
        if source is None:
            known_app = any(app == self.app for app, _ in self.server.sources)
            why = "wrong stream key" if known_app else f"unknown app {self.app!r}"
            self.server.reject(self.peer, self.app, why)
            self._status(stream_id, "error", "NetStream.Publish.BadName", "invalid stream key")
            self.close()
            return None
        busy = source.refusal(source.takeover, self)
        if busy is not None:
            source.counters.refused_busy += 1
            log.warning("RTMP publisher %s refused: %s", self.peer, busy)
            self._status(stream_id, "error", "NetStream.Publish.Rejected", busy)
            self.close()
            return None
        self._start(source, stream_id)
        return None

    async def _admit(self, admit: Admit, key: str, stream_id: int) -> None:
        from .admission import Refused

        try:
            source = await admit(self, key)
        except Refused as exc:
            self.server.rejected += 1
            log.warning("RTMP publisher %s refused: %s", self.peer, exc.reason)
            code = "NetStream.Publish.BadName" if exc.status in (401, 403) else "NetStream.Publish.Rejected"
            self._status(stream_id, "error", code, exc.reason)
            self.close()
            return
        if self._closed:  # the publisher left while it waited: the source learns it had (and lost) a publisher
            source.attach(self)
            source.detach(self)
            return
        self._start(source, stream_id)

    def _start(self, source: RtmpSource, stream_id: int) -> None:
        self.source = source
        source.connect_to_publish_ms = round((time.monotonic() - self.accepted) * 1000, 2)
        source.attach(self)
        self._status(stream_id, "status", "NetStream.Publish.Start", "publishing")
        log.info("stream %s: publisher %s started", source.stream_id, self.peer)

    def _metadata(self, values: list[Any]) -> None:
        for value in values:
            if isinstance(value, dict):
                if self.source is not None and isinstance(value.get("framerate"), int | float):
                    self.source.fps = float(value["framerate"])
                encoder = value.get("encoder")
                if isinstance(encoder, str):
                    self.encoder_name = encoder
                    if self.source is not None:
                        self.source.publisher = f"{self.peer} ({encoder})"

    def _video(self, msg: RtmpMessage) -> None:
        source = self.source
        data = msg.payload
        if source is None or len(data) < 2:
            return
        head = data[0]
        if head & 0x80:  # enhanced RTMP: frame type, packet type, FourCC
            fourcc = data[1:5].decode("latin-1", "replace")
            packet_type = head & 0x0F
            if fourcc != "avc1":
                self._unsupported(f"FourCC {fourcc!r}")
                return
            frame_type = (head >> 4) & 0x07
            if packet_type == 0:
                self._sequence_header(data[5:])
            elif packet_type in (1, 3):
                cts = _si24(data[5:8]) if packet_type == 1 else 0
                body = data[8:] if packet_type == 1 else data[5:]
                self._frame(msg, body, cts, frame_type == 1)
            return
        codec = head & 0x0F
        if codec != 7:
            self._unsupported(FLV_CODECS.get(codec, f"FLV codec id {codec}"))
            return
        frame_type = head >> 4
        if frame_type == 5:  # video info/command frame
            return
        packet_type = data[1]
        if packet_type == 0:
            self._sequence_header(data[5:])
        elif packet_type == 1:
            self._frame(msg, data[5:], _si24(data[2:5]), frame_type == 1)

    def _unsupported(self, what: str) -> None:
        source = self.source
        if source is None:
            return
        log.error("stream %s: publisher %s sends %s video; only H.264 is accepted over RTMP (set the encoder to "
                  "x264/H.264)", source.stream_id, self.peer, what)
        source.codec_in = what
        source.counters.rejected += 1
        source.detach(self)
        self.source = None
        self.close()

    def _sequence_header(self, record: bytes) -> None:
        assert self.source is not None
        try:
            config = parse_avcc_config(record)
        except ValueError as exc:
            log.warning("stream %s: bad AVC sequence header from %s: %s", self.source.stream_id, self.peer, exc)
            self.source.counters.corrupt += 1
            return
        self.length_size = config.length_size
        self.source.maker.learn_config(config.sps + config.pps)

    def _frame(self, msg: RtmpMessage, body: bytes, cts: int, keyframe: bool) -> None:
        """One access unit. ``keyframe`` (the FLV flag) is informational: IDR slices decide, since a flagged
        open-GOP I-frame is no place for a decoder to start."""
        source = self.source
        assert source is not None
        pts, dts = source.timeline(msg.timestamp, cts)
        try:
            packet = source.maker.from_avcc(body, self.length_size, pts=pts, dts=dts, time_base=TIME_BASE,
                                            t_capture=msg.t_received)
        except ValueError as exc:
            source.counters.corrupt += 1
            log.debug("stream %s: malformed video message: %s", source.stream_id, exc)
            return
        if packet is not None:
            if self.first_packet_ms is None:
                self.first_packet_ms = (time.monotonic() - self.accepted) * 1000
                source.connect_to_first_packet_ms = round(self.first_packet_ms, 2)
            source.push(self, packet)


class _PrePublishTimeout(Exception):
    """The peer did not get to an accepted ``publish`` within PRE_PUBLISH_S of connecting."""


def _si24(b: bytes) -> int:
    value = int.from_bytes(b[:3], "big")
    return value - (1 << 24) if value & 0x800000 else value

