"""Re-encode a non-H.264 (or unsuitable H.264) video stream to low-latency H.264: the pull sources' fallback.

VP8, VP9, HEVC, AV1, MJPEG, raw camera frames ... are decoded with PyAV and encoded with :class:`H264Encoder`,
sized like the input (rounded down to even dimensions). A stream that changes size midway gets a new encoder
(and therefore an IDR with the new SPS/PPS).
"""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any

import av

from .encoder import EncoderConfig, H264Encoder

log = logging.getLogger("flowgraph.media.transcode")


class Transcoder:
    """Decodes packets of one PyAV stream and encodes the pictures as Annex-B H.264 access units."""

    def __init__(self, stream: Any, *, bitrate_kbps: int, gop: int, preset: str = "veryfast") -> None:
        self.decoder = stream.codec_context
        self.decoder.thread_type = "AUTO"
        self.in_time_base: Fraction = stream.time_base or Fraction(1, 90_000)
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        self.fps = float(rate) if 1 <= float(rate) <= 240 else 30.0
        self.bitrate_kbps = bitrate_kbps
        self.gop = gop
        self.preset = preset
        self.encoder: H264Encoder | None = None
        self.decode_errors = 0
        self._want_key = False
        self._last_pts = -1

    def request_keyframe(self) -> None:
        if self.encoder is not None:
            self.encoder.request_keyframe()
        else:
            self._want_key = True

    def set_bitrate(self, kbps: int) -> None:
        self.bitrate_kbps = kbps
        if self.encoder is not None:
            self.encoder.set_bitrate(kbps)

    def _encoder_for(self, frame: Any) -> H264Encoder:
        width, height = frame.width - frame.width % 2, frame.height - frame.height % 2
        enc = self.encoder
        if enc is None or (enc.config.width, enc.config.height) != (width, height):
            if enc is not None:
                log.info("input size changed to %dx%d: new encoder", width, height)
            enc = self.encoder = H264Encoder(EncoderConfig(width=width, height=height, fps=self.fps,
                                                           bitrate_kbps=self.bitrate_kbps, gop=self.gop,
                                                           preset=self.preset))
            if self._want_key:
                enc.request_keyframe()
                self._want_key = False
        return enc

    def feed(self, packet: Any) -> list[tuple[bytes, int, bool]]:
        """Decode one demuxed packet and encode what came out: ``(annexb, pts_90k, keyframe)`` tuples.
        ``None`` drains the decoder (end of input)."""
        try:
            frames = self.decoder.decode(packet)
        except av.EOFError:
            return []
        except av.FFmpegError as exc:
            self.decode_errors += 1
            log.debug("decode error (%s): skipped", exc)
            return []
        out: list[tuple[bytes, int, bool]] = []
        for frame in frames:
            encoder = self._encoder_for(frame)
            if frame.pts is not None:
                pts = int(frame.pts * self.in_time_base * 90_000)
            else:
                pts = self._last_pts + round(90_000 / self.fps)
            pts = max(pts, self._last_pts + 1)  # the encoder needs strictly increasing timestamps
            self._last_pts = pts
            if frame.width % 2 or frame.height % 2:
                frame = frame.reformat(width=encoder.config.width, height=encoder.config.height)
            out.extend(encoder.encode(frame, pts))
        return out
