"""``webrtc_out``: viewers over WebRTC — H.264 passthrough fan-out, ``analytics`` data channel, WHEP, viewer page."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from flowgraph.access import Surface
from flowgraph.context import NodeContext
from flowgraph.messages import Analytics, Control, Packet, StreamEnd
from flowgraph.metrics import Samples
from flowgraph.params import param
from flowgraph.ports import Input, Output

from .viewer_node import ViewerNode, ViewerParams

_ICE_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "urls": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "username": {"type": "string"},
            "credential": {"type": "string"},
        },
        "required": ["urls"],
        "additionalProperties": False,
    },
}
MAX_DATA_CHANNEL_MESSAGE = 262_144


class WebRTCOut(ViewerNode):
    """Serves H.264 packets to WebRTC viewers (passthrough fan-out) with analytics on a data channel."""

    video = Input(Packet, "H.264 Annex-B access units; one fan-out per stream_id (and rendition)")
    analytics = Input(Analytics, "analytics for the viewers of the message's stream_id", required=False)
    control = Output(Control, "keyframe requests (command 'keyframe', stream_id); wire back with feedback: true")

    @dataclass
    class Params(ViewerParams):
        ice_servers: list[dict[str, Any]] = param([], "ICE servers ({urls, username?, credential?}); none on a LAN",
                                                  schema=_ICE_SCHEMA)
        join: Literal["gop", "keyframe", "wait"] = param(
            "gop", "a joining viewer starts from the cached GOP (gop), asks upstream for a keyframe (keyframe), "
                   "or waits for the next one (wait)")
        ladder: bool = param(False, "packets of different heights are renditions of one stream (transcode "
                                    "ladder); viewers switch between them by the bitrate controller")
        target_latency_ms: float = param(150.0, "bitrate controller: latency above which it steps down",
                                         minimum=1)
        max_viewers: int = param(500, "viewers per stream (per worker when workers > 0)", minimum=1)
        viewer_timeout_s: float = param(5.0, "close a connected viewer silent (no RTCP) for this long",
                                        minimum=1)
        analytics_backlog: int = param(64, "analytics messages queued per viewer before the oldest drop",
                                       minimum=1)
        gop_frames: int = param(300, "longest GOP cached for joining viewers (frames)", minimum=1)
        workers: int = param(0, "viewer processes (0 = serve viewers in the graph process)", minimum=0,
                             maximum=64)
        loopback_candidates: bool = param(True, "offer a 127.0.0.1 ICE candidate (same-host viewers, tests)")

    @classmethod
    def surfaces(cls, params: Any) -> list[Surface]:
        return [Surface("viewers", "the viewer list (GET /api/webrtc/stats names every viewer's session)", None)]

    # -- Backend protocol (the router calls these; ViewerNode answers max_sdp_bytes, default_stream) ----------
    def known(self, stream_id: str) -> bool:
        return self._backend.known(stream_id) or (self.ctx.streams.known(stream_id) and \
            self._serves(stream_id))

    def _serves(self, stream_id: str) -> bool:
        """A stream announced by another node (e.g. ingest) is ours when we are the only webrtc_out."""
        return len(self.router.backends) == 1

    def stream_ids(self) -> list[str]:
        return self._backend.stream_ids()

    def viewers_of(self, stream_id: str) -> int:
        return int(self._backend.viewers_of(stream_id))

    def has_viewer(self, viewer_id: str) -> bool:
        return bool(self._backend.has_viewer(viewer_id))

    async def connect(self, offer_sdp: str, stream_id: str) -> tuple[str, str]:
        result = await self._backend.connect(offer_sdp, stream_id, known=True)
        self._report(stream_id)
        return result

    async def disconnect(self, viewer_id: str) -> None:
        await self._backend.disconnect(viewer_id)

    async def viewer_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self._backend.stats()
        stats["control_dropped"] = self._control_dropped
        return stats

    def page_config(self) -> dict[str, Any]:
        return {"ice_servers": self.params.ice_servers, "default_stream": self.params.default_stream}

    # -- lifecycle ------------------------------------------------------------------------------------------
    def __init__(self, ctx: NodeContext, params: Any = None) -> None:
        super().__init__(ctx, params)
        from .abr import AbrPolicy
        from .hub import HubConfig
        from .session import SessionConfig

        p = self.params
        delay = tuple(p.playout_delay_ms) if p.playout_delay_ms else None
        self.hub_config = HubConfig(
            session=SessionConfig(ice_servers=list(p.ice_servers), playout_delay=delay,
                                  analytics_backlog=p.analytics_backlog, feed_limit=p.gop_frames + 100),
            join=p.join, max_viewers=p.max_viewers, viewer_timeout_s=p.viewer_timeout_s, gop_frames=p.gop_frames,
            abr=AbrPolicy(target_latency_ms=p.target_latency_ms))
        self._controls: asyncio.Queue[Control] = asyncio.Queue(maxsize=32)
        self._control_dropped = 0
        self._analytics_dropped = 0
        self.streams_ended_viewers = 0
        #: Viewer hub (in this process) or worker pool: a resource, acquired in start() and released in stop().
        self._backend: Any = None
        self._control_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from .aiortc_adapter import allow_loopback_candidates
        from .hdrext import register_playout_delay

        p = self.params
        register_playout_delay()
        if p.loopback_candidates:
            allow_loopback_candidates()
        if p.workers > 0:
            from .workers import WorkerPool

            self._backend = WorkerPool(p.workers, self.hub_config, self._keyframe_wanted, p.streams,
                                       loopback=p.loopback_candidates)
        else:
            from .hub import ViewerHub

            self._backend = LocalBackend(ViewerHub(self.hub_config, self._keyframe_wanted), p.streams)
        await self._backend.start()
        self._control_task = asyncio.create_task(self._send_controls(), name=f"{self.name}:control")

    async def stop(self) -> None:
        task, self._control_task = self._control_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._backend is not None:  # kept after stop: the router may still ask it about viewers
            await self._backend.stop()

    # -- media and analytics in -----------------------------------------------------------------------------
    async def on_video(self, msg: Packet) -> None:
        from flowgraph.nodes.media.h264 import with_facts

        if msg.codec != "h264":
            raise ValueError(f"webrtc_out sends H.264 only; stream {msg.stream_id!r} carries {msg.codec!r}")
        rendition = f"{msg.height}p" if self.params.ladder and msg.height else "src"
        # the H.264 facts are the producer's (ingest finds them once); only a packet made without them is parsed,
        # here, once for every viewer and worker
        self._backend.push_packet(with_facts(msg), rendition)

    async def end_stream(self, end: StreamEnd) -> None:
        """The stream ended: its fan-out and GOP cache are freed and its viewers closed (in the viewer workers too)."""
        self.streams_ended_viewers += await self._backend.end_stream(end.stream_id, end.reason)

    async def on_analytics(self, msg: Analytics) -> None:
        wire = msg.to_wire()
        payload = wire["payload"]
        if "frame_id" not in payload or "pts" not in payload:
            wire["payload"] = {**msg.meta(), **payload}
        text = json.dumps(wire, separators=(",", ":"), default=str)
        if len(text) > MAX_DATA_CHANNEL_MESSAGE:
            self._analytics_dropped += 1
            self.log.warning("analytics message of %d bytes exceeds the data channel limit; dropped", len(text))
            return
        self._backend.push_analytics(msg.stream_id, text)

    # -- keyframe requests out ------------------------------------------------------------------------------
    def _keyframe_wanted(self, stream_id: str, rendition: str, why: str) -> None:
        control = Control(command="keyframe", stream_id=stream_id, args={"rendition": rendition, "why": why})
        try:
            self._controls.put_nowait(control)
        except asyncio.QueueFull:
            self._control_dropped += 1

    async def _send_controls(self) -> None:
        while True:
            try:
                control = await asyncio.wait_for(self._controls.get(), 2.0)
            except TimeoutError:
                for stream_id in self._backend.stream_ids():
                    self._report(stream_id)
                continue
            await self.control.send(control)

    def _report(self, stream_id: str) -> None:
        self.ctx.streams.update(stream_id, "webrtc_out", node=self.name,
                                          viewers=self._backend.viewers_of(stream_id),
                                          whep=f"/whep/{stream_id}")

    def counters(self) -> dict[str, Any]:
        backend = self._backend
        if backend is None:
            return {}
        return {**backend.counters(), "control_dropped": self._control_dropped,
                "analytics_oversize_dropped": self._analytics_dropped}


class LocalBackend:
    """Viewers served in the graph process by one :class:`~.hub.ViewerHub`."""

    def __init__(self, hub: Any, declared: list[str]) -> None:
        self.hub = hub
        hub.declared.update(declared)

    async def start(self) -> None:
        self.hub.start()

    async def stop(self) -> None:
        await self.hub.stop()

    def push_packet(self, msg: Packet, rendition: str) -> None:
        self.hub.push_packet(msg, rendition)

    def push_analytics(self, stream_id: str, text: str) -> None:
        self.hub.push_analytics(stream_id, text)

    async def end_stream(self, stream_id: str, reason: str) -> int:
        return int(await self.hub.end_stream(stream_id, reason))

    def known(self, stream_id: str) -> bool:
        return bool(self.hub.known(stream_id))

    def stream_ids(self) -> list[str]:
        return list(self.hub.stream_ids())

    def viewers_of(self, stream_id: str) -> int:
        return int(self.hub.viewers_of(stream_id))

    def has_viewer(self, viewer_id: str) -> bool:
        return viewer_id in self.hub.sessions

    async def connect(self, offer_sdp: str, stream_id: str, known: bool = False) -> tuple[str, str]:
        result: tuple[str, str] = await self.hub.connect(offer_sdp, stream_id, known=known)
        return result

    async def disconnect(self, viewer_id: str) -> None:
        await self.hub.disconnect(viewer_id)

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.hub.stats()
        return stats

    def counters(self) -> dict[str, Any]:
        hub = self.hub
        in_server = Samples(4096)
        for session in hub.sessions.values():
            for value in session.feed.in_server.values():
                in_server.add(value)
        return {"viewers": len(hub.sessions), "viewers_total": hub.viewers_total,
                "in_server_ms": in_server.summary_ms(),  # ingest socket -> RTP sender, live frames
                "keyframe_requests": hub.keyframe_requests,
                "analytics_dropped": sum(s.analytics_dropped for s in hub.sessions.values()),
                "video_frames_dropped": sum(s.feed.frames_dropped for s in hub.sessions.values())}
