"""The RTMP wire format, server side: handshake, chunk streams, AMF0 — just what a publisher (OBS, ffmpeg) needs.

Reference: Adobe's RTMP specification (handshake §5.2, chunking §5.3, protocol control messages §5.4, commands §7)
and the AMF0 specification. The handshake is the plain one (version bytes zero), which both FFmpeg's and OBS's
librtmp accept from a server.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

HANDSHAKE_SIZE = 1536

# message types
SET_CHUNK_SIZE = 1
ABORT = 2
ACK = 3
USER_CONTROL = 4
WINDOW_ACK_SIZE = 5
SET_PEER_BANDWIDTH = 6
AUDIO = 8
VIDEO = 9
DATA_AMF3 = 15
COMMAND_AMF3 = 17
DATA_AMF0 = 18
COMMAND_AMF0 = 20

MAX_MESSAGE_BYTES = 8 << 20  # a single video frame larger than this is not a sane publisher
#: Before the stream key is checked a peer only sends commands: small messages on a few chunk streams.
PRE_PUBLISH_MESSAGE_BYTES = 64 << 10
PRE_PUBLISH_BUFFERED_BYTES = 256 << 10
#: Chunk streams one connection may open (OBS and FFmpeg use fewer than ten).
MAX_CHUNK_STREAMS = 64
#: AMF0 objects and arrays nest at most this deep; a message holds at most this many values.
MAX_AMF_DEPTH = 32
MAX_AMF_VALUES = 10_000


class RtmpProtocolError(Exception):
    """The peer broke the RTMP protocol (bad handshake, absurd sizes)."""


async def server_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """C0/C1 → S0/S1/S2 → C2, with S1's version bytes zero (the plain handshake)."""
    c0c1 = await reader.readexactly(1 + HANDSHAKE_SIZE)
    if c0c1[0] not in (3, 6):
        raise RtmpProtocolError(f"unsupported RTMP version byte {c0c1[0]}")
    s1 = struct.pack(">I", int(time.monotonic() * 1000) & 0xFFFFFFFF) + b"\x00" * 4 + os.urandom(HANDSHAKE_SIZE - 8)
    writer.write(b"\x03" + s1 + c0c1[1:])
    await writer.drain()
    await reader.readexactly(HANDSHAKE_SIZE)


@dataclass
class RtmpMessage:
    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes
    #: ``time.time()`` when the last byte of the message was read from the socket.
    t_received: float = 0.0


@dataclass
class _ChunkState:
    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False
    parts: list[bytes] = field(default_factory=list)
    received: int = 0


class ChunkParser:
    """Reassembles RTMP messages from the interleaved chunk streams of one connection.

    Incremental and synchronous: :meth:`feed` takes whatever the socket delivered and returns the messages it
    completed, so a whole socket read is parsed in one go instead of awaiting every chunk header.
    """

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES, max_buffered_bytes: int | None = None) -> None:
        self.chunk_size = 128
        self.bytes_read = 0
        #: Largest message accepted, and most bytes held for incomplete messages (raised once published).
        self.max_message_bytes = max_message_bytes
        self.max_buffered_bytes = max_buffered_bytes if max_buffered_bytes is not None else 4 * max_message_bytes
        self._buf = bytearray()
        self._streams: dict[int, _ChunkState] = {}
        self._partial = 0  # bytes held in incomplete messages across chunk streams

    def abort(self, csid: int) -> None:
        state = self._streams.get(csid)
        if state is not None:
            self._partial -= state.received
            state.parts.clear()
            state.received = 0

    def feed(self, data: bytes) -> list[RtmpMessage]:
        """Consume ``data``; return the messages completed by it. Chunk-size changes apply at once (the
        protocol requires them to take effect from the next chunk)."""
        self.bytes_read += len(data)
        self._buf += data
        messages: list[RtmpMessage] = []
        pos = 0
        buf = self._buf
        now = time.time()
        while True:
            used, message = self._chunk(buf, pos, now)
            if used == 0:
                break
            pos += used
            if message is not None:
                messages.append(message)
                if message.type_id == SET_CHUNK_SIZE and len(message.payload) >= 4:
                    size = int.from_bytes(message.payload[:4], "big") & 0x7FFFFFFF
                    if not 1 <= size <= MAX_MESSAGE_BYTES:
                        raise RtmpProtocolError(f"chunk size {size}")
                    self.chunk_size = size
        del buf[:pos]
        if len(buf) + self._partial > self.max_buffered_bytes:
            raise RtmpProtocolError(f"{len(buf) + self._partial} bytes buffered for incomplete messages "
                                    f"(limit {self.max_buffered_bytes})")
        return messages

    def _chunk(self, buf: bytearray, pos: int, now: float) -> tuple[int, RtmpMessage | None]:
        """Parse one chunk at ``pos``: ``(bytes used, completed message)``; ``(0, None)`` when incomplete."""
        end = len(buf)
        if pos >= end:
            return 0, None
        start = pos
        first = buf[pos]
        pos += 1
        fmt, csid = first >> 6, first & 0x3F
        if csid == 0:
            if pos + 1 > end:
                return 0, None
            csid = 64 + buf[pos]
            pos += 1
        elif csid == 1:
            if pos + 2 > end:
                return 0, None
            csid = 64 + buf[pos] + buf[pos + 1] * 256
            pos += 2
        state = self._streams.get(csid)
        if state is None:
            if fmt != 0:
                raise RtmpProtocolError(f"chunk stream {csid} starts with a type {fmt} header")
            if len(self._streams) >= MAX_CHUNK_STREAMS:
                raise RtmpProtocolError(f"more than {MAX_CHUNK_STREAMS} chunk streams")
            state = self._streams[csid] = _ChunkState()
        header_len = (11, 7, 3, 0)[fmt]
        if pos + header_len > end:
            return 0, None
        ts_field = int.from_bytes(buf[pos:pos + 3], "big") if fmt <= 2 else 0
        extended = ts_field == 0xFFFFFF if fmt <= 2 else state.extended
        ext_pos = pos + header_len
        if extended and ext_pos + 4 > end:
            return 0, None
        length = int.from_bytes(buf[pos + 3:pos + 6], "big") if fmt <= 1 else state.length
        if length > self.max_message_bytes:
            raise RtmpProtocolError(f"message of {length} bytes (limit {self.max_message_bytes} here)")
        received = 0 if fmt <= 1 else state.received
        size = min(self.chunk_size, length - received)
        body = ext_pos + (4 if extended else 0)
        if body + size > end:
            return 0, None
        # the whole chunk is here: commit it to the chunk stream's state
        if fmt <= 1:
            state.length = length
            state.type_id = buf[pos + 6]
            self._partial -= state.received
            state.parts.clear()
            state.received = 0
        if fmt == 0:
            state.stream_id = int.from_bytes(buf[pos + 7:pos + 11], "little")
        if fmt <= 2:
            state.extended = extended
            if extended:
                ts_field = int.from_bytes(buf[ext_pos:ext_pos + 4], "big")
            if fmt == 0:
                state.timestamp, state.delta = ts_field, 0
            else:
                state.delta = ts_field
                state.timestamp = (state.timestamp + ts_field) & 0xFFFFFFFF
        elif state.received == 0:
            state.timestamp = (state.timestamp + state.delta) & 0xFFFFFFFF
        if size > 0:
            state.parts.append(bytes(buf[body:body + size]))
            state.received += size
            self._partial += size
        used = body + size - start
        if state.received < state.length:
            return used, None
        payload = b"".join(state.parts)
        self._partial -= state.received
        state.parts.clear()
        state.received = 0
        return used, RtmpMessage(state.type_id, state.stream_id, state.timestamp, payload, now)


def encode_chunks(csid: int, type_id: int, stream_id: int, payload: bytes, chunk_size: int,
                  timestamp: int = 0) -> bytes:
    """One message as a type-0 chunk followed by type-3 continuation chunks (csid < 64)."""
    ts = min(timestamp, 0xFFFFFF)
    header = bytes([csid & 0x3F]) + ts.to_bytes(3, "big") + len(payload).to_bytes(3, "big") + bytes([type_id]) \
        + stream_id.to_bytes(4, "little")
    extended = timestamp.to_bytes(4, "big") if timestamp >= 0xFFFFFF else b""
    out = [header, extended, payload[:chunk_size]]
    for pos in range(chunk_size, len(payload), chunk_size):
        out += [bytes([0xC0 | (csid & 0x3F)]), extended, payload[pos:pos + chunk_size]]
    return b"".join(out)


# -- AMF0 ------------------------------------------------------------------------------------------------------

class _Undefined:
    def __repr__(self) -> str:
        return "undefined"


UNDEFINED = _Undefined()


def amf0_decode_all(data: bytes) -> list[Any]:
    """Every AMF0 value in ``data``; raises RtmpProtocolError on malformed input."""
    values: list[Any] = []
    pos = 0
    budget = [MAX_AMF_VALUES]
    try:
        while pos < len(data):
            value, pos = _decode(data, pos, 0, budget)
            values.append(value)
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise RtmpProtocolError(f"malformed AMF0 at byte {pos}") from exc
    return values


def _decode_string(data: bytes, pos: int, long: bool = False) -> tuple[str, int]:
    n_bytes = 4 if long else 2
    n = int.from_bytes(data[pos:pos + n_bytes], "big")
    pos += n_bytes
    if pos + n > len(data):
        raise IndexError("string past end")
    return data[pos:pos + n].decode("utf-8", "replace"), pos + n


def _decode_object(data: bytes, pos: int, depth: int, budget: list[int]) -> tuple[dict[str, Any], int]:
    obj: dict[str, Any] = {}
    while True:
        key, pos = _decode_string(data, pos)
        if key == "" and data[pos] == 0x09:
            return obj, pos + 1
        obj[key], pos = _decode(data, pos, depth + 1, budget)


def _decode(data: bytes, pos: int, depth: int, budget: list[int]) -> tuple[Any, int]:
    if depth > MAX_AMF_DEPTH:
        raise RtmpProtocolError(f"AMF0 values nested deeper than {MAX_AMF_DEPTH}")
    budget[0] -= 1
    if budget[0] < 0:
        raise RtmpProtocolError(f"more than {MAX_AMF_VALUES} AMF0 values in one message")
    marker = data[pos]
    pos += 1
    if marker == 0x00:
        return struct.unpack(">d", data[pos:pos + 8])[0], pos + 8
    if marker == 0x01:
        return data[pos] != 0, pos + 1
    if marker == 0x02:
        return _decode_string(data, pos)
    if marker == 0x03:
        return _decode_object(data, pos, depth, budget)
    if marker in (0x05, 0x06):
        return (None if marker == 0x05 else UNDEFINED), pos
    if marker == 0x08:  # ECMA array: a count, then like an object
        return _decode_object(data, pos + 4, depth, budget)
    if marker == 0x0A:
        count = int.from_bytes(data[pos:pos + 4], "big")
        pos += 4
        items = []
        if count > len(data) - pos:  # every value takes at least one byte
            raise IndexError("array count past end")
        for _ in range(count):
            item, pos = _decode(data, pos, depth + 1, budget)
            items.append(item)
        return items, pos
    if marker == 0x0B:  # date: double + timezone
        return struct.unpack(">d", data[pos:pos + 8])[0], pos + 10
    if marker == 0x0C:
        return _decode_string(data, pos, long=True)
    raise RtmpProtocolError(f"unsupported AMF0 marker 0x{marker:02x}")


def amf0_encode(*values: Any) -> bytes:
    return b"".join(_encode(v) for v in values)


def _encode_key(key: str) -> bytes:
    raw = key.encode()
    return len(raw).to_bytes(2, "big") + raw


def _encode(value: Any) -> bytes:
    if value is None:
        return b"\x05"
    if isinstance(value, bool):
        return b"\x01" + (b"\x01" if value else b"\x00")
    if isinstance(value, int | float):
        return b"\x00" + struct.pack(">d", float(value))
    if isinstance(value, str):
        raw = value.encode()
        if len(raw) > 0xFFFF:
            return b"\x0c" + len(raw).to_bytes(4, "big") + raw
        return b"\x02" + len(raw).to_bytes(2, "big") + raw
    if isinstance(value, dict):
        return b"\x03" + b"".join(_encode_key(k) + _encode(v) for k, v in value.items()) + b"\x00\x00\x09"
    if isinstance(value, list | tuple):
        return b"\x0a" + len(value).to_bytes(4, "big") + b"".join(_encode(v) for v in value)
    raise TypeError(f"cannot encode {type(value).__name__} as AMF0")
