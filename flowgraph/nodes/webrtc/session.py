"""One viewer: its RTCPeerConnection, video feed, ``analytics`` data channel and link figures.

The session answers the viewer's offer with an H.264 send-only video track (RTP payloads from the stream's
fan-out, see :mod:`.feed`) and, when the offer negotiates SCTP, an ordered data channel ``analytics`` opened by
the server. A channel the viewer opens itself named ``analytics`` is fed too; one named ``viewer`` carries the
page's own reports (displayed latency, fps) used by stats and the bitrate controller.

Analytics wait in a bounded per-viewer backlog while the channel's send buffer is above its high-water mark;
the oldest are dropped first and counted, so a slow viewer never holds memory or delays anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .aiortc_adapter import (
    contain_connect_failures,
    offer_direction,
    round_trip_time,
    sender_ssrc,
    set_header_extensions_map,
)
from .errors import BadOffer
from .feed import ViewerFeed
from .hdrext import PlayoutDelayMap
from .stats import RtcpStats

log = logging.getLogger("flowgraph.webrtc.session")

_HIGH_WATER = 256 * 1024


@dataclass
class SessionConfig:
    """Per-viewer settings, from the node's params."""

    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    playout_delay: tuple[int, int] | None = (0, 100)
    analytics_backlog: int = 64
    feed_limit: int = 400


class ViewerSession:
    """A viewer's peer connection and what flows to it. Create with :meth:`open`; :meth:`close` is idempotent."""

    def __init__(self, viewer_id: str, stream_id: str, config: SessionConfig, *,
                 on_keyframe_needed: Callable[[str], None], on_closed: Callable[[ViewerSession], None]) -> None:
        self.viewer_id = viewer_id
        self.stream_id = stream_id
        self.config = config
        self.created = time.monotonic()
        self.created_wall = time.time()
        self.header_map = PlayoutDelayMap(*config.playout_delay) if config.playout_delay else None
        self.feed = ViewerFeed(config.feed_limit, on_keyframe_needed=on_keyframe_needed, header_map=self.header_map)
        self.rendition = "src"
        self.rtcp: RtcpStats | None = None
        self.pc: Any = None
        self.sender: Any = None
        self.channels: list[Any] = []
        self.sync_channel: Any = None
        self.backlog: deque[str] = deque()
        self.analytics_sent = 0
        self.analytics_dropped = 0
        self.client_report: dict[str, Any] = {}
        self.connected_at: float | None = None
        self.closed = False
        self.mdns_candidates = 0
        self.close_reason = ""
        self._on_closed = on_closed
        self._on_keyframe_needed = on_keyframe_needed

    # -- negotiation ----------------------------------------------------------------------------------------
    async def open(self, offer_sdp: str) -> str:
        """Apply the viewer's offer and return the answer SDP (ICE candidates included)."""
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
        from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError

        contain_connect_failures()  # an offer that cannot connect closes this viewer, never leaks a task error
        servers = [RTCIceServer(**server) for server in self.config.ice_servers]
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        pc.on("connectionstatechange", self._on_state)
        pc.on("datachannel", self._on_datachannel)
        transceiver = pc.addTransceiver(_FeedTrack(), direction="sendonly")
        codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs
                  if c.mimeType.lower() in ("video/h264", "video/rtx")]
        # constrained baseline first: every browser decodes it, and higher profiles still play in practice
        codecs.sort(key=lambda c: (c.mimeType.lower() == "video/rtx",
                                   c.parameters.get("profile-level-id") != "42e01f"))
        transceiver.setCodecPreferences(codecs)
        self.sender = transceiver.sender
        if self.header_map is not None:
            set_header_extensions_map(self.sender, self.header_map)
        self.rtcp = RtcpStats(sender_ssrc(self.sender))
        self.feed.attach_sender(self.sender, on_pli=self._on_pli, on_rtcp=self.rtcp.on_packet)
        offer_sdp, self.mdns_candidates = strip_mdns_candidates(offer_sdp)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except (ValueError, OperationError, InvalidAccessError, InvalidStateError) as exc:
            raise BadOffer(_offer_problem(exc)) from exc
        if transceiver.mid is None:
            raise BadOffer("the offer has no video m-line this server can send on")
        if offer_direction(transceiver) not in ("sendonly", "sendrecv"):
            raise BadOffer("the offer's video m-line does not receive video (direction must be recvonly or sendrecv)")
        if "m=application" in offer_sdp:
            self._add_channel(pc.createDataChannel("analytics", ordered=True))
            self.sync_channel = pc.createDataChannel("sync", ordered=False, maxRetransmits=0)
            self.feed.on_sync = self._send_sync
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        sdp: str = pc.localDescription.sdp
        return sdp

    # -- events ---------------------------------------------------------------------------------------------
    async def _on_state(self) -> None:
        state = self.pc.connectionState if self.pc is not None else "closed"
        if state == "connected" and self.connected_at is None:
            self.connected_at = time.monotonic()
            if self.rtcp is not None:
                self.rtcp.last_heard = self.connected_at
        elif state in ("failed", "closed"):
            await self.close(f"connection {state}")

    def _on_datachannel(self, channel: Any) -> None:
        if channel.label == "analytics":
            self._add_channel(channel)
        elif channel.label == "viewer":
            channel.on("message", self._on_report)

    def _on_report(self, message: Any) -> None:
        if not isinstance(message, str) or len(message) > 4096:
            return
        with contextlib.suppress(ValueError):
            report = json.loads(message)
            if isinstance(report, dict) and "ping" in report:
                # clock offset estimate for the page: echo its time with ours
                self._send_on(self.sync_channel, {"pong": report["ping"], "server_time": time.time()})
            elif isinstance(report, dict):
                self.client_report = {k: v for k, v in list(report.items())[:32]
                                      if isinstance(v, int | float | str | bool) or v is None}
                self.client_report["received"] = time.time()

    def _send_sync(self, rtp_ts: int, frame: Any) -> None:
        self._send_on(self.sync_channel, {"rtp": rtp_ts, "pts90": frame.pts90, "frame_id": frame.frame_id,
                                          "t_capture": frame.t_capture})

    def _send_on(self, channel: Any, message: dict[str, Any]) -> None:
        if channel is None or channel.readyState != "open" or channel.bufferedAmount > _HIGH_WATER:
            return
        with contextlib.suppress(Exception):
            channel.send(json.dumps(message, separators=(",", ":")))

    def _on_pli(self) -> None:
        self._on_keyframe_needed("pli")

    def _add_channel(self, channel: Any) -> None:
        channel.bufferedAmountLowThreshold = _HIGH_WATER // 2
        channel.on("open", self._flush)
        channel.on("bufferedamountlow", self._flush)
        self.channels.append(channel)

    # -- analytics ------------------------------------------------------------------------------------------
    def send_analytics(self, text: str) -> None:
        """Queue one analytics message (JSON text); the oldest queued is dropped past the backlog limit."""
        if self.closed:
            return
        if len(self.backlog) >= self.config.analytics_backlog:
            self.backlog.popleft()
            self.analytics_dropped += 1
        self.backlog.append(text)
        self._flush()

    def _flush(self) -> None:
        open_channels = [c for c in self.channels if c.readyState == "open"]
        if not open_channels:
            return
        while self.backlog:
            if any(c.bufferedAmount > _HIGH_WATER for c in open_channels):
                return  # resumes on "bufferedamountlow"
            text = self.backlog.popleft()
            for channel in open_channels:
                try:
                    channel.send(text)
                except Exception as exc:  # a channel closing under us: that viewer only
                    log.debug("viewer %s: data channel send failed: %s", self.viewer_id, exc)
            self.analytics_sent += 1

    # -- lifecycle ------------------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return "closed" if self.closed or self.pc is None else str(self.pc.connectionState)

    def idle_seconds(self) -> float:
        """Seconds since the viewer last sent RTCP (receiver reports arrive about every second)."""
        return 0.0 if self.rtcp is None else time.monotonic() - self.rtcp.last_heard

    async def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.feed.close()
        self.backlog.clear()
        self._on_closed(self)
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pc.close(), 5.0)

    def stats(self) -> dict[str, Any]:
        rtt = round_trip_time(self.sender) if self.sender is not None else None
        connect_ms = None if self.connected_at is None else round((self.connected_at - self.created) * 1000, 1)
        return {
            "viewer_id": self.viewer_id, "stream_id": self.stream_id, "state": self.state,
            "rendition": self.rendition, "age_s": round(time.monotonic() - self.created, 1),
            "connect_ms": connect_ms, "rtt_ms": None if rtt is None else round(rtt * 1000, 2),
            "bitrate_kbps": round(self.feed.meter.bps() / 1000, 1),
            "playout_delay": None if self.header_map is None or self.header_map.playout_id is None
            else list(self.config.playout_delay or ()),
            "analytics": {"sent": self.analytics_sent, "dropped": self.analytics_dropped,
                          "queued": len(self.backlog), "channels": len(self.channels)},
            "video": self.feed.stats(), "link": self.rtcp.summary() if self.rtcp else {},
            "client": self.client_report,
        }


class _FeedTrack:
    """Placeholder track for the sender: frames come from the feed via the sender hook, never from ``recv``."""

    kind = "video"

    def __new__(cls) -> Any:
        from aiortc.mediastreams import MediaStreamTrack

        class FeedTrack(MediaStreamTrack):
            kind = "video"

            async def recv(self) -> Any:
                from aiortc.mediastreams import MediaStreamError

                raise MediaStreamError("frames come from the viewer feed")

        return FeedTrack()


def strip_mdns_candidates(sdp: str) -> tuple[str, int]:
    """Drop ``.local`` (mDNS) host candidates: resolving one stalls aiortc's setRemoteDescription for about a
    second, and the browser's connectivity checks reach us anyway (we learn its address as peer-reflexive)."""
    lines = sdp.splitlines(keepends=True)
    kept = [line for line in lines if not (line.startswith("a=candidate:") and ".local " in line)]
    return "".join(kept), len(lines) - len(kept)


def _offer_problem(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "Failed to set remote video description" in text:
        return "the offer does not accept H.264 video (packetization-mode 1)"
    return f"cannot apply the offer: {text}"
