"""One low-latency H.264 encoder (libx264, or NVENC on CUDA) shared by testsrc, the transcode path and ``encode``.

libx264 settings follow the field notes: preset veryfast, tune zerolatency (no frame delay), no B-frames, no
scene-cut keyframes, a fixed keyint and headers repeated on every keyframe. The bitrate can change while running:
FFmpeg's libx264 wrapper reconfigures x264 when ``bit_rate`` differs on the next frame (no rebuild, no IDR).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.frame import PictureType

log = logging.getLogger("flowgraph.media.encoder")


@dataclass
class EncoderConfig:
    width: int
    height: int
    fps: float = 30.0
    bitrate_kbps: int = 2500
    gop: int = 60
    preset: str = "veryfast"
    #: ``libx264`` or ``h264_nvenc`` (the latter only with an NVIDIA GPU; untested on this machine).
    codec: str = "libx264"
    threads: int = 0
    profile: str = ""


class H264Encoder:
    """Encodes RGB numpy images (or ``av.VideoFrame``) into Annex-B H.264 access units, one out per frame in."""

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config
        self.time_base = Fraction(1, 90_000)
        self._force_key = False
        self._ctx = self._open(config)
        self.frames_in = 0
        self.bitrate_changes = 0

    @staticmethod
    def _open(c: EncoderConfig) -> Any:
        if c.width % 2 or c.height % 2:
            raise ValueError(f"H.264 4:2:0 needs even dimensions, got {c.width}x{c.height}")
        ctx: Any = av.CodecContext.create(c.codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt = c.width, c.height, "yuv420p"
        ctx.time_base = Fraction(1, 90_000)
        ctx.framerate = Fraction(c.fps).limit_denominator(1001)
        ctx.bit_rate = c.bitrate_kbps * 1000
        ctx.gop_size = c.gop
        ctx.max_b_frames = 0
        if c.threads:
            ctx.thread_count = c.threads
        rate = f"{c.bitrate_kbps}k"
        if c.codec == "libx264":
            options = {
                "preset": c.preset, "tune": "zerolatency", "forced-idr": "1", "maxrate": rate, "bufsize": rate,
                "x264-params": f"keyint={c.gop}:min-keyint={c.gop}:scenecut=0:bframes=0:repeat-headers=1",
            }
        else:  # NVENC: low-latency preset, no B-frames, IDR on request (code path without a GPU here)
            options = {"preset": "p2", "tune": "ull", "zerolatency": "1", "bf": "0", "forced-idr": "1",
                       "rc": "cbr", "maxrate": rate, "bufsize": rate}
        if c.profile:
            options["profile"] = c.profile
        ctx.options = options
        ctx.open()
        return ctx

    @property
    def bitrate_kbps(self) -> int:
        return int(self._ctx.bit_rate // 1000)

    def set_bitrate(self, kbps: int) -> None:
        """Change the target bitrate from the next frame on (kbit/s)."""
        kbps = max(50, int(kbps))
        if kbps != self.bitrate_kbps:
            self._ctx.bit_rate = kbps * 1000
            self.bitrate_changes += 1

    def request_keyframe(self) -> None:
        """Make the next encoded frame an IDR (with SPS/PPS)."""
        self._force_key = True

    def encode(self, image: np.ndarray | av.VideoFrame, pts: int,
               format: str = "rgb24") -> list[tuple[bytes, int, bool]]:
        """Encode one picture (numpy ``(H, W, 3)`` in ``format``, or an ``av.VideoFrame``) at ``pts``
        (1/90000 s); returns ``(annexb, pts, keyframe)`` per packet out. A picture of another size is scaled."""
        if isinstance(image, np.ndarray):
            frame = av.VideoFrame.from_ndarray(image, format=format)
        else:
            frame = image
        frame.pts = pts
        frame.time_base = self.time_base
        if self._force_key:
            frame.pict_type = PictureType.I
            self._force_key = False
        else:
            frame.pict_type = PictureType.NONE
        self.frames_in += 1
        return [(bytes(p), int(p.pts if p.pts is not None else pts), bool(p.is_keyframe))
                for p in self._ctx.encode(frame)]

    def flush(self) -> list[tuple[bytes, int, bool]]:
        try:
            return [(bytes(p), int(p.pts or 0), bool(p.is_keyframe)) for p in self._ctx.encode(None)]
        except av.error.EOFError:
            return []

    def close(self) -> None:
        self._ctx = None
