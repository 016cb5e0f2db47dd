"""Fuzzing the byte-level surfaces: AMF0 values, RTMP handshake and chunk streams over real sockets, and corrupt
H.264 into the decoder. No exception escapes, nothing hangs, and a valid publisher (or keyframe) still works."""

from __future__ import annotations

import asyncio
import struct

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowgraph.messages import Packet
from flowgraph.nodes.media.decoder import StreamDecoder
from flowgraph.nodes.media.rtmp_proto import (
    COMMAND_AMF0,
    DATA_AMF0,
    HANDSHAKE_SIZE,
    SET_CHUNK_SIZE,
    VIDEO,
    RtmpProtocolError,
    amf0_decode_all,
    amf0_encode,
    encode_chunks,
)

from .conftest import RTMP_KEY
from .live import LiveGraph, count, examples

# -- AMF0 ---------------------------------------------------------------------------------------------------------
AMF_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30)
MARKERS = st.sampled_from([b"\x00", b"\x01", b"\x02", b"\x03", b"\x05", b"\x06", b"\x08", b"\x0a", b"\x0b", b"\x0c",
                           b"\x09", b"\x0d", b"\x11", b"\xff"])


@st.composite
def amf_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["encoded", "mutated", "markers", "deep"]))
    if kind == "deep":
        opener = draw(st.sampled_from([b"\x0a\x00\x00\x00\x01", b"\x03\x00\x01k", b"\x08\x00\x00\x00\x01\x00\x01k"]))
        return opener * draw(st.integers(1, 5000)) + b"\x05"
    if kind == "markers":
        return b"".join(draw(st.lists(MARKERS | st.binary(max_size=6), max_size=40)))
    data = bytearray(amf0_encode(*draw(st.lists(AMF_VALUES, min_size=1, max_size=4))))
    if kind == "mutated" and data:
        for _ in range(draw(st.integers(1, 6))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@given(data=amf_bytes())
@examples("amf0")
def test_amf0_decoder_raises_only_its_protocol_error(data: bytes) -> None:
    count("amf0")
    try:
        amf0_decode_all(data)
    except RtmpProtocolError:
        pass


# -- RTMP over sockets --------------------------------------------------------------------------------------------
def command(*values: object, stream_id: int = 0) -> bytes:
    return encode_chunks(3, COMMAND_AMF0, stream_id, amf0_encode(*values), 128)


GOOD = [command("connect", 1.0, {"app": "live"}), command("createStream", 2.0, None),
        command("publish", 3.0, None, RTMP_KEY, "live", stream_id=1)]


@st.composite
def rtmp_streams(draw: st.DrawFn) -> tuple[bool, bytes]:
    """(do a proper handshake first, then these bytes): valid messages mutated, random chunks, hostile AMF."""
    handshake = draw(st.booleans())
    kind = draw(st.sampled_from(["mutated", "chunks", "amf", "raw"]))
    if kind == "raw":
        return handshake, draw(st.binary(max_size=4096))
    if kind == "amf":
        payload = b"\x02\x00\x07connect" + draw(amf_bytes())
        return handshake, encode_chunks(3, draw(st.sampled_from([COMMAND_AMF0, DATA_AMF0])), 0, payload, 128)
    if kind == "chunks":
        parts = []
        for _ in range(draw(st.integers(1, 20))):
            fmt = draw(st.integers(0, 3))
            csid = draw(st.integers(0, 255))
            header = bytes([(fmt << 6) | (csid & 0x3F)])
            if csid & 0x3F in (0, 1):
                header += bytes(draw(st.binary(min_size=1, max_size=2)))
            type_id = draw(st.sampled_from([SET_CHUNK_SIZE, COMMAND_AMF0, VIDEO, 2, 3, 4, 5, 6, 8, 15, 17, 18, 0xFF]))
            length = draw(st.integers(0, 1 << 24) | st.integers(0, 300))
            header += struct.pack(">I", draw(st.integers(0, 0xFFFFFFFF)))[1:] + length.to_bytes(4, "big")[1:]
            header += bytes([type_id]) + draw(st.binary(min_size=4, max_size=4))
            parts.append(header + draw(st.binary(max_size=300)))
        return handshake, b"".join(parts)
    data = bytearray(b"".join(GOOD))
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return handshake, bytes(data)


async def send_bytes(port: int, handshake: bool, data: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if handshake:
            writer.write(b"\x03" + bytes(HANDSHAKE_SIZE))
            await reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
            writer.write(bytes(HANDSHAKE_SIZE))
        writer.write(data)
        await writer.drain()
        # give the server a moment to react, then go (it must cope with either order)
        try:
            await asyncio.wait_for(reader.read(65536), 0.05)
        except TimeoutError:
            pass
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def publish_ok(port: int) -> bool:
    from flowgraph.nodes.media.rtmp_proto import ChunkParser

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"\x03" + bytes(HANDSHAKE_SIZE))
        await reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
        writer.write(bytes(HANDSHAKE_SIZE) + b"".join(GOOD))
        parser = ChunkParser()
        while True:
            data = await asyncio.wait_for(reader.read(65536), 10)
            if not data:
                return False
            for message in parser.feed(data):
                values = amf0_decode_all(message.payload) if message.type_id == COMMAND_AMF0 else []
                if values and values[0] == "onStatus":
                    return str(values[-1].get("code")) == "NetStream.Publish.Start"
    finally:
        writer.close()


@pytest.fixture(scope="module")
def rtmp_ready(live: LiveGraph) -> LiveGraph:
    port = live.rtmp_port  # type: ignore[attr-defined]
    assert live.call(lambda: publish_ok(port)), "a valid publisher is refused before fuzzing"
    return live


@given(stream=rtmp_streams())
@examples("rtmp")
def test_rtmp_byte_streams(rtmp_ready: LiveGraph, stream: tuple[bool, bytes]) -> None:
    count("rtmp")
    port = rtmp_ready.rtmp_port  # type: ignore[attr-defined]
    rtmp_ready.call(lambda: send_bytes(port, *stream))
    rtmp_ready.check("rtmp bytes")


def test_rtmp_valid_publisher_still_served(rtmp_ready: LiveGraph) -> None:
    port = rtmp_ready.rtmp_port  # type: ignore[attr-defined]
    assert rtmp_ready.call(lambda: publish_ok(port))
    rtmp_ready.check("rtmp after fuzzing")


# -- corrupt H.264 into decode --------------------------------------------------------------------------------------
def _clip() -> list[bytes]:
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 64, 48, "yuv420p"
    encoder.framerate = 30
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "bframes": "0", "g": "10",
                       "repeat-headers": "1"}
    packets = []
    for i in range(12):
        image = np.full((48, 64, 3), (i * 20) % 255, np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += [bytes(p) for p in encoder.encode(frame)]
    packets += [bytes(p) for p in encoder.encode(None)]
    return packets


CLIP = _clip()


@st.composite
def corrupt_clips(draw: st.DrawFn) -> list[bytes]:
    packets = [bytearray(p) for p in CLIP]
    for _ in range(draw(st.integers(1, 10))):
        i = draw(st.integers(0, len(packets) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert", "drop", "random"]))
        packet = packets[i]
        if action == "flip" and packet:
            packet[draw(st.integers(0, len(packet) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            packets[i] = packet[: draw(st.integers(0, len(packet)))]
        elif action == "insert":
            at = draw(st.integers(0, len(packet)))
            packets[i] = packet[:at] + draw(st.binary(max_size=64)) + packet[at:]
        elif action == "drop" and len(packets) > 1:
            del packets[i]
        else:
            packets[i] = bytearray(draw(st.binary(max_size=512)))
    return [bytes(p) for p in packets]


@given(clip=corrupt_clips())
@examples("h264")
def test_corrupt_h264_into_decode(clip: list[bytes]) -> None:
    count("h264")
    decoder = StreamDecoder()
    for n, data in enumerate(clip):
        decoder.decode(Packet(stream_id="s", frame_id=n, data=data, keyframe=n % 10 == 0, seq=n, pts=n))
    # a clean keyframe still decodes afterwards
    frames = []
    for n, data in enumerate(CLIP[:3], start=len(clip)):
        frames += decoder.decode(Packet(stream_id="s", frame_id=n, data=data, keyframe=n == len(clip), seq=n, pts=n))
    frames += decoder.flush()
    assert frames and frames[-1].image.shape == (48, 64, 3)
