"""Light receive-only WebRTC viewers for the benchmarks: aiortc clients whose receivers only count RTP packets
(no depacketising, no decoding), a few client processes holding N of them, and the loop step that starts them
for one viewer count and waits until they receive.

A client process alone: ``python tools/bench/_light_viewers.py KIND BASE_URL COUNT`` (KIND ``janus``: Janus's
HTTP API; anything else: ``POST /api/stream/connect``); it prints ``{"receiving": n, "packets": n}`` each second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _webrtc_common import PY, Proc

CLIENT_PROCS = 4
#: Stream the light viewers join (the soak run points them at platform.yaml's "main").
STREAM = os.environ.get("BENCH_STREAM", "bench")


async def light_viewer(kind: str, base: str, counter: list[int]) -> Any:
    """One receive-only aiortc viewer whose receiver only counts RTP packets (no depacketising, no decoding).

    ``kind`` "janus": Janus's HTTP API and streaming mountpoint 1 at ``base``; otherwise flowgraph's (or the
    minimal server's) ``POST /api/stream/connect``.
    """
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

    def count_only(transceiver: Any) -> None:
        async def handle(packet: Any, arrival_time_ms: int) -> None:
            counter[0] += 1

        transceiver.receiver._handle_rtp_packet = handle

    async with aiohttp.ClientSession() as http:
        if kind == "janus":
            async def post(url: str, body: dict[str, Any]) -> Any:
                async with http.post(url, json={**body, "transaction": os.urandom(6).hex()}) as resp:
                    return await resp.json()

            session = (await post(base, {"janus": "create"}))["data"]["id"]
            handle_id = (await post(f"{base}/{session}", {"janus": "attach",
                                                          "plugin": "janus.plugin.streaming"}))["data"]["id"]
            hurl = f"{base}/{session}/{handle_id}"
            await post(hurl, {"janus": "message", "body": {"request": "watch", "id": 1}})
            offer = None
            while offer is None:
                async with http.get(f"{base}/{session}?maxev=5") as resp:
                    events = await resp.json()
                for event in events if isinstance(events, list) else [events]:
                    offer = offer or event.get("jsep")
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
            count_only(pc.getTransceivers()[0])
            await pc.setLocalDescription(await pc.createAnswer())
            await post(hurl, {"janus": "message", "body": {"request": "start"},
                              "jsep": {"type": "answer", "sdp": pc.localDescription.sdp}})

            async def keepalive() -> None:
                async with aiohttp.ClientSession() as keep:
                    while True:
                        with contextlib.suppress(Exception):
                            async with keep.get(f"{base}/{session}?maxev=5") as resp:
                                await resp.read()
                        await asyncio.sleep(0.5)

            pc._keepalive = asyncio.ensure_future(keepalive())  # type: ignore[attr-defined]
        else:
            transceiver = pc.addTransceiver("video", direction="recvonly")
            count_only(transceiver)
            await pc.setLocalDescription(await pc.createOffer())
            async with http.post(f"{base}/api/stream/connect", json={"offer": pc.localDescription.sdp,
                                                                     "stream_id": STREAM}) as resp:
                body = await resp.json()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body["answer"], type="answer"))
    return pc


async def client_main(kind: str, base: str, count: int) -> None:
    """Child process: ``count`` light viewers; prints how many receive, as a JSON line a second."""
    import aioice.ice

    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [*original(use_ipv4, use_ipv6), "127.0.0.1"]
    counters = [[0] for _ in range(count)]
    pcs = []
    for i in range(count):
        pcs.append(await light_viewer(kind, base, counters[i]))
    print(json.dumps({"connected": count}), flush=True)
    while True:
        await asyncio.sleep(1.0)
        print(json.dumps({"receiving": sum(1 for c in counters if c[0] > 0),
                          "packets": sum(c[0] for c in counters)}), flush=True)


class Clients:
    """N light viewers spread over a few client processes."""

    def __init__(self, kind: str, base: str, count: int, tmp: Path) -> None:
        self.procs: list[Proc] = []
        self.logs: list[Path] = []
        per = [count // CLIENT_PROCS + (1 if i < count % CLIENT_PROCS else 0) for i in range(CLIENT_PROCS)]
        for i, n in enumerate(p for p in per if p):
            log = tmp / f"client-{kind}-{count}-{i}.log"
            self.logs.append(log)
            self.procs.append(Proc([PY, __file__, kind, base, str(n)], log=str(log)))

    def receiving(self) -> int:
        total = 0
        for log in self.logs:
            lines = [line for line in log.read_text().splitlines() if line.startswith("{\"receiving\"")]
            if lines:
                total += json.loads(lines[-1])["receiving"]
        return total

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


@contextlib.asynccontextmanager
async def light_viewers(kind: str, base: str, count: int, tmp: Path) -> AsyncIterator[int]:
    """``count`` light viewers for the length of the block; yields how many receive.

    Waits until all of them receive (at most 30 s + 0.3 s a viewer), then 2 s more for the server to settle.
    """
    clients = Clients(kind, base, count, tmp)
    try:
        deadline = time.monotonic() + 30 + count * 0.3
        for _ in range(int(deadline - time.monotonic()) * 2):
            if clients.receiving() >= count:
                break
            await asyncio.sleep(0.5)
        receiving = clients.receiving()
        await asyncio.sleep(2)
        yield receiving
    finally:
        clients.stop()


if __name__ == "__main__":
    if len(sys.argv) == 4:
        asyncio.run(client_main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    else:
        print(__doc__)
