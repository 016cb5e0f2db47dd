"""Server CPU and memory per viewer: flowgraph passthrough (in-process and ``workers: 2``), the minimal aiortc
passthrough server, the naive one-encoder-per-viewer design, and Janus, measured in the same run.

Viewers are light receive-only aiortc clients in separate processes: their receivers only count RTP packets
(no depacketising, no decoding). The publisher sends 720p30 at 1.6 Mbit/s. For each viewer count the server's
process tree (graph process + workers) is sampled for ``--seconds``; per-viewer CPU = (CPU with N viewers −
CPU with none) / N, in % of one core. The host's other load shows up in these figures; read them as a comparison
made side by side, not as absolutes.

    python tools/bench/webrtc_viewers.py [--counts 1,8,32,64,128] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import record, unavailable_row
from _webrtc_common import (
    PY,
    Proc,
    cpu_seconds,
    flowgraph_server,
    janus_server,
    minimal_server,
    rss_mib,
    start_publisher,
    tree,
    wait_stream,
)

CLIENT_PROCS = 4
#: Stream the light viewers join (the soak run points them at platform.yaml's "main").
STREAM = os.environ.get("BENCH_STREAM", "bench")


# -- the light viewers (run as child processes: --client) ---------------------------------------------------
async def light_viewer(kind: str, base: str, counter: list[int]) -> Any:
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


# -- the measuring side -------------------------------------------------------------------------------------
class Clients:
    """N light viewers spread over a few client processes."""

    def __init__(self, kind: str, base: str, count: int, tmp: Path) -> None:
        self.procs: list[Proc] = []
        self.logs: list[Path] = []
        per = [count // CLIENT_PROCS + (1 if i < count % CLIENT_PROCS else 0) for i in range(CLIENT_PROCS)]
        for i, n in enumerate(p for p in per if p):
            log = tmp / f"client-{kind}-{count}-{i}.log"
            self.logs.append(log)
            self.procs.append(Proc([PY, __file__, "--client", kind, base, str(n)], log=str(log)))

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


async def measure(pids: list[int], seconds: float) -> tuple[float, float]:
    """(% of one core, RSS MiB) of the server process trees over ``seconds``."""
    procs = [p for pid in pids for p in tree(pid)]
    start_cpu, start = cpu_seconds(procs), time.monotonic()
    await asyncio.sleep(seconds)
    procs = [p for pid in pids for p in tree(pid)]
    used = cpu_seconds(procs) - start_cpu
    return 100.0 * used / (time.monotonic() - start), rss_mib(procs)


async def run_case(name: str, counts: list[int], seconds: float, tmp: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if name == "janus":
        server: Any = janus_server(tmp=tmp)
    elif name in ("minimal", "naive-encode"):
        server = minimal_server("encode" if name == "naive-encode" else "passthrough", tmp=tmp)
    else:
        server = flowgraph_server("passthrough", workers=2 if name.endswith("workers2") else 0, tmp=tmp)
    kind = "janus" if name == "janus" else "http"
    async with server as (base, publish_url, proc):
        publisher = start_publisher(publish_url)
        try:
            if name.startswith("flowgraph"):
                await wait_stream(base, "bench")
            else:
                await asyncio.sleep(4)
            idle_cpu, idle_rss = await measure([proc.pid], seconds / 2)
            rows.append({"case": name, "viewers": 0, "cpu_pct": idle_cpu, "rss_mib": idle_rss})
            for count in counts:
                clients = Clients(kind, base, count, tmp)
                try:
                    deadline = time.monotonic() + 30 + count * 0.3
                    for _ in range(int(deadline - time.monotonic()) * 2):
                        if clients.receiving() >= count:
                            break
                        await asyncio.sleep(0.5)
                    receiving = clients.receiving()
                    await asyncio.sleep(2)
                    cpu, rss = await measure([proc.pid], seconds)
                    rows.append({"case": name, "viewers": count, "receiving": receiving, "cpu_pct": cpu,
                                 "rss_mib": rss,
                                 "cpu_per_viewer_pct": (cpu - idle_cpu) / count,
                                 "rss_per_viewer_mib": (rss - idle_rss) / count})
                    print(f"[{name}] {rows[-1]}", file=sys.stderr)
                finally:
                    clients.stop()
                await asyncio.sleep(3 if name != "janus" else 2)
        finally:
            publisher.stop()
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\nserver CPU and memory per light viewer (720p30, 1.6 Mbit/s; % of one core)")
    print(f"{'server':<22}{'viewers':>8}{'receiving':>10}{'CPU %':>8}{'per viewer %':>14}{'RSS MiB':>9}"
          f"{'per viewer MiB':>16}")
    for r in rows:
        per = r.get("cpu_per_viewer_pct")
        mem = r.get("rss_per_viewer_mib")
        print(f"{r['case']:<22}{r['viewers']:>8}{r.get('receiving', '—')!s:>10}{r['cpu_pct']:>8.1f}"
              f"{'—' if per is None else f'{per:.2f}':>14}{r['rss_mib']:>9.0f}"
              f"{'—' if mem is None else f'{mem:.2f}':>16}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,8,32,64,128")
    parser.add_argument("--naive-counts", default="1,4,8", help="viewer counts for one-encoder-per-viewer")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--cases", default="flowgraph,flowgraph-workers2,minimal,janus,naive-encode")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    naive = [int(c) for c in args.naive_counts.split(",")]
    rows: list[dict[str, Any]] = []
    failed: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="fg-viewers-") as tmpdir:
        for name in args.cases.split(","):
            try:
                rows += await run_case(name, naive if name == "naive-encode" else counts, args.seconds,
                                       Path(tmpdir))
            except Exception as exc:  # the table says so: a missing baseline must not vanish from the report
                print(f"case {name} failed: {exc!r}", file=sys.stderr)
                failed.append((name, repr(exc)))
    print_table(rows)
    for name, why in failed:
        print(unavailable_row(name, why, 22))
    record("webrtc_viewers", rows)


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "--client":
        asyncio.run(client_main(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        asyncio.run(main())
