"""Fixtures for webrtc_out tests: a small PyAV libx264 packet source, graphs, and an aiortc viewer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest

from flowgraph.messages import Analytics, Control, Packet
from flowgraph.node import Node
from flowgraph.params import param
from flowgraph.ports import Input, Output
from flowgraph.registry import Registry
from flowgraph.testing import compile_text, running


def encode_packets(count: int, *, width: int = 320, height: int = 180, fps: int = 30, gop: int = 30,
                   start: int = 0) -> Iterator[tuple[bytes, bool, int]]:
    """Annex-B H.264 access units (zero latency, baseline, repeated headers) of a moving test pattern."""
    import av
    import numpy as np

    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = Fraction(1, fps)
    codec.framerate = Fraction(fps, 1)
    codec.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                     "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1:bframes=0"}
    image = np.zeros((height, width, 3), np.uint8)
    for n in range(start, start + count):
        image[:] = (n * 7) % 255
        x = (n * 4) % max(1, width - 40)
        image[height // 3: height // 3 + 40, x: x + 40] = (255, 40, 40)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = n
        frame.time_base = codec.time_base
        for packet in codec.encode(frame):
            yield bytes(packet), bool(packet.is_keyframe), int(packet.pts or 0)


class H264Gen(Node):
    """Test source: paced libx264 packets numbered in ``seq`` as ingest numbers them; a 'keyframe' control forces
    an IDR on the next frame; setting :attr:`lose` drops that many encoded packets (a gap in ``seq``)."""

    packets = Output(Packet)
    control = Input(Control, required=False)

    @dataclass
    class Params:
        fps: int = param(30, "frames per second", minimum=1)
        gop: int = param(60, "keyframe interval (frames)", minimum=1)
        count: int = param(0, "frames (0 = until stopped)", minimum=0)
        width: int = param(320, "width", minimum=16)
        height: int = param(180, "height", minimum=16)
        stream_id: str = param("cam", "stream id")

    async def start(self) -> None:
        self.keyframes_requested = 0
        self.keyframes_forced = 0
        self.lose = 0
        self.lost_seqs: list[int] = []
        self._force = False

    async def on_control(self, msg: Control) -> None:
        if msg.command == "keyframe":
            self.keyframes_requested += 1
            self._force = True

    async def run(self) -> None:
        import av
        import numpy as np

        p = self.params
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = p.width, p.height, "yuv420p"
        codec.time_base = Fraction(1, p.fps)
        codec.framerate = Fraction(p.fps, 1)
        codec.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                         "x264-params": f"keyint={p.gop}:min-keyint={p.gop}:scenecut=0:repeat-headers=1"}
        image = np.zeros((p.height, p.width, 3), np.uint8)
        t0 = time.monotonic()
        n = 0
        while not self.stopping and (p.count == 0 or n < p.count):
            image[:] = (n * 7) % 255
            x = (n * 4) % max(1, p.width - 40)
            image[p.height // 3: p.height // 3 + 40, x: x + 40] = (255, 40, 40)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts = n
            if self._force:
                frame.pict_type = av.video.frame.PictureType.I
                self._force = False
                self.keyframes_forced += 1
            t_capture = time.time()
            for packet in await self.offload(codec.encode, frame):
                if self.lose > 0:  # lost on the way: the packet's seq is never seen downstream
                    self.lose -= 1
                    self.lost_seqs.append(n)
                    continue
                await self.packets.send(Packet(data=bytes(packet), keyframe=bool(packet.is_keyframe),
                                               pts=packet.pts, time_base=Fraction(1, p.fps), frame_id=n, seq=n,
                                               stream_id=p.stream_id, t_capture=t_capture, width=p.width,
                                               height=p.height))
            n += 1
            delay = t0 + n / p.fps - time.monotonic()
            if delay > 0 and await self.wait_stopping(delay):
                break


class AnalyticsGen(Node):
    """Test analytics: for every 3rd packet, a detection of the test pattern's moving square (track id 7) with
    the packet's frame metadata, plus a betting opportunity every 60th."""

    packets = Input(Packet)
    analytics = Output(Analytics)

    def process(self, msg: Packet) -> list[Analytics] | None:  # type: ignore[override]
        n = msg.frame_id
        if n % 3:
            return None
        width, height = msg.width or 320, msg.height or 180
        x = (n * 4) % max(1, width - 40)
        meta = {**msg.meta(), "timestamp": time.time(), "width": width, "height": height}
        track = {"track_id": 7, "bbox": [x, height // 3, x + 40, height // 3 + 40], "score": 0.9,
                 "speed_kmh": 12.5}
        out = [Analytics(type="detection", payload={**meta, "tracks": [track], "detections": []}).like(msg)]
        if n % 60 == 0:
            bet = {"id": f"bet-{n}", "stream_id": msg.stream_id, "type": "high_speed", "track_id": 7,
                   "confidence": 0.8, "description": "runner #7 above 12 km/h", "metadata": {},
                   "created_at": time.time(), "expires_at": time.time() + 5}
            out.append(Analytics(type="betting_opportunity", payload={**meta, **bet}).like(msg))
        return out


def registry() -> Registry:
    reg = Registry.default()
    reg.register("h264gen", H264Gen)
    reg.register("analyticsgen", AnalyticsGen)
    return reg


def graph_yaml(webrtc_params: str = "{}", *, gop: int = 60, fps: int = 30, analytics: bool = True,
               stream: str = "cam", width: int = 320, height: int = 180) -> str:
    analytics_node = """
  ana:
    node: analyticsgen
    inputs: {packets: src/packets}""" if analytics else ""
    analytics_in = ", analytics: ana/analytics" if analytics else ""
    return f"""
name: webrtc-test
nodes:
  src:
    node: h264gen
    params: {{gop: {gop}, fps: {fps}, stream_id: {stream}, width: {width}, height: {height}}}
    inputs: {{control: {{from: out/control, feedback: true}}}}{analytics_node}
  out:
    node: webrtc_out
    params: {webrtc_params}
    inputs: {{video: src/packets{analytics_in}}}
"""


@contextlib.asynccontextmanager
async def graph(webrtc_params: str = "{}", **kwargs: Any) -> AsyncIterator[Any]:
    plan = compile_text(graph_yaml(webrtc_params, **kwargs), registry=registry())
    async with running(plan, port=0) as rt:
        yield rt


@pytest.fixture
def webrtc_graph() -> Any:
    return graph


class AiortcViewer:
    """A WebRTC viewer built on aiortc: receives video (decoded) and the analytics channel."""

    def __init__(self, *, data_channel: bool = True) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("video", direction="recvonly")
        self.messages: list[dict[str, Any]] = []
        self.syncs: list[dict[str, Any]] = []
        self.frames = 0
        self.first_frame = asyncio.get_event_loop().create_future()
        self.channels: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        if data_channel:
            self.report = self.pc.createDataChannel("viewer")
        self.pc.on("datachannel", self._on_channel)
        self.pc.on("track", self._on_track)

    def _on_channel(self, channel: Any) -> None:
        self.channels.append(channel)
        if channel.label == "analytics":
            channel.on("message", lambda m: self.messages.append(json.loads(m)))
        elif channel.label == "sync":
            channel.on("message", lambda m: self.syncs.append(json.loads(m)))

    def _on_track(self, track: Any) -> None:
        self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                self.frames += 1
                if not self.first_frame.done():
                    self.first_frame.set_result(frame)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer: str) -> None:
        from aiortc import RTCSessionDescription

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
