"""A minimal in-process RTMP publisher: handshake, connect, createStream, publish, H.264 video tags, unpublish.

For tests and benchmarks that need many publishers joining and leaving faster than ffmpeg processes start (one
ffmpeg costs ≈ 0.1 s of CPU to start and a core-share to encode). It sends pre-encoded H.264 (see
:func:`encode_clip`) at whatever pace the caller chooses; the server cannot tell it from OBS or ffmpeg.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
from dataclasses import dataclass
from fractions import Fraction

from .h264 import NAL_IDR, NAL_PPS, NAL_SPS, nal_type, split_nals
from .rtmp_proto import (
    COMMAND_AMF0,
    DATA_AMF0,
    HANDSHAKE_SIZE,
    SET_CHUNK_SIZE,
    VIDEO,
    ChunkParser,
    amf0_decode_all,
    amf0_encode,
    encode_chunks,
)

CHUNK = 4096


class PublishRefused(Exception):
    """The server answered ``publish`` with an error status (its code and description)."""


@dataclass
class Clip:
    """Pre-encoded H.264: the AVC decoder configuration record and AVCC access units ``(body, keyframe)``."""

    config: bytes
    frames: list[tuple[bytes, bool]]
    fps: float


def encode_clip(width: int = 320, height: int = 240, fps: int = 30, frames: int = 60, gop: int = 30) -> Clip:
    """Encode a moving test pattern with libx264 (PyAV) into RTMP-ready AVCC frames."""
    import av
    import numpy as np

    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = Fraction(1, fps)
    codec.options = {"preset": "ultrafast", "tune": "zerolatency", "bframes": "0", "g": str(gop),
                     "keyint_min": str(gop), "scenecut": "0", "repeat-headers": "1"}
    sps = pps = b""
    out: list[tuple[bytes, bool]] = []
    packets = []
    for i in range(frames):
        image = np.zeros((height, width, 3), dtype=np.uint8)
        image[:, (i * 7) % width] = 255
        image[(i * 5) % height, :] = (0, 200, 80)
        picture = av.VideoFrame.from_ndarray(image, format="rgb24")
        picture.pts = i
        packets += codec.encode(picture)
    packets += codec.encode(None)
    for packet in packets:
        nals = split_nals(bytes(packet))
        body = []
        for nal in nals:
            kind = nal_type(nal)
            if kind == NAL_SPS:
                sps = nal
            elif kind == NAL_PPS:
                pps = nal
            else:
                body.append(struct.pack(">I", len(nal)) + nal)
        out.append((b"".join(body), any(nal_type(n) == NAL_IDR for n in nals)))
    config = bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + struct.pack(">H", len(sps)) + sps \
        + b"\x01" + struct.pack(">H", len(pps)) + pps
    return Clip(config, out, float(fps))


class RtmpPublisher:
    """One publisher connection to ``rtmp://host:port/app/key``."""

    def __init__(self, host: str, port: int, app: str, key: str) -> None:
        self.host, self.port, self.app, self.key = host, port, app, key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.parser = ChunkParser()
        self.stream = 1
        self.sent_frames = 0

    async def connect(self, timeout: float = 10.0) -> None:
        """Handshake and publish; raises :class:`PublishRefused` when the server says no."""
        await asyncio.wait_for(self._connect(), timeout)

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        c1 = struct.pack(">I", 0) + b"\x00" * 4 + os.urandom(HANDSHAKE_SIZE - 8)
        self.writer.write(b"\x03" + c1)
        s0s1s2 = await self.reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
        self.writer.write(s0s1s2[1:1 + HANDSHAKE_SIZE])
        self._send(2, SET_CHUNK_SIZE, CHUNK.to_bytes(4, "big"), chunk=128)
        self._command("connect", 1.0, {"app": self.app, "type": "nonprivate", "flashVer": "FMLE/3.0",
                                        "tcUrl": f"rtmp://{self.host}:{self.port}/{self.app}"})
        await self._until("_result")
        self._command("createStream", 2.0, None)
        result = await self._until("_result")
        if len(result) > 3 and isinstance(result[3], float):
            self.stream = int(result[3])
        self._command("publish", 3.0, None, self.key, "live", stream=self.stream)
        status = await self._until("onStatus")
        info = status[3] if len(status) > 3 and isinstance(status[3], dict) else {}
        if info.get("level") != "status":
            raise PublishRefused(f"{info.get('code')}: {info.get('description')}")
        self._send(4, DATA_AMF0, amf0_encode("@setDataFrame", "onMetaData",
                                             {"encoder": "flowgraph-rtmp-publish", "framerate": 30.0}),
                   stream=self.stream)

    async def _until(self, name: str) -> list[object]:
        assert self.reader is not None
        while True:
            data = await self.reader.read(65536)
            if not data:
                raise PublishRefused("the server closed the connection")
            for message in self.parser.feed(data):
                if message.type_id == COMMAND_AMF0:
                    values = amf0_decode_all(message.payload)
                    if values and values[0] == name:
                        return values
                    if values and values[0] == "onStatus" and name != "onStatus":
                        info = values[3] if len(values) > 3 and isinstance(values[3], dict) else {}
                        raise PublishRefused(f"{info.get('code')}: {info.get('description')}")

    def _send(self, csid: int, type_id: int, payload: bytes, *, stream: int = 0, timestamp: int = 0,
              chunk: int = CHUNK) -> None:
        assert self.writer is not None
        self.writer.write(encode_chunks(csid, type_id, stream, payload, chunk, timestamp))

    def _command(self, *values: object, stream: int = 0) -> None:
        self._send(3, COMMAND_AMF0, amf0_encode(*values), stream=stream)

    async def send_config(self, config: bytes) -> None:
        self._send(6, VIDEO, b"\x17\x00\x00\x00\x00" + config, stream=self.stream)
        await self._drain()

    async def send_frame(self, body: bytes, timestamp_ms: int, keyframe: bool) -> None:
        head = b"\x17\x01" if keyframe else b"\x27\x01"
        self._send(6, VIDEO, head + b"\x00\x00\x00" + body, stream=self.stream, timestamp=timestamp_ms)
        self.sent_frames += 1
        await self._drain()

    async def _drain(self) -> None:
        assert self.writer is not None
        await self.writer.drain()

    async def play(self, clip: Clip, seconds: float, *, realtime: bool = True) -> None:
        """Send ``clip`` (looped) for ``seconds`` of media time, paced at its frame rate when ``realtime``."""
        await self.send_config(clip.config)
        interval = 1.0 / clip.fps
        started = time.monotonic()
        count = int(seconds * clip.fps)
        for i in range(count):
            body, key = clip.frames[i % len(clip.frames)]
            await self.send_frame(body, int(i * interval * 1000), key)
            if realtime:
                delay = started + (i + 1) * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)

    async def close(self, unpublish: bool = True) -> None:
        if self.writer is None:
            return
        with contextlib.suppress(Exception):
            if unpublish:
                self._command("FCUnpublish", 4.0, None, self.key)
                self._command("deleteStream", 5.0, None, float(self.stream))
                await self.writer.drain()
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        self.writer = None
