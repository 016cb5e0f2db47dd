"""Many streams through one graph: server CPU and memory per passthrough stream (one viewer each) at 1, 8 and 32
streams, and CV analysed fps per stream at 1, 2 and 4 streams of 720p — all in one multi-stream ``ingest`` node.

Publishers are in-process RTMP clients (``flowgraph.nodes.media.rtmp_publish``) in a child process, sending a
pre-encoded clip at 30 fps; viewers are light receive-only aiortc clients in another child process (they count RTP
packets, no decoding). Only the graph process (``flowgraph run``) is measured. The baseline in the same run is the
same graph with no stream (idle); per-stream figures are (with N streams − idle) / N. On a shared host the load
average is printed beside every row: read the figures as taken under that load.

    python tools/bench/streams.py [--counts 1,8,32] [--cv-counts 1,2,4] [--seconds 8]
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

from _net import free_port
from _report import record
from _webrtc_common import FLOWGRAPH, PY, Proc, cpu_seconds, rss_mib, tree, wait_http

PASSTHROUGH = """
name: bench-streams
nodes:
  ingest:
    node: ingest
    params: {{url: "rtmp://127.0.0.1:{rtmp}/live", keys: "{keys}", max_streams: 256, timeout_s: 10}}
    inputs: {{control: {{from: viewers/control, feedback: true}}}}
  viewers:
    node: webrtc_out
    params: {{viewer_timeout_s: 60, max_viewers: 1000}}
    inputs: {{video: ingest/packets}}
"""

CV = """
name: bench-streams-cv
nodes:
  ingest:
    node: ingest
    params: {{url: "rtmp://127.0.0.1:{rtmp}/live", keys: "{keys}", max_streams: 64, timeout_s: 10}}
  decode:
    node: decode
    inputs: {{packets: ingest/packets}}
  vibrio:
    node: vibrio
    params: {{backend: motion, max_streams: 64}}
    inputs: {{frames: {{from: decode/frames, policy: latest}}}}
  sink:
    node: collect
    params: {{keep: 0}}
    inputs: {{inp: vibrio/tracks}}
"""


# -- child processes ----------------------------------------------------------------------------------------
async def publishers_main(port: int, count: int, width: int, height: int) -> None:
    from flowgraph.nodes.media.rtmp_publish import RtmpPublisher, encode_clip

    clip = encode_clip(width, height, fps=30, frames=60, gop=30)
    publishers = [RtmpPublisher("127.0.0.1", port, "live", f"s{i}") for i in range(count)]
    for publisher in publishers:
        await publisher.connect()
    print(json.dumps({"publishing": count}), flush=True)
    await asyncio.gather(*(p.play(clip, 3600) for p in publishers))


async def viewers_main(base: str, streams: list[str]) -> None:
    import aiohttp
    import aioice.ice
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [*original(use_ipv4, use_ipv6), "127.0.0.1"]
    counters = {s: [0] for s in streams}
    pcs = []
    async with aiohttp.ClientSession() as http:
        for stream in streams:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            transceiver = pc.addTransceiver("video", direction="recvonly")

            async def handle(packet: Any, arrival_time_ms: int, counter: list[int] = counters[stream]) -> None:
                counter[0] += 1

            transceiver.receiver._handle_rtp_packet = handle
            await pc.setLocalDescription(await pc.createOffer())
            async with http.post(f"{base}/api/stream/connect",
                                 json={"offer": pc.localDescription.sdp, "stream_id": stream}) as resp:
                body = await resp.json()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body["answer"], type="answer"))
            pcs.append(pc)
    while True:
        await asyncio.sleep(1.0)
        print(json.dumps({"receiving": sum(1 for c in counters.values() if c[0] > 0)}), flush=True)


# -- measuring ----------------------------------------------------------------------------------------------
def last_json(log: Path, key: str) -> dict[str, Any] | None:
    lines = [line for line in log.read_text().splitlines() if line.startswith(f'{{"{key}"')]
    return json.loads(lines[-1]) if lines else None


async def wait_json(log: Path, key: str, value: int, timeout: float) -> None:
    """Until the child's latest ``{key: N}`` line says ``value``."""
    deadline = time.monotonic() + timeout
    while (last_json(log, key) or {}).get(key) != value:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{log.name}: no {key} = {value} within {timeout}s")
        await asyncio.sleep(0.5)


async def measure(pid: int, seconds: float) -> tuple[float, float]:
    """(% of one core, RSS MiB) of the graph process tree over ``seconds``."""
    procs = tree(pid)
    start_cpu, start = cpu_seconds(procs), time.monotonic()
    await asyncio.sleep(seconds)
    procs = tree(pid)
    return 100.0 * (cpu_seconds(procs) - start_cpu) / (time.monotonic() - start), rss_mib(procs)


async def api_streams(base: str, part: str = "live") -> dict[str, dict[str, Any]]:
    """``/api/streams`` by stream id: each stream's ``live`` figures (or the record of one role, e.g. vibrio)."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"{base}/api/streams") as resp:
        body = await resp.json()
    return {s["stream_id"]: s.get(part) or s.get("roles", {}).get(part) or {} for s in body["streams"]}


def analysed_counts(roles: dict[str, dict[str, Any]], count: int) -> list[int]:
    return [int(roles.get(f"s{i}", {}).get("analysed") or 0) for i in range(count)]


@contextlib.asynccontextmanager
async def graph(template: str, tmp: Path, name: str, keys: int) -> Any:
    rtmp, port = free_port(), free_port()
    path = tmp / f"{name}.yaml"
    path.write_text(template.format(rtmp=rtmp, keys=",".join(f"s{i}" for i in range(keys))))
    proc = Proc([FLOWGRAPH, "run", str(path), "--port", str(port), "--serve"], log=str(tmp / f"{name}.log"))
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(base + "/api/streams", timeout=60)
        yield base, rtmp, proc
    finally:
        proc.stop()


async def passthrough(counts: list[int], seconds: float, tmp: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with graph(PASSTHROUGH, tmp, "passthrough", max(counts)) as (base, rtmp, proc):
        await asyncio.sleep(2)
        idle_cpu, idle_rss = await measure(proc.pid, seconds / 2)
        rows.append({"case": "passthrough", "streams": 0, "cpu_pct": idle_cpu, "rss_mib": idle_rss,
                     "load": os.getloadavg()[0]})
        print(f"[streams] idle graph: {idle_cpu:.1f} % CPU, {idle_rss:.0f} MiB", file=sys.stderr)
        for count in counts:
            publog, viewlog = tmp / f"pub-{count}.log", tmp / f"view-{count}.log"
            publishers = Proc([PY, __file__, "--publish", str(rtmp), str(count), "640", "360"], log=str(publog))
            viewers: Proc | None = None
            try:
                await wait_json(publog, "publishing", count, 60)
                await asyncio.sleep(2)
                streams = [f"s{i}" for i in range(count)]
                viewers = Proc([PY, __file__, "--view", base, ",".join(streams)], log=str(viewlog))
                await wait_json(viewlog, "receiving", count, 30 + count)
                await asyncio.sleep(2)
                cpu, rss = await measure(proc.pid, seconds)
                live = await api_streams(base)
                rates = [live.get(s, {}).get("bitrate_kbps") or 0 for s in streams]
                rows.append({"case": "passthrough", "streams": count, "viewers": count, "cpu_pct": cpu,
                             "rss_mib": rss, "cpu_per_stream_pct": (cpu - idle_cpu) / count,
                             "rss_per_stream_mib": (rss - idle_rss) / count,
                             "kbps_per_stream": sum(rates) / count, "load": os.getloadavg()[0]})
                print(f"[streams] {rows[-1]}", file=sys.stderr)
            finally:
                if viewers is not None:
                    viewers.stop()
                publishers.stop()
            await asyncio.sleep(4)  # the streams end (idle timeout or unpublish) before the next count
    return rows


async def cv(counts: list[int], seconds: float, tmp: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for count in counts:
        async with graph(CV, tmp, f"cv-{count}", count) as (base, rtmp, proc):
            publog = tmp / f"cv-pub-{count}.log"
            publishers = Proc([PY, __file__, "--publish", str(rtmp), str(count), "1280", "720"], log=str(publog))
            try:
                await wait_json(publog, "publishing", count, 60)
                await asyncio.sleep(6)  # decoders and motion backgrounds settle
                before, started = analysed_counts(await api_streams(base, "vibrio"), count), time.monotonic()
                cpu, rss = await measure(proc.pid, seconds)
                await asyncio.sleep(1.2)  # vibrio reports once a second
                after, elapsed = analysed_counts(await api_streams(base, "vibrio"), count), time.monotonic() - started
                # frames analysed per stream in the window, from vibrio's counts (not its smoothed estimate)
                analysed = [round((b - a) / elapsed, 2) for a, b in zip(before, after, strict=True)]
                rows.append({"case": "cv-720p", "streams": count, "cpu_pct": cpu, "rss_mib": rss,
                             "analysed_fps": analysed, "analysed_fps_min": min(analysed),
                             "analysed_fps_total": sum(analysed), "load": os.getloadavg()[0]})
                print(f"[streams] {rows[-1]}", file=sys.stderr)
            finally:
                publishers.stop()
    return rows


def print_tables(rows: list[dict[str, Any]]) -> None:
    print("\npassthrough streams, one light viewer each (640x360 30 fps, in-process publishers; % of one core)")
    print(f"{'streams':>8}{'CPU %':>8}{'per stream %':>14}{'RSS MiB':>9}{'per stream MiB':>16}{'kbit/s':>8}"
          f"{'load':>6}")
    for r in (r for r in rows if r["case"] == "passthrough"):
        per = r.get("cpu_per_stream_pct")
        mem = r.get("rss_per_stream_mib")
        print(f"{r['streams']:>8}{r['cpu_pct']:>8.1f}{'idle (baseline)' if per is None else f'{per:.2f}':>14}"
              f"{r['rss_mib']:>9.0f}{'—' if mem is None else f'{mem:.2f}':>16}"
              f"{r.get('kbps_per_stream', 0):>8.0f}{r['load']:>6.1f}")
    print("\nCV (decode + vibrio motion backend, latest edge) per stream of 720p30")
    print(f"{'streams':>8}{'CPU %':>8}{'analysed fps per stream':>26}{'min':>6}{'total':>7}{'load':>6}")
    for r in (r for r in rows if r["case"] == "cv-720p"):
        fps = " ".join(f"{f:.1f}" for f in r["analysed_fps"])
        print(f"{r['streams']:>8}{r['cpu_pct']:>8.1f}{fps:>26}{r['analysed_fps_min']:>6.1f}"
              f"{r['analysed_fps_total']:>7.1f}{r['load']:>6.1f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--counts", default="1,8,32")
    parser.add_argument("--cv-counts", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fg-streams-") as tmpdir:
        tmp = Path(tmpdir)
        if args.counts:
            rows += await passthrough([int(c) for c in args.counts.split(",")], args.seconds, tmp)
        if args.cv_counts:
            rows += await cv([int(c) for c in args.cv_counts.split(",")], args.seconds, tmp)
    print_tables(rows)
    record("streams", rows)


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "--publish":
        asyncio.run(publishers_main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
    elif len(sys.argv) >= 4 and sys.argv[1] == "--view":
        asyncio.run(viewers_main(sys.argv[2], sys.argv[3].split(",")))
    else:
        asyncio.run(main())
