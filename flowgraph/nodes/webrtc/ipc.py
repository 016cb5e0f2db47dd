"""Framing between the graph process and viewer workers: one message = a JSON header plus optional bytes.

Wire format: 4-byte header length, 4-byte body length (big endian), header (UTF-8 JSON), body. The packet stream
crosses once per worker, over a Unix socket pair.
"""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import asdict
from typing import Any

from .abr import AbrPolicy
from .hub import HubConfig
from .session import SessionConfig

_PREFIX = struct.Struct("!II")
MAX_HEADER = 1 << 20
MAX_BODY = 64 << 20


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


def config_to_json(config: HubConfig) -> str:
    return json.dumps(asdict(config))


def config_from_json(text: str) -> HubConfig:
    data = json.loads(text)
    session = data.pop("session")
    delay = session.get("playout_delay")
    session["playout_delay"] = tuple(delay) if delay else None
    return HubConfig(session=SessionConfig(**session), abr=AbrPolicy(**data.pop("abr")), **data)
