"""RTMP ingest: an asyncio RTMP server that publishers (OBS, ffmpeg) push H.264 to, one stream key per source.

Why not FFmpeg's ``listen=1``: it accepts any stream key (a wrong key is only a log warning), serves a single
publisher per open, probes for seconds unless told not to (and then may lose the first GOP), and blocks a thread.
This server checks the key at ``publish``, takes the parameter sets from the FLV sequence header (no probing:
the first packet follows the publisher's first video message), stamps ``t_capture`` when the message's last byte
is read from the socket, and keeps listening across publishers — downstream nodes never see the stream end.

Several ingest nodes may share one port (``rtmp://0.0.0.0:1935/live/a`` and ``.../live/b``): one server per
address, keyed by ``app/key``. A publisher with an unknown key or app is answered ``NetStream.Publish.BadName``,
disconnected, logged and counted (``rejected``). A second publisher on a live key is refused
(``NetStream.Publish.Rejected``, counted ``refused_busy``) unless the node says ``takeover: replace`` or the first
has sent nothing for :data:`~.source.STALE_PUBLISHER_S` (a dead connection its encoder is reconnecting from):
then the old connection is closed and the stream goes on (counted ``takeovers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

from flowgraph.context import Hubs
from flowgraph.messages import Packet

from .rtmp_server import RtmpServer, RtmpSession
from .source import Source

log = logging.getLogger("flowgraph.media.rtmp")

QUEUE_PACKETS = 240  # ≈ 8 s at 30 fps between the socket and the graph; beyond it, drop until a keyframe


def parse_rtmp_url(url: str) -> tuple[str, int, str, str]:
    """``(host, port, app, key)`` from ``rtmp://host[:port]/app[/...]/key``."""
    parsed = urlparse(url)
    parts = [p for p in parsed.path.split("/") if p]
    if len(parts) < 2:
        raise ValueError(f"RTMP url {url!r} needs an app and a stream key: rtmp://host:port/app/KEY")
    return parsed.hostname or "0.0.0.0", parsed.port or 1935, "/".join(parts[:-1]), parts[-1]


class RtmpSource(Source):
    """The stream published under one ``app/key`` of an :class:`RtmpServer`."""

    is_async = True

    def __init__(self, stream_id: str, url: str, hubs: Hubs, idle_timeout_s: float = 10.0,
                 takeover: str = "refuse") -> None:
        super().__init__(stream_id)
        self.host, self.port, self.app, self.key = parse_rtmp_url(url)
        self.hubs = hubs
        self.idle_timeout_s = idle_timeout_s
        #: ``refuse`` or ``replace``: what a second publisher of this key gets while the first is live.
        self.takeover = takeover
        self.state = "waiting"
        self._queue: asyncio.Queue[Packet | None] = asyncio.Queue()
        self._skip_to_key = False
        self._session: RtmpSession | None = None
        self._last_pts: int | None = None
        self._offset = 0
        self._offset_pending = False
        #: TCP accept → first packet of the latest publisher (handshake, connect, publish, first video tag).
        self.connect_to_first_packet_ms: float | None = None
        #: TCP accept → publish accepted (handshake, connect, createStream, publish round trips).
        self.connect_to_publish_ms: float | None = None
        self.server: RtmpServer | None = None

    # -- server side (event loop) -----------------------------------------------------------------------------
    def attach(self, session: RtmpSession) -> None:
        """A publisher was accepted for this key (see :meth:`refusal`); one it replaces is disconnected."""
        old = self._take_publisher(session, session.peer)
        if isinstance(old, RtmpSession):
            old.close()
        self.state = "live"
        self.on_change()
        # the new publisher's clock restarts; continue our timeline one frame after the last packet
        self._offset_pending = True

    def detach(self, session: RtmpSession) -> None:
        self._drop_publisher(session)

    def push(self, session: RtmpSession, packet: Packet) -> None:
        if session is not self._session:
            return
        self.last_media = time.monotonic()
        if self._skip_to_key:
            if not packet.keyframe:
                self.counters.dropped += 1
                return
            self._skip_to_key = False
        if self._queue.qsize() >= QUEUE_PACKETS:
            # the graph is not keeping up: drop what is queued and resume at the next keyframe
            while not self._queue.empty():
                self._queue.get_nowait()
                self.counters.dropped += 1
            self._skip_to_key = not packet.keyframe
            if not packet.keyframe:
                self.counters.dropped += 1
                return
        self._queue.put_nowait(packet)

    def timeline(self, dts: int, cts: int) -> tuple[int, int]:
        """Map a publisher's millisecond timestamps onto this stream's continuous timeline."""
        if self._offset_pending:
            self._offset_pending = False
            self._offset = 0 if self._last_pts is None else self._last_pts + 33 - dts
        out_dts = dts + self._offset
        if self._last_pts is not None and out_dts < self._last_pts - 10_000:  # publisher clock wrapped or reset
            self._offset = self._last_pts + 33 - dts
            out_dts = dts + self._offset
        self._last_pts = out_dts if self._last_pts is None else max(self._last_pts, out_dts)
        return out_dts + cts, out_dts

    # -- graph side ---------------------------------------------------------------------------------------------
    async def packets(self) -> AsyncIterator[Packet]:
        self.server = await RtmpServer.acquire(self.hubs, self.host, self.port)
        self.server.register(self)
        try:
            async for packet in self.queued():
                yield packet
        finally:
            self.server.unregister(self)
            if self._session is not None:
                self._session.close()
            await RtmpServer.release(self.hubs, self.server)
            self.state = "ended"

    async def queued(self) -> AsyncIterator[Packet]:
        """What publishers pushed, until :meth:`stop` (a multi-stream ingest reads this; the server is its)."""
        while not self.stopping:
            packet = await self._queue.get()
            if packet is None:
                break
            yield packet

    def finish(self) -> None:
        """End after what is queued (a multi-stream ingest's publisher left: its last packets still count)."""
        self._queue.put_nowait(None)

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(RuntimeError):
            self._queue.put_nowait(None)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["listen"] = f"rtmp://{self.host}:{self.port}/{self.app}/***"
        info["connect_to_first_packet_ms"] = self.connect_to_first_packet_ms
        info["connect_to_publish_ms"] = self.connect_to_publish_ms
        return info
