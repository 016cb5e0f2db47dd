"""The viewers of one process: stream fan-outs, sessions, limits, liveness and bitrate adaptation.

A :class:`ViewerHub` runs inside the graph process (``workers: 0``) or inside each viewer worker process; the
node (or the worker's IPC loop) feeds it packets and analytics and forwards viewers' offers to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from flowgraph.messages import Packet
from flowgraph.nodes.media.h264 import with_facts

from .abr import AbrController, AbrPolicy
from .errors import StreamFull, UnknownStream, UnknownViewer
from .fanout import StreamFanout
from .session import SessionConfig, ViewerSession
from .stats import BitrateMeter

log = logging.getLogger("flowgraph.webrtc.hub")

JoinMode = Literal["gop", "keyframe", "wait"]
#: Called with (stream_id, rendition, why) when a keyframe would help; the hub rate-limits calls.
KeyframeRequest = Callable[[str, str, str], None]


@dataclass
class HubConfig:
    session: SessionConfig = field(default_factory=SessionConfig)
    join: JoinMode = "gop"
    max_viewers: int = 500
    viewer_timeout_s: float = 5.0
    connect_timeout_s: float = 15.0
    keyframe_interval_s: float = 0.5
    gop_frames: int = 300
    abr: AbrPolicy = field(default_factory=AbrPolicy)


class ViewerHub:
    def __init__(self, config: HubConfig, request_keyframe: KeyframeRequest | None = None) -> None:
        self.config = config
        self._request_keyframe = request_keyframe
        self.fanouts: dict[str, dict[str, StreamFanout]] = {}
        self.meters: dict[tuple[str, str], BitrateMeter] = {}
        self.sessions: dict[str, ViewerSession] = {}
        self.abr: dict[str, AbrController] = {}
        self.declared: set[str] = set()
        self._last_keyframe_request: dict[tuple[str, str], float] = {}
        self.keyframe_requests = 0
        self.viewers_total = 0
        self.viewers_closed = 0
        self._monitor: asyncio.Task[None] | None = None
        #: Called with the viewer id when a viewer's session ends (workers tell the graph process).
        self.on_closed: Callable[[str], None] | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._monitor is None:
            self._monitor = asyncio.create_task(self._watch(), name="webrtc-hub-monitor")

    async def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        await asyncio.gather(*(s.close("server stopping") for s in list(self.sessions.values())),
                             return_exceptions=True)

    # -- media in -------------------------------------------------------------------------------------------
    def fanout(self, stream_id: str, rendition: str = "src") -> StreamFanout:
        renditions = self.fanouts.setdefault(stream_id, {})
        fan = renditions.get(rendition)
        if fan is None:
            fan = renditions[rendition] = StreamFanout(
                stream_id, rendition, gop_frames=self.config.gop_frames,
                on_lost=lambda name: self.request_keyframe(stream_id, name, "packets lost before the viewer tier"))
            self.meters[(stream_id, rendition)] = BitrateMeter(4.0)
        return fan

    def push_packet(self, packet: Packet, rendition: str = "src", *, lost_before: bool = False) -> None:
        """One packet for the viewers of its stream (``rendition`` of it); ``lost_before``: packets were lost just
        before it where its ``seq`` cannot show it (see :meth:`.StreamFanout.push_packet`)."""
        packet = with_facts(packet)
        self.fanout(packet.stream_id, rendition).push_packet(packet, lost_before=lost_before)
        self.meters[(packet.stream_id, rendition)].add(len(packet.data))

    async def end_stream(self, stream_id: str, reason: str = "") -> int:
        """The stream ended: its fan-outs (GOP caches), meters and keyframe timers go, and its viewers are closed
        ("stream ended"; the page lists the live streams again). Returns how many viewers were closed."""
        self.fanouts.pop(stream_id, None)
        for key in [k for k in self.meters if k[0] == stream_id]:
            del self.meters[key]
        for key in [k for k in self._last_keyframe_request if k[0] == stream_id]:
            del self._last_keyframe_request[key]
        viewers = [s for s in self.sessions.values() if s.stream_id == stream_id]
        await asyncio.gather(*(s.close(f"stream ended{': ' + reason if reason else ''}") for s in viewers),
                             return_exceptions=True)
        return len(viewers)

    def push_analytics(self, stream_id: str, text: str) -> None:
        for session in list(self.sessions.values()):
            if session.stream_id == stream_id:
                session.send_analytics(text)

    def known(self, stream_id: str) -> bool:
        return stream_id in self.fanouts or stream_id in self.declared

    def stream_ids(self) -> list[str]:
        return sorted(set(self.fanouts) | self.declared)

    def viewers_of(self, stream_id: str) -> int:
        return sum(1 for s in self.sessions.values() if s.stream_id == stream_id)

    # -- keyframes ------------------------------------------------------------------------------------------
    def request_keyframe(self, stream_id: str, rendition: str, why: str) -> bool:
        """Ask upstream for a keyframe, at most once per ``keyframe_interval_s`` per rendition."""
        key = (stream_id, rendition)
        now = time.monotonic()
        if now - self._last_keyframe_request.get(key, -1e9) < self.config.keyframe_interval_s:
            return False
        self._last_keyframe_request[key] = now
        self.keyframe_requests += 1
        if self._request_keyframe is not None:
            self._request_keyframe(stream_id, rendition, why)
        return True

    # -- viewers --------------------------------------------------------------------------------------------
    async def connect(self, offer_sdp: str, stream_id: str, viewer_id: str | None = None,
                      known: bool = False) -> tuple[str, str]:
        """Answer a viewer's offer for ``stream_id``; returns ``(viewer_id, answer_sdp)``."""
        if not known and not self.known(stream_id):
            raise UnknownStream(f"unknown stream {stream_id!r} (known: {', '.join(self.stream_ids()) or 'none'})")
        if self.viewers_of(stream_id) >= self.config.max_viewers:
            raise StreamFull(f"stream {stream_id!r} already has {self.config.max_viewers} viewers (max_viewers)")
        viewer_id = viewer_id or secrets.token_hex(8)
        session = ViewerSession(viewer_id, stream_id, self.config.session,
                                on_keyframe_needed=lambda why: self._keyframe_for(session, why),
                                on_closed=self._forget)
        renditions = self.fanouts.get(stream_id, {})
        if len(renditions) > 1:
            controller = self.abr[viewer_id] = AbrController(self.config.abr)
            session.rendition = controller.choose(self._rendition_rates(stream_id), None)
        elif renditions:
            session.rendition = next(iter(renditions))
        self.sessions[viewer_id] = session
        self.viewers_total += 1
        try:
            answer = await session.open(offer_sdp)
        except BaseException:
            await session.close("offer rejected")
            raise
        fan = self.fanout(stream_id, session.rendition)
        join = self.config.join
        burst = fan.attach(session.feed, gop=join == "gop")
        if not burst and join != "wait":
            self.request_keyframe(stream_id, session.rendition, "viewer joined")
        return viewer_id, answer

    async def disconnect(self, viewer_id: str, reason: str = "viewer left") -> None:
        session = self.sessions.get(viewer_id)
        if session is None:
            raise UnknownViewer(f"no viewer {viewer_id!r}")
        await session.close(reason)

    def _forget(self, session: ViewerSession) -> None:
        if self.sessions.pop(session.viewer_id, None) is not None:
            self.viewers_closed += 1
        self.abr.pop(session.viewer_id, None)
        for fan in self.fanouts.get(session.stream_id, {}).values():
            fan.detach(session.feed)
        if self.on_closed is not None:
            self.on_closed(session.viewer_id)

    def _keyframe_for(self, session: ViewerSession, why: str) -> None:
        self.request_keyframe(session.stream_id, session.rendition, why)

    # -- monitoring: liveness and bitrate adaptation ----------------------------------------------------------
    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._sweep()
                self._adapt()
            except Exception:
                log.exception("viewer sweep failed")

    async def _sweep(self) -> None:
        now = time.monotonic()
        doomed: list[tuple[ViewerSession, str]] = []
        for session in list(self.sessions.values()):
            if session.connected_at is None:
                if now - session.created > self.config.connect_timeout_s:
                    doomed.append((session, "never connected"))
            elif session.idle_seconds() > self.config.viewer_timeout_s:
                doomed.append((session, f"silent for {session.idle_seconds():.1f}s (no RTCP)"))
        for session, reason in doomed:
            log.info("viewer %s of %s: closing, %s", session.viewer_id, session.stream_id, reason)
            await session.close(reason)

    def _rendition_rates(self, stream_id: str) -> dict[str, float]:
        return {name: max(self.meters[(stream_id, name)].bps(), 1.0) for name in self.fanouts.get(stream_id, {})}

    def _adapt(self) -> None:
        for viewer_id, controller in list(self.abr.items()):
            session = self.sessions.get(viewer_id)
            if session is None or session.rtcp is None:
                continue
            latency = session.client_report.get("latency_ms")
            controller.update(available_bps=session.rtcp.remb_bps,
                              latency_ms=latency if isinstance(latency, int | float) else None,
                              loss=session.rtcp.fraction_lost)
            choice = controller.choose(self._rendition_rates(session.stream_id), session.rendition)
            if choice != session.rendition:
                self.switch(session, choice)

    def switch(self, session: ViewerSession, rendition: str) -> None:
        """Move a viewer to another rendition; it resumes at that rendition's next keyframe."""
        renditions = self.fanouts.get(session.stream_id, {})
        if rendition not in renditions:
            raise ValueError(f"stream {session.stream_id!r} has no rendition {rendition!r}")
        old = renditions.get(session.rendition)
        if old is not None:
            old.detach(session.feed)
        session.rendition = rendition
        session.feed.wait_for_keyframe()
        renditions[rendition].attach(session.feed, gop=False)
        self.request_keyframe(session.stream_id, rendition, "rendition switch")

    # -- figures --------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        streams: dict[str, Any] = {}
        for stream_id in self.stream_ids():
            renditions = self.fanouts.get(stream_id, {})
            adaptive = len(renditions) > 1
            streams[stream_id] = {
                "viewers": self.viewers_of(stream_id),
                "renditions": {name: {**fan.stats(), "bitrate_kbps": round(self.meters[(stream_id, name)].bps()
                                                                          / 1000, 1)}
                               for name, fan in renditions.items()},
                "abr": {"adaptive": adaptive,
                        "why": "renditions of an encode-once ladder" if adaptive else
                        "passthrough: one rendition, the bitrate is the publisher's and cannot adapt per viewer"},
            }
        viewers = []
        for session in self.sessions.values():
            entry = session.stats()
            controller = self.abr.get(session.viewer_id)
            entry["abr_target_kbps"] = None if controller is None else round(controller.target_bps / 1000)
            viewers.append(entry)
        return {"streams": streams, "viewers": viewers, "viewers_total": self.viewers_total,
                "viewers_closed": self.viewers_closed, "keyframe_requests": self.keyframe_requests}
