"""Viewer churn: 500 WebRTC connect → first packet → leave cycles against one graph; server memory must stay flat.

A `flowgraph run` subprocess serves a synthetic 640x360 stream (testsrc → passthrough webrtc_out). Each cycle a
fresh aiortc viewer posts an offer to /api/stream/connect, waits for its first RTP packet, leaves with a WHEP
DELETE and closes. The server's RSS is sampled every tenth of the run; the slope after the first fifth shows
a leak.

    python tools/bench/webrtc_churn.py [--cycles 500]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import psutil
from _net import free_port
from _report import record
from _webrtc_common import FLOWGRAPH, Proc, wait_http

GRAPH = """
nodes:
  cam:
    node: ingest
    params: {url: "testsrc://", stream_id: churn, width: 640, height: 360, fps: 30, people: 1, gop: 30}
    inputs: {control: {from: viewers/control, feedback: true}}
  viewers:
    node: webrtc_out
    params: {streams: [churn], viewer_timeout_s: 5}
    inputs: {video: cam/packets}
"""


async def one_viewer(http: aiohttp.ClientSession, base: str) -> float:
    """Connect, wait for the first RTP packet, leave; returns seconds to the first packet."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("video", direction="recvonly")
    first: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    started = time.perf_counter()

    async def on_rtp(packet: object, arrival_time_ms: int) -> None:
        if not first.done():
            first.set_result(time.perf_counter() - started)

    transceiver.receiver._handle_rtp_packet = on_rtp  # count, do not decode
    try:
        await pc.setLocalDescription(await pc.createOffer())
        async with http.post(f"{base}/api/stream/connect",
                             json={"offer": pc.localDescription.sdp, "stream_id": "churn"}) as response:
            body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"connect answered {response.status}: {body}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["answer"], type="answer"))
        seconds = await asyncio.wait_for(first, 10)
        if body.get("location"):
            async with http.delete(base + body["location"]) as response:
                await response.read()
        return seconds
    finally:
        await pc.close()


async def main(cycles: int) -> int:
    import aioice.ice

    original = aioice.ice.get_host_addresses  # aioice leaves 127.0.0.1 out of the host candidates
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [*original(use_ipv4, use_ipv6), "127.0.0.1"]
    with tempfile.TemporaryDirectory(prefix="fg-churn-") as tmp:
        graph = Path(tmp) / "churn.yaml"
        graph.write_text(GRAPH)
        port = free_port()
        server = Proc([FLOWGRAPH, "run", str(graph), "--port", str(port)], log=str(Path(tmp) / "server.log"))
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_http(base + "/api/webrtc/streams", timeout=60)
            await asyncio.sleep(1.0)
            ps = psutil.Process(server.pid)
            rows = []
            connect: list[float] = []
            every = max(10, cycles // 10)
            print(f"{'cycles':>6} {'server RSS MB':>14} {'first packet p50 ms':>20}", flush=True)
            async with aiohttp.ClientSession() as http:
                for n in range(1, cycles + 1):
                    connect.append(await one_viewer(http, base))
                    if n % every == 0 or n == 1:
                        await asyncio.sleep(0.5)
                        rss = ps.memory_info().rss / 1e6
                        p50 = float(np.median(connect[-every:])) * 1000
                        rows.append({"cycles": n, "rss_mb": rss, "first_packet_p50_ms": p50})
                        print(f"{n:>6} {rss:>14.1f} {p50:>20.1f}", flush=True)
        finally:
            server.stop()
    steady = [r for r in rows if r["cycles"] >= min(100, cycles // 5)]
    slope = float(np.polyfit([r["cycles"] for r in steady], [r["rss_mb"] for r in steady], 1)[0]) * 100 \
        if len(steady) >= 3 else float("nan")
    print(f"RSS slope after warm-up: {slope:.2f} MB per 100 cycles; growth first → last: "
          f"{rows[-1]['rss_mb'] - rows[0]['rss_mb']:.1f} MB over {cycles} cycles")
    record("webrtc_churn", {"rows": rows, "slope_mb_per_100": slope})
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="100 cycles")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(100 if args.quick else args.cycles)))
