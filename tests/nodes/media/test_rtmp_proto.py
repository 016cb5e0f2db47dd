"""RTMP chunk streams and AMF0, independent of sockets."""

from __future__ import annotations

import random
import struct

import pytest

from flowgraph.nodes.media.rtmp_proto import (
    COMMAND_AMF0,
    SET_CHUNK_SIZE,
    VIDEO,
    ChunkParser,
    RtmpProtocolError,
    amf0_decode_all,
    amf0_encode,
    encode_chunks,
)


def test_amf0_round_trip() -> None:
    values = ["connect", 1.0, {"app": "live", "tcUrl": "rtmp://x/live", "nested": {"a": True, "b": None}}, None,
              False, [1.0, "two"], "é" * 10]
    assert amf0_decode_all(amf0_encode(*values)) == values


def test_amf0_ecma_array_and_errors() -> None:
    ecma = b"\x08\x00\x00\x00\x01" + b"\x00\x05width" + b"\x00" + struct.pack(">d", 1280.0) + b"\x00\x00\x09"
    assert amf0_decode_all(ecma) == [{"width": 1280.0}]
    with pytest.raises(RtmpProtocolError):
        amf0_decode_all(b"\x02\x00\x10abc")  # string longer than the data
    with pytest.raises(RtmpProtocolError):
        amf0_decode_all(b"\x0d")  # unsupported marker


def _messages(parser: ChunkParser, stream: bytes, rng: random.Random) -> list[tuple[int, int, int, bytes]]:
    out = []
    pos = 0
    while pos < len(stream):
        n = rng.randint(1, 700)
        out += [(m.type_id, m.stream_id, m.timestamp, m.payload) for m in parser.feed(stream[pos:pos + n])]
        pos += n
    return out


def test_parser_reassembles_interleaved_chunks_fed_in_random_pieces() -> None:
    rng = random.Random(7)
    big = bytes(rng.getrandbits(8) for _ in range(10_000))
    wire = (encode_chunks(3, COMMAND_AMF0, 0, amf0_encode("connect", 1.0), 128)
            + encode_chunks(2, SET_CHUNK_SIZE, 0, (4096).to_bytes(4, "big"), 128)
            + encode_chunks(6, VIDEO, 1, big, 4096, timestamp=40)
            + encode_chunks(6, VIDEO, 1, big[:5000], 4096, timestamp=0x1000000 + 5))  # extended timestamp
    parser = ChunkParser()
    got = _messages(parser, wire, rng)
    assert [m[0] for m in got] == [COMMAND_AMF0, SET_CHUNK_SIZE, VIDEO, VIDEO]
    assert got[2] == (VIDEO, 1, 40, big)
    assert got[3][2] == 0x1000000 + 5 and got[3][3] == big[:5000]
    assert parser.chunk_size == 4096 and parser.bytes_read == len(wire)


def test_parser_compressed_headers_apply_deltas() -> None:
    # type 0 (ts 100, len 3, video, stream 1), then type 2 (delta 33) and type 3 (delta repeated)
    t0 = bytes([0x06]) + (100).to_bytes(3, "big") + (3).to_bytes(3, "big") + bytes([VIDEO]) + (1).to_bytes(4, "little")
    wire = t0 + b"abc" + bytes([0x86]) + (33).to_bytes(3, "big") + b"def" + bytes([0xC6]) + b"ghi"
    got = ChunkParser().feed(wire)
    assert [(m.timestamp, m.payload) for m in got] == [(100, b"abc"), (133, b"def"), (166, b"ghi")]


def test_parser_rejects_absurd_messages() -> None:
    header = bytes([0x06]) + bytes(3) + (1000).to_bytes(3, "big") + bytes([VIDEO]) + bytes(4)
    bad = bytes([0x06]) + bytes(3) + (0xFFFFFF).to_bytes(3, "big") + bytes([VIDEO]) + bytes(4)
    with pytest.raises(RtmpProtocolError):
        ChunkParser().feed(bad)
    assert ChunkParser().feed(header[:5]) == []  # incomplete header: waits for more
    with pytest.raises(RtmpProtocolError):
        ChunkParser().feed(bytes([0x46]) + bytes(7))  # a chunk stream cannot start with a type-1 header
