"""The ``ingest`` node: one live H.264 stream into the graph, from the source its ``url`` names.

=====================================  =============================================================================
``rtmp://0.0.0.0:1935/live/KEY``       RTMP server (OBS/ffmpeg push); publishers with another key are rejected.
                                       Several ingest nodes may share one port with different keys.
``whip://`` (or ``whip:///path``)      WHIP endpoint on the graph server (``POST /whip/<stream_id>``), bearer token.
``rtmp://0.0.0.0:1935/live`` + keys    Multi-stream: every publisher whose key ``keys``/``keys_file``/``on_publish``
``whip://`` + keys                     authorises becomes a stream of its own (``multi`` module); RTMP key or WHIP
                                       bearer token (or ``POST /whip/<key>``). Each stream ends with a StreamEnd.
``file:///x.mp4`` or a path            mp4, mkv, flv, avi, ts ...; ``realtime`` paces at native rate, ``loop``.
``rtsp:// http(s):// srt:// rtmp://``  PyAV pull with reconnect/backoff (rtmp pull needs ``listen: false``).
``v4l2:///dev/video0``                 V4L2 camera (raw/MJPEG transcoded; untested here: no camera).
``testsrc://?width=1280&fps=30``       Synthetic scene + frame stamp, libx264 live (query keys override params).
=====================================  =============================================================================

Output ``packets``: Annex-B H.264, keyframes self-contained (SPS/PPS in front), ``config`` = SPS/PPS in force.
Input ``control`` (wire it back from ``webrtc_out`` with ``feedback: true``): ``keyframe`` asks the source for an IDR
(testsrc and transcoded pulls encode one; WHIP sends a PLI to the publisher; RTMP and passthrough pulls cannot and
count the request), ``bitrate`` with ``args: {kbps: N}`` changes an encoding source's bitrate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlparse

from flowgraph.access import Surface
from flowgraph.context import NodeContext
from flowgraph.errors import ParamsError
from flowgraph.messages import Control, Packet
from flowgraph.node import Node
from flowgraph.params import param
from flowgraph.ports import Input, Output
from flowgraph.redact import redact_url
from flowgraph.streams import ReportThrottle

if TYPE_CHECKING:
    from .whip import WhipEndpoint
from .admission import AdmissionConfig, parse_keys

SCHEMES = ("rtmp", "rtmps", "whip", "file", "rtsp", "rtsps", "http", "https", "srt", "udp", "tcp", "v4l2",
           "video4linux2", "testsrc")


class Ingest(Node):
    """One live H.264 stream from RTMP, WHIP, a file, a network pull, a camera or the synthetic source."""

    packets = Output(Packet, "H.264 Annex-B access units; keyframes carry SPS/PPS; config = SPS/PPS in force")
    control = Input(Control, "keyframe / bitrate requests (wire with feedback: true)", required=False)

    @dataclass
    class Params:
        url: str = param("testsrc://", "source: rtmp://host:port/app/KEY, whip://, file path, rtsp://, http(s)://, "
                                       "srt://, v4l2:///dev/videoN, testsrc://?width=..&height=..&fps=..")
        stream_id: str = param("default", "stream_id stamped on every packet (one ingest node per stream)")
        # pulls and files
        realtime: bool = param(True, "files: pace packets at their native rate (false = as fast as possible)")
        loop: bool = param(False, "files: start over at the end")
        transcode: Literal["auto", "always", "never"] = param(
            "auto", "re-encode to H.264: auto = only non-H.264 input; never = error on non-H.264")
        timeout_s: float = param(5.0, "network open/read timeout (a stalled source reconnects after it)",
                                 exclusiveMinimum=0)
        reconnect: bool = param(True, "network pulls: reconnect with exponential backoff when the source drops")
        listen: bool = param(True, "rtmp://: act as the RTMP server (false = pull from a remote RTMP server)")
        options: dict[str, str] = param({}, "extra FFmpeg demuxer/protocol options for pulls (e.g. rtsp_transport)")
        # rtmp / whip
        token: str = param("", "WHIP: required bearer token ('' = none)")
        # multi-stream (rtmp:// and whip://): any of keys / keys_file / on_publish turns it on
        keys: str = param("", "authorised stream keys, comma-separated: KEY or KEY=STREAM_ID (e.g. ${STREAM_KEYS}); "
                              "each publisher becomes its own stream")
        keys_file: str = param("", "file of stream keys (same entries, # comments), re-read when it changes")
        on_publish: str = param("", "HTTP callback asked about unknown keys (POST key, addr, protocol, app; 2xx "
                                    "admits, JSON {stream_id} names the stream)")
        max_streams: int = param(16, "multi-stream: live streams at most; one more publisher is refused",
                                 minimum=1, maximum=100_000)
        takeover: Literal["replace", "refuse"] = param(
            "refuse", "rtmp:// and whip://: a second publisher of a live stream is refused while the first is "
                      "sending (refuse; one silent for 2 s is replaced) or replaces it (replace)")
        max_kbps: int = param(0, "multi-stream: per-stream bandwidth limit (kbit/s, 4 s burst); a publisher above "
                                 "it is disconnected (0 = none)", minimum=0)

        def __post_init__(self) -> None:
            """Multi-stream settings are checked before anything starts (errors name the param)."""
            if not (self.keys.strip() or self.keys_file or self.on_publish):
                return
            scheme = urlparse(self.url).scheme.lower()
            if scheme not in ("rtmp", "rtmps", "whip") or not self.listen:
                raise ParamsError(f"keys / keys_file / on_publish need an rtmp:// (listen) or whip:// url, not "
                                  f"{self.url!r}", ("url",), "rtmp://HOST:PORT/APP or whip://")
            try:
                parse_keys(self.keys, "keys")
            except ValueError as exc:
                raise ParamsError(str(exc), ("keys",), "KEY or KEY=STREAM_ID, comma-separated") from None
            if self.on_publish and urlparse(self.on_publish).scheme not in ("http", "https"):
                raise ParamsError(f"on_publish must be an http(s) URL, got {self.on_publish!r}", ("on_publish",),
                                  "http://host/path")
        # encoding sources: testsrc and transcoded pulls
        width: int = param(1280, "testsrc width", minimum=16, maximum=7680)
        height: int = param(720, "testsrc height", minimum=16, maximum=4320)
        fps: float = param(30.0, "testsrc frames per second", exclusiveMinimum=0, maximum=240)
        bitrate_kbps: int = param(2500, "testsrc / transcode bitrate (kbit/s)", minimum=50)
        gop: int = param(60, "testsrc / transcode keyframe interval (frames)", minimum=1)
        people: int = param(3, "testsrc: synthetic people in the scene (0 = moving pattern)", minimum=0)
        seed: int = param(1, "testsrc: scene seed (deterministic ground truth)")
        count: int = param(0, "testsrc: stop after this many frames (0 = until stopped)", minimum=0)
        preset: str = param("veryfast", "testsrc / transcode x264 preset")

    def __init__(self, ctx: NodeContext, params: Ingest.Params | None = None) -> None:
        super().__init__(ctx, params)
        self.source: Any = None
        self.whip: WhipEndpoint | None = None
        self.keyframe_requests = 0
        self.keyframes_forced = 0
        self.controls_ignored = 0
        self._published = ReportThrottle(1.0)
        p = self.params
        config = AdmissionConfig(keys=p.keys, keys_file=p.keys_file, on_publish=p.on_publish,
                                 max_streams=p.max_streams, takeover=p.takeover)
        self.multi: Any = None
        if config.dynamic:
            from .multi import MultiIngest

            self.multi = MultiIngest(self, config)

    @classmethod
    def surfaces(cls, params: Any) -> list[Surface]:
        url = urlparse(params.url)
        scheme = url.scheme.lower()
        if (params.keys.strip() or params.keys_file or params.on_publish) and scheme in ("rtmp", "rtmps", "whip"):
            # multi-stream: the weakest listed key is the credential (a key file or callback decides itself)
            keys = [k.split("=", 1)[0].strip() for k in params.keys.split(",") if k.strip()]
            weakest = min(keys, key=len) if keys else ""
            credential = weakest if keys or not (params.keys_file or params.on_publish) else "external" * 2
            if scheme == "whip":
                return [Surface("publish", "publishing over WHIP (the stream keys)", credential, ("keys",))]
            host = url.hostname or "0.0.0.0"
            return [Surface("publish", "publishing (the RTMP stream keys)", credential, ("keys",),
                            listener=f"rtmp://{host}:{url.port or 1935}", host=host)]
        if scheme in ("rtmp", "rtmps") and params.listen:
            from .rtmp import parse_rtmp_url

            try:
                host, port, _app, key = parse_rtmp_url(params.url)
            except ValueError:
                return []  # refused with a clear error at start
            return [Surface("publish", "publishing (the RTMP stream key)", key, ("url",),
                            listener=f"rtmp://{host}:{port}", host=host)]
        if scheme == "whip":
            token = params.token or dict(parse_qsl(url.query)).get("token", "")
            return [Surface("publish", "publishing over WHIP (the bearer token)", token,
                            ("token",) if params.token or not token else ("url",))]
        return []

    async def setup(self) -> None:
        self._validate_url()
        if self.multi is not None:
            if self.multi.protocol == "whip":
                self.multi.install_whip(self.ctx.server)
        elif self._scheme() == "whip":
            from .whip import WhipEndpoint

            self.whip = WhipEndpoint(self)
            self.whip.install(self.ctx.server)

    async def start(self) -> None:
        if self.multi is not None:
            await self.multi.start()

    async def stop(self) -> None:
        if self.multi is not None:
            await self.multi.stop()
        if self.whip is not None:
            await self.whip.close()

    def _scheme(self) -> str:
        scheme = urlparse(self.params.url).scheme.lower()
        return "file" if len(scheme) <= 1 else scheme

    def _validate_url(self) -> None:
        scheme = self._scheme()
        if scheme not in SCHEMES:
            raise ValueError(f"ingest {self.name!r}: unsupported url scheme {scheme!r} in {self.params.url!r} "
                             f"(expected one of {', '.join(SCHEMES)} or a file path)")

    def _make_source(self) -> Any:
        p = self.params
        scheme = self._scheme()
        if scheme == "testsrc":
            from .testsrc import TestSource

            return TestSource(p.stream_id, testsrc_config(p))
        if scheme in ("rtmp", "rtmps") and p.listen:
            from .rtmp import RtmpSource

            return RtmpSource(p.stream_id, p.url, self.ctx, takeover=p.takeover)
        if scheme == "whip" and self.whip is not None:
            return self.whip.new_source()
        from .pull import PullConfig, PullSource

        return PullSource(p.stream_id, PullConfig(
            url=p.url, realtime=p.realtime, loop=p.loop, transcode=p.transcode, bitrate_kbps=p.bitrate_kbps,
            gop=p.gop, timeout_s=p.timeout_s, reconnect=p.reconnect, options=dict(p.options)))

    # -- running --------------------------------------------------------------------------------------------
    async def run(self) -> None:
        if self.multi is not None:
            await self.multi.run()
            return
        source = self.source = self._make_source()
        source.on_change = lambda: self._publish_info(force=True)
        watcher = asyncio.create_task(self._watch(source), name=f"ingest-watch:{self.name}")
        try:
            self._publish_info(force=True)
            if source.is_async:
                async with contextlib.aclosing(source.packets()) as packets:
                    async for packet in packets:
                        await self._emit(packet)
            else:
                await self._pull_blocking(source)
        finally:
            source.stop()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self._publish_info(force=True)

    async def _pull_blocking(self, source: Any) -> None:
        generator = await self.offload(source.packets)
        try:
            while True:
                packet = await self.offload(next, generator, None)
                if packet is None:
                    return
                await self._emit(packet)
        finally:
            with contextlib.suppress(Exception):
                await self.offload(generator.close)

    async def _emit(self, packet: Packet) -> None:
        await self.packets.send(packet)
        self._publish_info()

    async def _watch(self, source: Any) -> None:
        """Stop the source when the graph stops; meanwhile refresh /api/streams even while no packet flows."""
        while not await self.wait_stopping(1.0):
            self._publish_info(force=True)
        source.stop()

    def _publish_info(self, force: bool = False) -> None:
        if not self._published.due(self.params.stream_id, force=force):
            return
        if self.multi is not None:
            self.multi.report()
        elif self.source is not None:
            self.ctx.streams.update(self.params.stream_id, "ingest", node=self.name,
                                    url=_redact(self.params.url), **self.source.describe())

    # -- control --------------------------------------------------------------------------------------------
    async def on_control(self, msg: Control) -> None:
        if self.multi is not None:
            source = self.multi.source_of(msg.stream_id)
            if source is None:
                self.controls_ignored += 1
                return
        elif msg.stream_id != self.params.stream_id:  # one viewer tier may serve (and control) several streams
            self.controls_ignored += 1
            return
        else:
            source = self.source
        if msg.command == "keyframe":
            self.keyframe_requests += 1
            if source is not None and source.request_keyframe():
                self.keyframes_forced += 1
        elif msg.command == "bitrate":
            kbps = msg.args.get("kbps")
            if source is not None and isinstance(kbps, int | float) and kbps > 0:
                source.set_bitrate(int(kbps))
        else:
            self.log.debug("ignored control command %r", msg.command)

    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = {"keyframe_requests": self.keyframe_requests,
                               "keyframes_forced": self.keyframes_forced,
                               "controls_ignored": self.controls_ignored}
        source = self.source
        if self.multi is not None:
            out.update(self.multi.counters())
        elif source is not None:
            out.update(source.counters.as_dict())
            out["state"] = source.state
        return out


def testsrc_config(p: Any) -> Any:
    """Params, overridden by the ``testsrc://?key=value`` query."""
    from .testsrc import TestSrcConfig

    values: dict[str, Any] = {"width": p.width, "height": p.height, "fps": p.fps, "bitrate_kbps": p.bitrate_kbps,
                              "gop": p.gop, "people": p.people, "seed": p.seed, "count": p.count,
                              "preset": p.preset, "realtime": p.realtime}
    casts: dict[str, Callable[[str], Any]] = {
        "width": int, "height": int, "fps": float, "bitrate_kbps": int, "gop": int, "people": int, "seed": int,
        "count": int, "preset": str, "realtime": lambda v: v.lower() in ("1", "true", "yes")}
    for key, value in parse_qsl(urlparse(p.url).query):
        if key not in casts:
            raise ValueError(f"testsrc url: unknown key {key!r} (known: {', '.join(casts)})")
        try:
            values[key] = casts[key](value)
        except ValueError as exc:
            raise ValueError(f"testsrc url: bad value {value!r} for {key}") from exc
    return TestSrcConfig(**values)


def _redact(url: str) -> str:
    """The URL without its stream key / credentials, for the streams API."""
    return redact_url(url)
