"""Framing between the graph process and viewer workers: one message = a JSON header plus optional bytes.

Wire format: 4-byte header length, 4-byte body length (big endian), header (UTF-8 JSON), body. The packet stream
crosses once per worker, over a Unix socket pair.

A :class:`~flowgraph.messages.Packet` crosses whole: :func:`encode_packet` and :func:`decode_packet` are the one pair
that writes and reads it, field by field from the dataclass itself (bytes fields in the body, the rest in the
header), so a field added to ``Packet`` crosses too — or fails loudly here if it cannot be represented.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import struct
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from flowgraph.messages import Packet

from .abr import AbrPolicy
from .hub import HubConfig
from .session import SessionConfig

_PREFIX = struct.Struct("!II")
MAX_HEADER = 1 << 20
MAX_BODY = 64 << 20

#: Packet fields that never cross a process boundary (a CUDA event belongs to its process; H.264 has none).
_LOCAL_FIELDS = frozenset({"cuda_event"})
_BYTES_FIELDS = ("data", "config")


def encode(header: dict[str, Any], body: bytes = b"") -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    return _PREFIX.pack(len(raw), len(body)) + raw + body


async def read(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    """The next message; raises ``asyncio.IncompleteReadError`` at end of stream."""
    head_len, body_len = _PREFIX.unpack(await reader.readexactly(_PREFIX.size))
    if head_len > MAX_HEADER or body_len > MAX_BODY:
        raise ValueError(f"IPC message too large ({head_len} + {body_len} bytes)")
    header = json.loads(await reader.readexactly(head_len))
    body = await reader.readexactly(body_len) if body_len else b""
    return header, body


# -- packets --------------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class PacketDelivery:
    """What the graph process tells a worker per packet: the packet, its rendition, and whether packets were lost
    on the way to this worker just before it (its socket was full)."""

    packet: Packet
    rendition: str = "src"
    lost_before: bool = False


def encode_packet(delivery: PacketDelivery) -> bytes:
    packet = delivery.packet
    fields: dict[str, Any] = {}
    body: list[bytes] = []
    lengths: dict[str, int] = {}
    for f in dataclasses.fields(packet):
        name = f.name
        value = getattr(packet, name)
        if name in _LOCAL_FIELDS:
            continue
        if name in _BYTES_FIELDS:
            if value is not None:
                lengths[name] = len(value)
                body.append(bytes(value))
        elif isinstance(value, Fraction):
            fields[name] = [value.numerator, value.denominator]
        elif value is None or isinstance(value, bool | int | float | str):
            fields[name] = value
        elif isinstance(value, tuple):
            fields[name] = [list(item) if isinstance(item, tuple) else item for item in value]
        else:
            raise TypeError(f"Packet.{name} holds a {type(value).__name__}, which the viewer-worker IPC cannot "
                            f"carry (flowgraph/nodes/webrtc/ipc.py)")
    header = {"op": "packet", "rendition": delivery.rendition, "lost_before": delivery.lost_before,
              "packet": fields, "bytes": lengths}
    return encode(header, b"".join(body))


def decode_packet(header: dict[str, Any], body: bytes) -> PacketDelivery:
    fields: dict[str, Any] = dict(header["packet"])
    offset = 0
    for name in _BYTES_FIELDS:  # in the order encode_packet wrote them
        length = header["bytes"].get(name)
        if length is not None:
            fields[name] = body[offset:offset + length]
            offset += length
    for name, value in fields.items():
        if name == "time_base" and value is not None:
            fields[name] = Fraction(*value)
        elif isinstance(value, list):  # tuples (of tuples) were written as JSON arrays
            fields[name] = tuple(tuple(item) if isinstance(item, list) else item for item in value)
    return PacketDelivery(Packet(**fields), header.get("rendition", "src"), bool(header.get("lost_before")))


# -- configuration --------------------------------------------------------------------------------------------------
def config_to_json(config: HubConfig) -> str:
    return json.dumps(asdict(config))


def config_from_json(text: str) -> HubConfig:
    data = json.loads(text)
    session = data.pop("session")
    delay = session.get("playout_delay")
    session["playout_delay"] = tuple(delay) if delay else None
    return HubConfig(session=SessionConfig(**session), abr=AbrPolicy(**data.pop("abr")), **data)
