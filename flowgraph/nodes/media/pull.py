"""Pull sources through PyAV's demuxers: files, RTSP, HTTP(-FLV/TS), HLS, SRT (when the FFmpeg build has it),
RTMP play, and V4L2 cameras.

H.264 is passed through untouched (AVCC turned into Annex-B by FFmpeg's ``h264_mp4toannexb`` filter); any other
codec goes through :class:`Transcoder` unless ``transcode: never`` asks for a clear error instead. Only the first
video stream is demuxed — audio and data tracks are never read. Files may be paced at their native rate
(``realtime``) and looped; network sources reconnect with exponential backoff. Blocking reads are bounded by
PyAV's read timeout, so a stop never waits longer than ``timeout_s``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any
from urllib.parse import urlparse

import av

from flowgraph.errors import PermanentError
from flowgraph.messages import Packet
from flowgraph.redact import redact_url

from .source import Source
from .transcode import Transcoder

log = logging.getLogger("flowgraph.media.pull")

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https", "srt", "rtmp", "rtmps", "udp", "tcp")
#: Low-latency demuxer options for live network sources (the field notes' "no multi-second probing").
LIVE_OPTIONS = {"fflags": "nobuffer", "flags": "low_delay", "probesize": "65536", "analyzeduration": "500000"}


class MediaError(Exception):
    """A source that cannot produce H.264 (no video, unsupported codec with ``transcode: never``, unreadable)."""


class MediaNotFound(MediaError, PermanentError):
    """A file source that does not exist: retrying cannot help, so the graph stops and says which file."""


@dataclass
class PullConfig:
    url: str
    realtime: bool = True
    loop: bool = False
    transcode: str = "auto"  # auto | always | never
    bitrate_kbps: int = 2500
    gop: int = 60
    timeout_s: float = 5.0
    reconnect: bool = True
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    options: dict[str, str] = field(default_factory=dict)


def classify(url: str) -> tuple[str, str, str | None, dict[str, str]]:
    """``(kind, target, format, options)``: kind is file | network | camera; target is what av.open takes."""
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme in ("v4l2", "video4linux2"):
        device = parsed.path or "/dev/video0"
        return "camera", device, "video4linux2", {}
    if scheme == "file":
        return "file", parsed.path, None, {}
    if scheme in NETWORK_SCHEMES:
        return "network", url, None, dict(LIVE_OPTIONS)
    if scheme == "" or len(scheme) == 1:  # a path (or a Windows drive letter)
        return "file", url, None, {}
    raise MediaError(f"unsupported URL scheme {scheme!r} in {redact_url(url)!r}")


class PullSource(Source):
    """Demuxes one URL and yields H.264 packets; see the module docstring."""

    def __init__(self, stream_id: str, config: PullConfig) -> None:
        super().__init__(stream_id)
        self.config = config
        self.kind, self.target, self.format, self.base_options = classify(config.url)
        #: The URL as it may be shown (API, logs, errors): without its password, passphrase or token.
        self.shown = redact_url(config.url)
        self.publisher = self.shown
        if self.kind == "file" and not os.path.exists(self.target):
            raise MediaNotFound(f"file not found: {self.target}")
        self._transcoder: Transcoder | None = None
        self._pts_offset = 0

    # -- control -------------------------------------------------------------------------------------------
    def _hide(self, exc: BaseException) -> str:
        """An error's text with the URL's secrets masked (FFmpeg quotes the URL it failed to open)."""
        return str(exc).replace(self.config.url, self.shown)

    def request_keyframe(self) -> bool:
        if self._transcoder is None:
            return False
        self._transcoder.request_keyframe()
        return True

    def set_bitrate(self, kbps: int) -> bool:
        if self._transcoder is None:
            return False
        self._transcoder.set_bitrate(kbps)
        return True

    # -- reading -------------------------------------------------------------------------------------------
    def packets(self) -> Iterator[Packet]:
        c = self.config
        backoff = c.backoff_s
        first = True
        while not self.stopping:
            if not first:
                self.counters.reconnects += 1
            first = False
            started = time.monotonic()
            try:
                yield from self._read_once()
            except MediaError:
                raise
            except (av.FFmpegError, OSError) as exc:
                if self.stopping:
                    break
                if self.kind == "file":
                    # a truncated or damaged file: what could be read has been; the rest is reported
                    self.counters.corrupt += 1
                    log.warning("%s: stopped reading at an error: %s", self.target, exc)
                    if not c.loop or self.counters.packets == 0:
                        break
                    continue
                self.state = "reconnecting"
                log.warning("%s: %s (reconnecting in %.1fs)", self.shown, self._hide(exc), backoff)
            else:
                if self.kind == "file":
                    if c.loop and self.counters.packets and not self.stopping:
                        continue
                    break
                if not c.reconnect:
                    break
                self.state = "reconnecting"
                log.info("%s ended (reconnecting in %.1fs)", self.shown, backoff)
            if self.kind == "file" or not c.reconnect:
                break
            if time.monotonic() - started > 10 * c.backoff_s:
                backoff = c.backoff_s  # it ran for a while: start the backoff over
            if self.stop_event.wait(backoff):
                break
            backoff = min(backoff * 2, c.backoff_max_s)
        self.state = "ended"

    def _open(self) -> Any:
        options = {**self.base_options, **self.config.options}
        timeout = self.config.timeout_s if self.kind != "file" else None
        try:
            return av.open(self.target, format=self.format, options=options, timeout=timeout)
        except av.FFmpegError as exc:
            if self.kind == "file":
                raise MediaError(f"cannot open {self.target}: {exc}") from exc
            if isinstance(exc, av.error.ProtocolNotFoundError):
                scheme = urlparse(self.config.url).scheme
                raise MediaError(f"{self.shown}: this FFmpeg build has no {scheme!r} protocol") from exc
            raise

    def _read_once(self) -> Iterator[Packet]:
        c = self.config
        container = self._open()
        try:
            videos = container.streams.video
            if not videos:
                raise MediaError(f"{self.shown}: no video stream")
            stream = videos[0]
            codec = stream.codec_context.name
            self.codec_in = codec
            rate = stream.average_rate or stream.guessed_rate
            self.fps = round(float(rate), 3) if rate else None
            transcode = c.transcode == "always" or (c.transcode == "auto" and codec != "h264")
            if codec != "h264" and c.transcode == "never":
                raise MediaError(f"{self.shown}: video codec {codec!r} is not H.264 and transcode is 'never'")
            bsf = None
            time_base: Fraction = stream.time_base or Fraction(1, 90_000)
            if transcode:
                self._transcoder = Transcoder(stream, bitrate_kbps=c.bitrate_kbps, gop=c.gop)
                time_base = Fraction(1, 90_000)
                log.info("%s: %s video is transcoded to H.264", self.shown, codec)
            else:
                extradata = stream.codec_context.extradata or b""
                if extradata[:1] == b"\x01":
                    from av.bitstream import BitStreamFilterContext

                    bsf = BitStreamFilterContext("h264_mp4toannexb", stream)
                if extradata:
                    self._learn_extradata(extradata)
            self.state = "live"
            yield from self._demux(container, stream, bsf, time_base)
        finally:
            container.close()

    def _learn_extradata(self, extradata: bytes) -> None:
        from .h264 import parse_avcc_config

        if extradata[:1] == b"\x01":
            try:
                config = parse_avcc_config(extradata)
            except ValueError:
                return
            self.maker.learn_config(config.sps + config.pps)
        else:
            self.maker.learn_config(extradata)

    def _demux(self, container: Any, stream: Any, bsf: Any, time_base: Fraction) -> Iterator[Packet]:
        c = self.config
        pace_origin: tuple[float, float] | None = None
        first_ts: int | None = None
        last_pts = self._pts_offset
        for raw in container.demux(stream):
            if self.stopping:
                return
            if raw.size == 0:  # the flush packet at EOF
                if self._transcoder is not None:
                    for data, pts, key in self._transcoder.feed(None):
                        packet = self.maker.from_annexb(data, pts=pts + self._pts_offset, time_base=time_base,
                                                        t_capture=time.time(), keyframe=key)
                        if packet is not None:
                            last_pts = max(last_pts, (packet.pts or 0) + 1)
                            yield packet
                continue
            t_capture = time.time()
            ts = raw.dts if raw.dts is not None else raw.pts
            if c.realtime and ts is not None and raw.time_base is not None:
                seconds = float(ts * raw.time_base)
                if pace_origin is None:
                    pace_origin = (time.monotonic(), seconds)
                delay = pace_origin[0] + (seconds - pace_origin[1]) - time.monotonic()
                if delay > 2.0 or delay < -5.0:  # a timestamp jump: re-anchor rather than stall or burst
                    pace_origin = (time.monotonic(), seconds)
                elif delay > 0 and self.stop_event.wait(delay):
                    return
                t_capture = time.time()
            if self._transcoder is not None:
                units = self._transcoder.feed(raw)
                self.counters.corrupt = self._transcoder.decode_errors
                for data, pts, key in units:
                    packet = self.maker.from_annexb(data, pts=pts + self._pts_offset, time_base=time_base,
                                                    t_capture=t_capture, keyframe=key)
                    if packet is not None:
                        last_pts = max(last_pts, (packet.pts or 0) + 1)
                        yield packet
                continue
            filtered = bsf.filter(raw) if bsf is not None else [raw]
            for pkt in filtered:
                pts = pkt.pts if pkt.pts is not None else pkt.dts
                if first_ts is None:
                    first_ts = pkt.dts if pkt.dts is not None else pts
                # loops and reconnects continue the timeline where the previous pass ended (anchored on the
                # first decode timestamp, so dts never goes below the offset even with B-frames)
                shift = self._pts_offset - (first_ts or 0)
                out_pts = None if pts is None else pts + shift
                out_dts = None if pkt.dts is None else pkt.dts + shift
                try:
                    packet = self.maker.from_annexb(bytes(pkt), pts=out_pts, dts=out_dts, time_base=time_base,
                                                    t_capture=t_capture, duration=pkt.duration or None,
                                                    keyframe=bool(pkt.is_keyframe))
                except ValueError:
                    self.counters.corrupt += 1
                    continue
                if packet is None:
                    continue
                if out_pts is not None:
                    last_pts = max(last_pts, out_pts + (pkt.duration or 1))
                yield packet
        self._pts_offset = last_pts

