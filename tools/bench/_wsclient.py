"""Lean WebSocket clients for the benchmarks: asyncio protocols that stamp each message the moment its bytes
arrive, and read ``payload.timestamp`` and ``seq`` without a JSON parse (so a few processes can carry a thousand
clients). The same clients measure flowgraph's ws_out and the Node.js ``ws`` baseline.

Run as a script, it is one client process of a benchmark::

    python tools/bench/_wsclient.py --port 9000 --path /stream/cam1/analytics --clients 500 --duration 10 \
        --warmup 2 --out samples.bin

and writes the latencies (seconds, float64) to ``--out`` and a JSON summary line to stdout.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import json
import os
import struct
import sys
import time
from dataclasses import dataclass, field


def _number_after(payload: bytes, key: bytes) -> float | None:
    i = payload.find(key)
    if i < 0:
        return None
    i += len(key)
    j = i
    while j < len(payload) and payload[j] not in b",}":
        j += 1
    try:
        return float(payload[i:j])
    except ValueError:
        return None


@dataclass
class Tally:
    """What one process's clients saw."""

    latencies: array.array = field(default_factory=lambda: array.array("d"))
    messages: int = 0
    gaps: int = 0  # messages missing between consecutive seqs of one client
    closed: int = 0
    connected: int = 0


class LatencyClient(asyncio.Protocol):
    def __init__(self, host: str, port: int, path: str, tally: Tally, measure_from: float) -> None:
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self.tally = tally
        self.measure_from = measure_from
        self.buffer = bytearray()
        self.upgraded = False
        self.last_seq: int | None = None
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.tally.closed += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the upgrade"))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(bytes(buf[:200]).decode(errors="replace")))
                return
            del buf[: end + 4]
            self.upgraded = True
            self.tally.connected += 1
            self.ready.set_result(None)
        while len(buf) >= 2:
            opcode = buf[0] & 0x0F
            length = buf[1] & 0x7F
            header = 2
            if length == 126:
                if len(buf) < 4:
                    return
                length = struct.unpack_from("!H", buf, 2)[0]
                header = 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length = struct.unpack_from("!Q", buf, 2)[0]
                header = 10
            if len(buf) < header + length:
                return
            payload = bytes(buf[header: header + length])
            del buf[: header + length]
            if opcode == 1:
                self._message(payload, now)
            elif opcode == 9 and self.transport is not None:  # ping: answer with a masked pong
                mask = os.urandom(4)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)

    def _message(self, payload: bytes, now: float) -> None:
        seq = _number_after(payload, b'"seq":')
        if seq is not None:
            if self.last_seq is not None and seq > self.last_seq + 1:
                self.tally.gaps += int(seq - self.last_seq - 1)
            self.last_seq = int(seq)
        if now < self.measure_from:
            return
        stamp = _number_after(payload, b'"timestamp":')
        if stamp is not None:
            self.tally.latencies.append(now - stamp)
            self.tally.messages += 1


async def run(host: str, port: int, path: str, clients: int, duration: float, warmup: float,
              wait_for_go: bool = False) -> Tally:
    """Connect ``clients`` (a few at a time), then measure for ``duration`` seconds after ``warmup``.

    With ``wait_for_go``, print ``connected`` once every client is upgraded and read the unix time to start
    measuring from stdin — so several client processes measure the same steady state, not the connection storm.
    """
    loop = asyncio.get_running_loop()
    tally = Tally()
    protocols: list[LatencyClient] = []
    for start in range(0, clients, 50):
        batch = []
        for _ in range(min(50, clients - start)):
            _, protocol = await loop.create_connection(
                lambda: LatencyClient(host, port, path, tally, float("inf")), host, port)
            batch.append(protocol)
        await asyncio.gather(*(p.ready for p in batch))
        protocols.extend(batch)
    if wait_for_go:
        print("connected", flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        measure_from = float(line)
    else:
        measure_from = time.time() + warmup
    for protocol in protocols:
        protocol.measure_from = measure_from
    remaining = measure_from + duration - time.time()
    await asyncio.sleep(max(0.0, remaining))
    for protocol in protocols:
        if protocol.transport is not None:
            protocol.transport.abort()
    await asyncio.sleep(0.05)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/stream/cam1/analytics")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--wait-for-go", action="store_true", help="print 'connected', read the start time on stdin")
    args = parser.parse_args()
    tally = asyncio.run(run(args.host, args.port, args.path, args.clients, args.duration, args.warmup,
                            args.wait_for_go))
    with open(args.out, "wb") as handle:
        tally.latencies.tofile(handle)
    print(json.dumps({"messages": tally.messages, "gaps": tally.gaps, "connected": tally.connected,
                      "closed": tally.closed}), flush=True)


if __name__ == "__main__":
    main()
