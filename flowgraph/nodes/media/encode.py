"""The ``encode`` node: one H.264 rendition, shared by every consumer of its ``packets`` output.

One node is one encoder at one size and bitrate; a ladder is one node per rendition (each runs in its own worker
thread, so renditions encode in parallel on separate cores)::

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
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from flowgraph.context import NodeContext
from flowgraph.messages import Analytics, Control, Packet, VideoFrame
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
        stream_id: str = param("", "stream_id of the output ('' = the input's), e.g. cam1/360p")
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
        self._maker: PacketMaker | None = None
        self._encoder: Any = None
        self._lock = threading.Lock()  # the encoder lives in the worker thread; control calls come from the loop
        self._pending_bitrate: int | None = None
        self._pending_keyframe = False
        self._last_pts = -1
        self._overlay: Any = None
        self._held: deque[tuple[VideoFrame, float]] = deque()  # pictures waiting for their analytics
        self.held_overflow = 0
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

    def request_keyframe(self) -> None:
        with self._lock:
            self._pending_keyframe = True
            self.keyframe_requests += 1

    @property
    def bitrate_kbps(self) -> int:
        pending = self._pending_bitrate
        if pending is not None:
            return pending
        return self._encoder.bitrate_kbps if self._encoder is not None else self.params.bitrate_kbps

    async def on_control(self, msg: Control) -> None:
        if msg.command == "keyframe":
            self.request_keyframe()
        elif msg.command == "bitrate":
            kbps = msg.args.get("kbps")
            if isinstance(kbps, int | float) and kbps > 0:
                self.set_bitrate(int(kbps))

    async def on_analytics(self, msg: Analytics) -> None:
        if self._overlay is None:
            return
        self._overlay.update(msg)
        if self._held:  # pictures waiting for their analytics: some may be complete now
            for packet in await self.offload(self._release, False):
                await self.packets.send(packet)

    async def flush(self) -> None:
        if self._held:
            for packet in await self.offload(self._release, True):
                await self.packets.send(packet)

    # -- encoding (worker thread) -----------------------------------------------------------------------------
    def process(self, frame: VideoFrame) -> list[Packet] | None:
        if self._overlay is None or self.params.overlay_wait_ms <= 0:
            return self._encode(frame) or None
        self._held.append((frame, time.monotonic()))
        return self._release(False, arriving=frame) or None

    def _release(self, everything: bool, arriving: VideoFrame | None = None) -> list[Packet]:
        """Encode the held pictures, oldest first, up to the first one still waiting for its analytics (within
        its deadline). Pictures are held in this node, not in the worker, so analytics keep arriving meanwhile."""
        assert self._overlay is not None
        out: list[Packet] = []
        wait_s = self.params.overlay_wait_ms / 1000
        while self._held:
            frame, arrived = self._held[0]
            if not everything and len(self._held) <= MAX_HELD and not self._overlay.ready(
                    frame.stream_id, frame.pts_seconds, arrived, wait_s):
                break
            self._held.popleft()
            if len(self._held) >= MAX_HELD:
                self.held_overflow += 1
            if frame is not arriving:  # drawn later than it arrived: it was held
                self._overlay.note_hold(time.monotonic() - arrived)
            out += self._encode(frame)
        return out

    def _encode(self, frame: VideoFrame) -> list[Packet]:
        image = frame.numpy() if frame.device != "cpu" or hasattr(frame.image, "detach") else frame.image
        encoder = self._encoder_for(image.shape[1], image.shape[0])
        with self._lock:
            if self._pending_bitrate is not None:
                encoder.set_bitrate(self._pending_bitrate)
                self._pending_bitrate = None
            if self._pending_keyframe:
                encoder.request_keyframe()
                self._pending_keyframe = False
        if self._overlay is not None:
            t = frame.pts_seconds
            chosen = self._overlay.choose(frame.stream_id, t)
            if not chosen.empty:  # frames are shared read-only: draw on our own copy
                image = self._overlay.draw(image.copy(), chosen=chosen)
                self.overlays_drawn += 1
        pts = self._pts(frame)
        out: list[Packet] = []
        assert self._maker is not None
        for data, out_pts, _key in encoder.encode(image, pts, format=frame.format):
            packet = self._maker.from_annexb(data, pts=out_pts, time_base=TIME_BASE)
            if packet is not None:
                packet.like(frame)  # frame_id and t_capture trace back to the source frame
                packet.pts = packet.dts = out_pts
                packet.time_base = TIME_BASE
                packet.stream_id = self.params.stream_id or frame.stream_id
                out.append(packet)
        if out:
            self._report.maybe(out[0].stream_id, lambda: {"node": self.name, "source": frame.stream_id,
                                                          **self.counters()})
        return out

    def _pts(self, frame: VideoFrame) -> int:
        """The frame's time on the 90 kHz clock, strictly increasing (the encoder rejects repeats)."""
        if frame.pts is not None and frame.time_base is not None:
            pts = int(frame.pts * frame.time_base * 90_000)
        else:
            pts = self._last_pts + round(90_000 / self.params.fps)
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        return pts

    def _encoder_for(self, in_width: int, in_height: int) -> Any:
        if self._encoder is not None:
            return self._encoder
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
        self._encoder = H264Encoder(EncoderConfig(width=width, height=height, fps=p.fps,
                                                  bitrate_kbps=p.bitrate_kbps, gop=p.gop, preset=p.preset,
                                                  codec=codec))
        self._maker = self._maker_cls(p.stream_id or "encode", self._counters)
        return self._encoder

    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = self._counters.as_dict()
        encoder = self._encoder
        out.update({"bitrate_kbps": self.bitrate_kbps, "keyframe_requests": self.keyframe_requests,
                    "overlays_drawn": self.overlays_drawn,
                    "bitrate_changes": encoder.bitrate_changes if encoder is not None else 0})
        overlay = self._overlay
        if overlay is not None:
            out.update(overlay.counters())
            out["overlay_held_now"] = len(self._held)
            out["overlay_hold_overflow"] = self.held_overflow
        if encoder is not None:
            out["size"] = f"{encoder.config.width}x{encoder.config.height}"
        return out
