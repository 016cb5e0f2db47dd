"""Framing on the Unix socket between the graph and a worker: ``length (4 bytes) | kind (1 byte) | body``.

File descriptors (a new frame ring) ride beside a record with ``SCM_RIGHTS``. The graph side is asyncio on a
non-blocking socket; the worker side blocks (it has nothing else to do).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import deque
from enum import IntEnum

_HEADER = struct.Struct(">IB")
MAX_RECORD = 1 << 30


class Kind(IntEnum):
    # graph -> worker
    INIT = 1
    CALL = 2
    RING = 3
    EXIT = 4
    # worker -> graph
    READY = 11
    ANSWER = 12
    ERROR = 13
    FAILED = 14


def record(kind: Kind, body: bytes = b"") -> bytes:
    return _HEADER.pack(len(body), kind) + body


class Closed(ConnectionError):
    """The other side went away."""


async def send(sock: socket.socket, kind: Kind, body: bytes = b"", fds: list[int] | None = None) -> None:
    """Graph side: write one record (with ``fds`` attached to its first byte)."""
    data = record(kind, body)
    loop = asyncio.get_running_loop()
    if fds:
        # the socket is idle between calls (one call in flight), so this small send goes out at once
        while True:
            try:
                sent = socket.send_fds(sock, [data], fds)
                break
            except BlockingIOError:
                await asyncio.sleep(0.001)
        data = data[sent:]
    if data:
        await loop.sock_sendall(sock, data)


async def receive(sock: socket.socket) -> tuple[Kind, bytes]:
    """Graph side: read one record."""
    loop = asyncio.get_running_loop()
    header = await _exactly(loop, sock, _HEADER.size)
    length, kind = _HEADER.unpack(header)
    if length > MAX_RECORD:
        raise Closed(f"record of {length} bytes from the worker")
    body = await _exactly(loop, sock, length) if length else b""
    return Kind(kind), body


async def _exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    buffer = bytearray(n)
    view = memoryview(buffer)
    got = 0
    while got < n:
        count = await loop.sock_recv_into(sock, view[got:])
        if count == 0:
            raise Closed("the worker closed its socket")
        got += count
    return bytes(buffer)


class BlockingLink:
    """Worker side: blocking reads that keep any file descriptors that arrive, in order."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self.fds: deque[int] = deque()

    def send(self, kind: Kind, body: bytes = b"") -> None:
        self.sock.sendall(record(kind, body))

    def receive(self) -> tuple[Kind, bytes]:
        header = self._exactly(_HEADER.size)
        length, kind = _HEADER.unpack(header)
        return Kind(kind), self._exactly(length)

    def _exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            data, fds, _, _ = socket.recv_fds(self.sock, max(65536, n - len(self._buffer)), 4)
            if not data:
                raise Closed("the graph closed its socket")
            self.fds.extend(fds)
            self._buffer += data
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out
