"""One H.264 decoder for one stream: packets in, :class:`VideoFrame` messages out (see ``decode.py``)."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

import av

from flowgraph.messages import Packet, VideoFrame

from .h264 import NAL_SPS, nal_type, split_nals

log = logging.getLogger("flowgraph.media.decode")

#: Packets whose frame has not come out yet (frame threading delays output); bounded, oldest forgotten.
_PENDING_MAX = 64


class StreamDecoder:
    def __init__(self, *, width: int = 0, height: int = 0, format: str = "rgb24", thread_type: str = "SLICE",
                 threads: int = 0, keep_source: bool = True, device: str = "cpu") -> None:
        self.width, self.height, self.format = width, height, format
        self.keep_source = keep_source
        self.device = device
        self.cuda = device.startswith("cuda")
        self._threading = (thread_type, threads)
        self.ctx = self._open(thread_type, threads)
        #: The SPS in force; a different one gets a fresh decoder (FFmpeg may never recover from a bad one).
        self._sps: bytes | None = None
        self.reopened = 0
        self._pending: OrderedDict[int, Packet] = OrderedDict()
        self._last: Packet | None = None
        self.waiting_keyframe = True
        self.packets = 0
        self.frames = 0
        self.corrupt = 0
        self.skipped = 0
        self.lost = 0
        self._last_seq: int | None = None
        self._pinned: Any = None
        self._mark = (time.monotonic(), 0)
        self.size: str | None = None
        self._ring_index = 0

    def _open(self, thread_type: str, threads: int) -> Any:
        hwaccel = None
        if self.cuda:
            from av.codec.hwaccel import HWAccel

            index = self.device.split(":", 1)[1] if ":" in self.device else None
            hwaccel = HWAccel(device_type="cuda", device=index, allow_software_fallback=True)
        ctx = av.CodecContext.create("h264", "r", hwaccel=hwaccel)
        ctx.thread_type = thread_type
        if threads:
            ctx.thread_count = threads
        return ctx

    def report(self) -> dict[str, Any]:
        """Counters plus the decoded frame rate since the previous report (for /api/streams)."""
        now = time.monotonic()
        since, frames = self._mark
        self._mark = (now, self.frames)
        fps = (self.frames - frames) / (now - since) if now > since else 0.0
        return {**self.counters(), "fps": round(fps, 2), "size": self.size, "device": self.device}

    def counters(self) -> dict[str, int]:
        return {"packets": self.packets, "frames": self.frames, "corrupt": self.corrupt, "skipped": self.skipped,
                "lost": self.lost}

    # -- decoding ---------------------------------------------------------------------------------------------
    def decode(self, packet: Packet) -> list[VideoFrame]:
        self.packets += 1
        if packet.seq is not None:
            last, self._last_seq = self._last_seq, packet.seq
            if last is not None and packet.seq != last + 1:
                # packets were lost upstream (a drop_oldest edge, a restarted producer): the references of what
                # follows are gone, so pictures resume at the next keyframe
                self.lost += packet.seq - last - 1 if packet.seq > last else 1
                if not packet.keyframe:
                    self.waiting_keyframe = True
        if self.waiting_keyframe:
            if not packet.keyframe:
                self.skipped += 1
                return []
            self.waiting_keyframe = False
        data = packet.data
        if not data:
            # an empty packet would tell FFmpeg the stream ended (drain mode), refusing every packet after it
            self._corrupted(packet, "empty packet")
            return []
        if packet.keyframe and packet.config and not _has_sps(data):
            data = packet.config + data  # a producer that does not make keyframes self-contained
        sps = _sps_of(data)
        if sps is not None:
            if self._sps is not None and sps != self._sps:
                self.ctx = self._open(*self._threading)
                self.reopened += 1
            self._sps = sps
        av_packet = av.Packet(data)
        if packet.pts is not None:
            av_packet.pts = packet.pts
            av_packet.dts = packet.dts if packet.dts is not None else packet.pts
            self._pending[packet.pts] = packet
            if len(self._pending) > _PENDING_MAX:
                self._pending.popitem(last=False)
        self._last = packet
        try:
            decoded = self.ctx.decode(av_packet)
        except av.FFmpegError as exc:
            if isinstance(exc, av.EOFError):
                self.ctx.flush_buffers()  # left drain mode somehow: reset, or no packet would decode again
            self._corrupted(packet, exc)
            return []
        return self._convert(decoded)

    def flush(self) -> list[VideoFrame]:
        try:
            return self._convert(self.ctx.decode(None))
        except av.FFmpegError:
            return []

    def _corrupted(self, packet: Packet, why: Any) -> None:
        self.corrupt += 1
        if not self.waiting_keyframe:
            log.warning("stream %s frame %s: corrupt (%s); waiting for the next keyframe", packet.stream_id,
                        packet.frame_id, why)
        self.waiting_keyframe = True

    def _convert(self, decoded: list[Any]) -> list[VideoFrame]:
        out: list[VideoFrame] = []
        for frame in decoded:
            meta = self._pending.pop(frame.pts, None) if frame.pts is not None else None
            meta = meta or self._last
            if frame.is_corrupt:
                if meta is not None:
                    self._corrupted(meta, "frame marked corrupt")
                continue
            if self.waiting_keyframe:  # frames decoded from references older than the corruption
                self.skipped += 1
                continue
            image, device = self._picture(frame)
            self.size = f"{frame.width}x{frame.height}"
            message = VideoFrame(image=image, format=self.format, device=device,
                                 source=frame if self.keep_source else None)
            if meta is not None:
                message.like(meta)
            message.pts = frame.pts if frame.pts is not None else message.pts
            self.frames += 1
            out.append(message)
        return out

    def _size(self, frame: Any) -> tuple[int, int]:
        w, h = self.width, self.height
        if not w and not h:
            return frame.width, frame.height
        if not w:
            w = round(frame.width * h / frame.height / 2) * 2
        if not h:
            h = round(frame.height * w / frame.width / 2) * 2
        return w, h

    def _picture(self, frame: Any) -> tuple[Any, str]:
        width, height = self._size(frame)
        if not self.cuda:
            # one swscale pass (convert + resize) into a buffer the array views: no further copy
            return frame.to_ndarray(format=self.format, width=width, height=height), "cpu"
        return self._to_cuda(frame, width, height), self.device

    def _to_cuda(self, frame: Any, width: int, height: int) -> Any:
        """NVDEC frame (downloaded by FFmpeg) → pinned host buffer → (3, H, W) uint8 tensor on the device.

        Untested here (no GPU). Colour conversion stays on the CPU (swscale); resizing happens on the device.
        """
        import torch

        array = frame.to_ndarray(format=self.format)
        ring = self._pinned
        if ring is None or tuple(ring[0][0].shape) != array.shape:
            # a few pinned buffers, each reused only once its previous upload has finished
            ring = self._pinned = [(torch.empty(array.shape, dtype=torch.uint8).pin_memory(), torch.cuda.Event())
                                   for _ in range(3)]
            self._ring_index = 0
        pinned, uploaded = ring[self._ring_index % len(ring)]
        self._ring_index += 1
        uploaded.synchronize()
        pinned.numpy()[...] = array
        tensor = pinned.to(self.device, non_blocking=True).permute(2, 0, 1)
        uploaded.record()
        if (width, height) != (frame.width, frame.height):
            tensor = torch.nn.functional.interpolate(tensor[None].float(), size=(height, width), mode="bilinear",
                                                     align_corners=False)[0].round().clamp(0, 255).byte()
        return tensor.contiguous()


def _has_sps(data: bytes) -> bool:
    return _sps_of(data) is not None


def _sps_of(data: bytes) -> bytes | None:
    """The SPS NAL at the head of an access unit (where encoders put it), if any."""
    return next((n for n in split_nals(data[:256]) if nal_type(n) == NAL_SPS), None)
