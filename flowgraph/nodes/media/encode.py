"""The ``encode`` node: one H.264 rendition, shared by every consumer of its ``packets`` output.

One node is one rendition at one size and bitrate; a ladder is one node per rendition (each runs in its own worker
thread, so renditions encode in parallel on separate cores). Several streams on the input get an encoder each
(``max_streams`` at most; freed when the stream ends); ``stream_id: "{stream}/360p"`` names each output after its
input::

    enc_720: {node: encode, inputs: {frames: dec/frames}, params: {height: 720, bitrate_kbps: 2500}}
    enc_360: {node: encode, inputs: {frames: dec/frames}, params: {height: 360, bitrate_kbps: 600}}

libx264 low-latency settings (zerolatency, no B-frames, fixed GOP, repeated headers), NVENC when placed on CUDA.
The bitrate changes while running (``set_bitrate`` or a ``bitrate`` Control with ``args: {kbps: N}``); a
``keyframe`` Control makes the next frame an IDR. With ``overlay: true`` each picture gets the analytics of its
own frame (boxes with track ids, skeletons, speed labels; matched by pts, see :mod:`.overlay`) burned into a
copy before encoding; ``overlay_wait_ms`` holds a picture up to that long for its analytics to arrive::

    enc: {node: encode, inputs: {frames: dec/frames, analytics: fuse/analytics},
          params: {overlay: true, overlay_wait_ms: 200}}

The hold delays the rendition (never the passthrough path); what it costs is in the counters
(``overlay_hold_ms_mean``/``_max``, ``overlay_hold_timeouts``). In a file run that is not realtime, with ``block``
edges, a generous wait (seconds) makes every overlay exact.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from flowgraph.context import NodeContext
from flowgraph.messages import Analytics, Control, Packet, StreamEnd, VideoFrame
from flowgraph.node import Node
from flowgraph.params import param
from flowgraph.ports import Input, Output

TIME_BASE = Fraction(1, 90_000)
#: Pictures held for their analytics at most (beyond, the oldest is encoded without waiting, counted).
MAX_HELD = 300


class Encode(Node):
    """Encodes pictures into one H.264 rendition (libx264 zero-latency, NVENC on CUDA), optional overlays."""

    frames = Input(VideoFrame, "pictures to encode (numpy RGB/BGR, or a CUDA tensor)")
    analytics = Input(Analytics, "detections/poses/speeds to burn in (with overlay: true)", required=False)
    control = Input(Control, "keyframe / bitrate requests (wire with feedback: true)", required=False)
    packets = Output(Packet, "H.264 Annex-B access units of this rendition")
    gpu = True

    @dataclass
    class Params:
        width: int = param(0, "output width (0 = input width, or keep aspect when only height is set)",
                           minimum=0, maximum=7680)
        height: int = param(0, "output height (0 = input height, or keep aspect when only width is set)",
                            minimum=0, maximum=4320)
        fps: float = param(30.0, "nominal frame rate (rate control)", exclusiveMinimum=0, maximum=240)
        bitrate_kbps: int = param(2500, "target bitrate (kbit/s); changeable while running", minimum=50)
        gop: int = param(60, "keyframe interval (frames)", minimum=1)
        preset: str = param("veryfast", "x264 preset")
        codec: Literal["auto", "libx264", "h264_nvenc"] = param("auto", "auto = NVENC when placed on CUDA")
        stream_id: str = param("", "stream_id of the output ('' = the input's), e.g. cam1/360p, or {stream}/360p "
                                   "for several input streams")
        max_streams: int = param(16, "input streams encoded at once (an encoder each); frames of more are refused",
                                 minimum=1, maximum=1024)
        overlay: bool = param(False, "burn in each picture's analytics (boxes, ids, skeletons, speeds)")
        overlay_max_age_s: float = param(0.5, "draw analytics at most this much older than the picture (pts; "
                                              "wall clock for messages without pts)", exclusiveMinimum=0)
        overlay_wait_ms: float = param(0.0, "hold each picture up to this long for its analytics (0 = never)",
                                       minimum=0, maximum=60_000)

    live_params = frozenset({"bitrate_kbps"})

    def update_params(self, params: Encode.Params) -> None:
        """A live graph edit of ``bitrate_kbps`` retargets the running encoder from its next frame."""
        if params.bitrate_kbps != self.params.bitrate_kbps:
            self.set_bitrate(params.bitrate_kbps)
        self.params = params

    def __init__(self, ctx: NodeContext, params: Encode.Params | None = None) -> None:
        super().__init__(ctx, params)
        from .packetizer import IngestCounters, PacketMaker

        self._maker_cls = PacketMaker
        self._counters = IngestCounters()
        self._lanes: dict[str, _Lane] = {}  # per input stream_id
        self._lock = threading.Lock()  # lanes live in the worker thread; control calls come from the loop
        self._pending_bitrate: int | None = None
        self._overlay: Any = None
        self.held_overflow = 0
        self.refused_streams = 0
        self.bitrate_changes_done = 0  # by lanes that since ended
        if self.params.overlay:
            from .overlay import OverlayState

            self._overlay = OverlayState(self.params.overlay_max_age_s)
        self.keyframe_requests = 0
        self.overlays_drawn = 0
        from .report import StreamReport

        self._report = StreamReport(self.ctx.streams, "encode")

    # -- control (event loop) ---------------------------------------------------------------------------------
    def set_bitrate(self, kbps: int) -> None:
        """Change the target bitrate from the next frame on."""
        with self._lock:
            self._pending_bitrate = int(kbps)

    def request_keyframe(self, stream_id: str = "") -> None:
        """The next picture of ``stream_id`` (input or output id; '' or one this node does not encode: every
        stream) is an IDR."""
        with self._lock:
            self.keyframe_requests += 1
            lanes = [lane for key, lane in self._lanes.items() if stream_id in (key, lane.out_id)]
            for lane in lanes or self._lanes.values():
                lane.pending_keyframe = True

    @property
    def bitrate_kbps(self) -> int:
        pending = self._pending_bitrate
        if pending is not None:
            return pending
        lane = next(iter(self._lanes.values()), None)
        return lane.encoder.bitrate_kbps if lane is not None else self.params.bitrate_kbps

    async def on_control(self, msg: Control) -> None:
        if msg.command == "keyframe":
            self.request_keyframe(msg.stream_id)
        elif msg.command == "bitrate":
            kbps = msg.args.get("kbps")
            if isinstance(kbps, int | float) and kbps > 0:
                self.set_bitrate(int(kbps))

    async def on_analytics(self, msg: Analytics) -> None:
        if self._overlay is None:
            return
        self._overlay.update(msg)
        lane = self._lanes.get(msg.stream_id)
        if lane is not None and lane.held:  # pictures waiting for their analytics: some may be complete now
            for packet in await self.offload(self._release, lane, False):
                await self.packets.send(packet)

    async def flush(self) -> None:
        for lane in list(self._lanes.values()):
            if lane.held:
                for packet in await self.offload(self._release, lane, True):
                    await self.packets.send(packet)

    async def end_stream(self, end: StreamEnd) -> None:
        """The stream's held pictures are encoded and sent (before the marker goes on), then its encoder freed."""
        lane = self._lanes.get(end.stream_id)
        if lane is None:
            return
        if lane.held:
            for packet in await self.offload(self._release, lane, True):
                await self.packets.send(packet)
        with self._lock:
            self._lanes.pop(end.stream_id, None)
            self.bitrate_changes_done += lane.encoder.bitrate_changes

    # -- encoding (worker thread) -----------------------------------------------------------------------------
    def process(self, frame: VideoFrame) -> list[Packet] | None:
        lane = self._lane(frame)
        if self._overlay is None or self.params.overlay_wait_ms <= 0:
            return self._encode(lane, frame) or None
        lane.held.append((frame, time.monotonic()))
        return self._release(lane, False, arriving=frame) or None

    def _release(self, lane: _Lane, everything: bool, arriving: VideoFrame | None = None) -> list[Packet]:
        """Encode a stream's held pictures, oldest first, up to the first one still waiting for its analytics
        (within its deadline). Pictures are held in this node, not in the worker, so analytics keep arriving
        meanwhile; each stream waits for its own analytics only."""
        assert self._overlay is not None
        out: list[Packet] = []
        wait_s = self.params.overlay_wait_ms / 1000
        held = lane.held
        while held:
            frame, arrived = held[0]
            if not everything and len(held) <= MAX_HELD and not self._overlay.ready(
                    frame.stream_id, frame.pts_seconds, arrived, wait_s):
                break
            held.popleft()
            if len(held) >= MAX_HELD:
                self.held_overflow += 1
            if frame is not arriving:  # drawn later than it arrived: it was held
                self._overlay.note_hold(time.monotonic() - arrived)
            out += self._encode(lane, frame)
        return out

    def _encode(self, lane: _Lane, frame: VideoFrame) -> list[Packet]:
        image = frame.numpy() if frame.device != "cpu" or hasattr(frame.image, "detach") else frame.image
        encoder = lane.encoder
        with self._lock:
            if self._pending_bitrate is not None:
                for each in self._lanes.values():
                    each.encoder.set_bitrate(self._pending_bitrate)
                self._pending_bitrate = None
            if lane.pending_keyframe:
                encoder.request_keyframe()
                lane.pending_keyframe = False
        if self._overlay is not None:
            chosen = self._overlay.choose(frame.stream_id, frame.pts_seconds)
            if not chosen.empty:  # frames are shared read-only: draw on our own copy
                image = self._overlay.draw(image.copy(), chosen=chosen)
                self.overlays_drawn += 1
        pts = lane.next_pts(frame, self.params.fps)
        out: list[Packet] = []
        for data, out_pts, _key in encoder.encode(image, pts, format=frame.format):
            packet = lane.maker.from_annexb(data, pts=out_pts, time_base=TIME_BASE)
            if packet is not None:
                packet.like(frame)  # frame_id and t_capture trace back to the source frame
                packet.pts = packet.dts = out_pts
                packet.time_base = TIME_BASE
                packet.stream_id = lane.out_id
                out.append(packet)
        if out:
            self._report.maybe(lane.out_id, lambda: {"node": self.name, "source": frame.stream_id,
                                                     **self.counters()})
        return out

    def _lane(self, frame: VideoFrame) -> _Lane:
        """The input stream's encoder, made on its first picture (at the size that picture asks for)."""
        lane = self._lanes.get(frame.stream_id)
        if lane is not None:
            return lane
        p = self.params
        out_id = p.stream_id.replace("{stream}", frame.stream_id) if p.stream_id else frame.stream_id
        if len(self._lanes) >= p.max_streams or out_id in (other.out_id for other in self._lanes.values()):
            self.refused_streams += 1
            why = (f"max_streams {p.max_streams} reached" if len(self._lanes) >= p.max_streams else
                   f"stream_id {p.stream_id!r} would name two streams' renditions the same (use {{stream}} in it)")
            raise ValueError(f"encode: stream {frame.stream_id!r} refused: {why}")
        encoder = self._encoder_for(frame.width, frame.height)
        lane = _Lane(encoder=encoder, maker=self._maker_cls(out_id, self._counters), out_id=out_id)
        with self._lock:
            self._lanes[frame.stream_id] = lane
        return lane

    def _encoder_for(self, in_width: int, in_height: int) -> Any:
        from .encoder import EncoderConfig, H264Encoder

        p = self.params
        width, height = p.width, p.height
        if not width and not height:
            width, height = in_width, in_height
        elif not width:
            width = round(in_width * height / in_height)
        elif not height:
            height = round(in_height * width / in_width)
        width, height = width - width % 2, height - height % 2
        codec = p.codec
        if codec == "auto":
            codec = "h264_nvenc" if self.device.startswith("cuda") else "libx264"
        return H264Encoder(EncoderConfig(width=width, height=height, fps=p.fps,
                                         bitrate_kbps=self.bitrate_kbps, gop=p.gop,
                                         preset=p.preset, codec=codec))

    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = self._counters.as_dict()
        lanes = list(self._lanes.values())
        out.update({"bitrate_kbps": self.bitrate_kbps, "keyframe_requests": self.keyframe_requests,
                    "overlays_drawn": self.overlays_drawn, "streams": len(lanes),
                    "refused_streams": self.refused_streams,
                    "bitrate_changes": self.bitrate_changes_done + sum(lane.encoder.bitrate_changes
                                                                       for lane in lanes)})
        overlay = self._overlay
        if overlay is not None:
            out.update(overlay.counters())
            out["overlay_held_now"] = sum(len(lane.held) for lane in lanes)
            out["overlay_hold_overflow"] = self.held_overflow
        if lanes:
            config = lanes[0].encoder.config
            out["size"] = f"{config.width}x{config.height}"
        return out


@dataclass
class _Lane:
    """One input stream's encoder, its packetizer and its pictures held for their analytics."""

    encoder: Any
    maker: Any
    out_id: str
    pending_keyframe: bool = False
    last_pts: int = -1
    held: deque[tuple[VideoFrame, float]] = field(default_factory=deque)

    def next_pts(self, frame: VideoFrame, fps: float) -> int:
        """The frame's time on the 90 kHz clock, strictly increasing (the encoder rejects repeats)."""
        if frame.pts is not None and frame.time_base is not None:
            pts = int(frame.pts * frame.time_base * 90_000)
        else:
            pts = self.last_pts + round(90_000 / fps)
        pts = max(pts, self.last_pts + 1)
        self.last_pts = pts
        return pts
