"""WebSocket fan-out: every analytics message is encoded once and written to each subscribed client.

Per client: a bounded queue (oldest dropped first, counted) and a writer task that owns the backlog. While a
client keeps up, a message goes straight into its socket (no task switch: the fast path); once its socket
buffer passes ``high_water`` bytes, messages wait in its queue and its writer feeds them as the kernel takes
them. A stalled client therefore costs at most ``queue_size`` messages plus ``high_water`` bytes, and never
delays anybody else (a direct ``await ws.send_str`` loop would stall the whole broadcast on the first full
socket). Server-to-client frames are unmasked, so one encoded frame serves every client (RFC 6455 §5.2).

A client that reconnects with ``since=<seq>`` is first replayed what the stream's ring buffer still holds after
that number, then joins the live feed without a gap or a duplicate (messages are skipped by sequence number).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from flowgraph.messages import Analytics
from flowgraph.metrics import Samples

if TYPE_CHECKING:
    from aiohttp import web

    from .ring import AnalyticsRing

log = logging.getLogger("flowgraph.analytics.ws")
REPLAY_CHUNK = 64


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame carrying ``payload`` (already UTF-8)."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def _jsonable(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    return str(value)


_dumps = json.JSONEncoder(separators=(",", ":"), default=_jsonable).encode


def encode(msg: Analytics) -> bytes:
    """The wire form ``{"type", "payload", "seq"}`` as a ready-to-write text frame."""
    return text_frame(_dumps({"type": msg.type, "payload": msg.payload, "seq": msg.seq}).encode())


def notice(kind: str, payload: dict[str, Any]) -> bytes:
    """A control message (``gap``, ``pong``) sent only in answer to something the client asked for."""
    return text_frame(json.dumps({"type": kind, "payload": payload}, separators=(",", ":")).encode())


class WsClient:
    """One connected viewer: its filter, its bounded backlog and the task that writes it."""

    def __init__(self, hub: WsHub, ws: web.WebSocketResponse, transport: asyncio.Transport, stream_id: str,
                 types: frozenset[str] | None, peer: str = "") -> None:
        self.hub = hub
        self.ws = ws
        self.transport = transport
        self.stream_id = stream_id
        self.types = types
        self.peer = peer
        self.queue: deque[bytes] = deque(maxlen=hub.queue_size)
        self.last_seq = 0
        self.sent = 0
        self.dropped = 0
        self.replay_cursor: int | None = None
        self.replay_ring: AnalyticsRing | None = None
        self.connected_at = time.time()
        self.stalled_since: float | None = None
        self.closed = False
        self._wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._writer(), name=f"ws:{self.stream_id}:{self.peer}")

    async def stop(self) -> None:
        self.closed = True
        self._wake.set()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    def wants(self, msg: Analytics) -> bool:
        return (self.types is None or msg.type in self.types) and msg.seq > self.last_seq \
            and self.replay_cursor is None and not self.ws.closed

    def offer(self, seq: int, frame: bytes) -> None:
        """Hand one encoded message to this client: write now if it keeps up, else queue (drop oldest)."""
        self.last_seq = seq
        if not self.queue and self.transport.get_write_buffer_size() <= self.hub.high_water:
            if self.transport.is_closing():
                return
            self.transport.write(frame)
            self.sent += 1
            return
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
            self.hub.dropped += 1
        self.queue.append(frame)
        self._wake.set()

    def send_now(self, frame: bytes) -> None:
        """Queue a control frame behind what is already queued."""
        self.queue.append(frame)
        self._wake.set()

    def resume(self, ring: AnalyticsRing | None, since: int) -> None:
        """Replay the ring after ``since`` before going live; tell the client about what cannot be replayed."""
        if ring is None or since >= ring.last_seq:
            if ring is not None and since > ring.last_seq:
                self.send_now(notice("gap", {"stream_id": self.stream_id, "from_seq": since + 1,
                                             "to_seq": None, "reason": "unknown_seq", "last_seq": ring.last_seq}))
            self.last_seq = since if ring is None or since <= ring.last_seq else ring.last_seq
            return
        self.last_seq = since  # what the ring no longer holds is reported by the writer as a gap
        self.replay_cursor = since
        self.replay_ring = ring
        self._wake.set()

    # -- the writer task ------------------------------------------------------------------------------------
    async def _writer(self) -> None:
        transport = self.transport
        hub = self.hub
        delay = 0.002
        try:
            while not self.closed:
                if not self.queue and self.replay_cursor is None:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if transport.is_closing():
                    break
                if transport.get_write_buffer_size() > hub.low_water:
                    # the peer is not reading fast enough: wait for the kernel to take more (polled, only while
                    # backlogged — transports expose no public drain event)
                    now = time.monotonic()
                    if self.stalled_since is None:
                        self.stalled_since = now
                    elif hub.stall_timeout_s and now - self.stalled_since > hub.stall_timeout_s:
                        log.warning("ws client %s on %s stalled for %.0fs: disconnected", self.peer, self.stream_id,
                                    now - self.stalled_since)
                        hub.kicked += 1
                        transport.abort()
                        break
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.05)
                    continue
                self.stalled_since = None
                delay = 0.002
                if self.queue:
                    while self.queue and transport.get_write_buffer_size() <= hub.high_water:
                        transport.write(self.queue.popleft())
                        self.sent += 1
                else:
                    self._replay_chunk()
                await asyncio.sleep(0)  # let others run between chunks of a long backlog
        except (ConnectionError, RuntimeError) as exc:
            log.debug("ws writer for %s ended: %s", self.peer, exc)
        finally:
            self.closed = True

    def _replay_chunk(self) -> None:
        ring, cursor = self.replay_ring, self.replay_cursor
        if ring is None or cursor is None:
            self.replay_cursor = None
            return
        if cursor + 1 < ring.first_seq:  # evicted while we were replaying
            self.transport.write(notice("gap", {"stream_id": self.stream_id, "from_seq": cursor + 1,
                                                "to_seq": ring.first_seq - 1, "reason": "evicted"}))
            cursor = ring.first_seq - 1
        chunk = ring.since(cursor, limit=REPLAY_CHUNK)
        if not chunk:
            # caught up: from here on the live feed brings the rest (same loop turn: nothing slips between)
            self.replay_cursor = None
            self.replay_ring = None
            self.last_seq = max(self.last_seq, cursor)
            return
        for msg in chunk:
            if self.types is None or msg.type in self.types:
                self.transport.write(encode(msg))
                self.sent += 1
        self.replay_cursor = chunk[-1].seq
        self.last_seq = chunk[-1].seq


class WsHub:
    """The clients of every stream and the fan-out between them."""

    def __init__(self, *, queue_size: int = 256, high_water: int = 256 * 1024, max_clients: int = 10_000,
                 max_per_stream: int = 5_000, stall_timeout_s: float = 0.0) -> None:
        self.queue_size = queue_size
        self.high_water = high_water
        self.low_water = high_water // 2
        self.max_clients = max_clients
        self.max_per_stream = max_per_stream
        self.stall_timeout_s = stall_timeout_s
        self._clients: dict[str, set[WsClient]] = {}
        self.total = 0
        self.published = 0
        self.dropped = 0
        self.kicked = 0
        self.connections = 0
        self.refused = 0
        #: Seconds one message took to reach every client's socket (or queue): the fan-out itself.
        self.fanout_time = Samples(256)

    def count(self, stream_id: str | None = None) -> int:
        if stream_id is None:
            return self.total
        return len(self._clients.get(stream_id, ()))

    def admit(self, stream_id: str) -> str | None:
        """Why a new client for ``stream_id`` cannot be taken (``None`` when it can)."""
        if self.total >= self.max_clients:
            return f"server is at its limit of {self.max_clients} WebSocket clients"
        if self.count(stream_id) >= self.max_per_stream:
            return f"stream {stream_id!r} is at its limit of {self.max_per_stream} WebSocket clients"
        return None

    def add(self, client: WsClient) -> None:
        self._clients.setdefault(client.stream_id, set()).add(client)
        self.total += 1
        self.connections += 1
        client.start()

    async def remove(self, client: WsClient) -> None:
        members = self._clients.get(client.stream_id)
        if members is not None and client in members:
            members.discard(client)
            self.total -= 1
            if not members:
                del self._clients[client.stream_id]
        await client.stop()

    def publish(self, msg: Analytics) -> int:
        """Send ``msg`` to every client of its stream that wants it; returns how many were offered it."""
        self.published += 1
        members = self._clients.get(msg.stream_id)
        if not members:
            return 0
        frame: bytes | None = None
        offered = 0
        started = time.perf_counter()
        for client in tuple(members):
            if client.closed or not client.wants(msg):
                continue
            if frame is None:
                frame = encode(msg)
            try:
                client.offer(msg.seq, frame)
            except (ConnectionError, RuntimeError) as exc:  # a broken transport is that client's problem only
                log.debug("ws client %s: %s", client.peer, exc)
                client.closed = True
                continue
            offered += 1
        self.fanout_time.add(time.perf_counter() - started)
        return offered

    async def close_all(self, code: int = 1001, message: bytes = b"server shutting down") -> None:
        for members in list(self._clients.values()):
            for client in list(members):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.ws.close(code=code, message=message), 1.0)
                await self.remove(client)

    def stats(self) -> dict[str, Any]:
        queued = sum(len(c.queue) for members in self._clients.values() for c in members)
        return {"clients": self.total, "connections": self.connections, "published": self.published,
                "dropped": self.dropped, "queued": queued, "kicked": self.kicked, "refused": self.refused,
                "fanout_ms": self.fanout_time.summary_ms(), "streams": {s: len(m) for s, m in self._clients.items()}}

    def clients(self, stream_id: str) -> list[WsClient]:
        return list(self._clients.get(stream_id, ()))
