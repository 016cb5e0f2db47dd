"""Light viewers through Janus (sfu_out, 2 instances) beside flowgraph's own path and bare Janus, same run.

Cases (one stamped 720p30 1.6 Mbit/s publisher each):
  flowgraph        the graph serves viewers itself (webrtc_out passthrough)
  sfu              ingest -> sfu_out (spawn: 2 Janus instances); viewers signal with POST /api/stream/connect
  janus            bare Janus (1 instance, same generated settings), fed RTP directly, viewers use Janus's API
  janus-old        bare Janus as the earlier baseline ran it: 100-port RTP range, full ICE, a thread per viewer
Viewers are _light_viewers.py's light aiortc clients (count RTP packets only) in 4 processes. CPU is sampled for
the server side only: for "sfu" the graph process and the Janus processes separately and together. Per-viewer
CPU = (CPU with N viewers - CPU with none) / N in % of one core. The host is shared: load is printed.

    python tools/bench/sfu_viewers.py [--counts 16,64,128] [--seconds 8] [--cases flowgraph,sfu,janus,janus-old]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _light_viewers import light_viewers
from _net import free_port
from _report import record
from _webrtc_common import Proc, cpu_seconds, flowgraph_server, publishing, tree

from flowgraph.nodes.sfu.janus import JanusClient, JanusSettings, LocalJanus


@contextlib.asynccontextmanager
async def bare_janus(tmp: Path, old: bool) -> AsyncIterator[tuple[str, str, Proc | LocalJanus]]:
    """One Janus with the HTTP API on, mountpoint id 1 (H.264 PT 96, keyframe buffering) fed RTP directly."""
    http = free_port()
    local = LocalJanus(Path(tempfile.mkdtemp(dir=tmp, prefix="janus-")), JanusSettings(
        ws_port=free_port(), http_port=http, rtp_port_range="20000-20099" if old else "20000-40000",
        ice_lite=not old, event_loops=-1 if old else 0))
    local.start()
    try:
        await local.wait_ready()
        client = JanusClient(local.url)
        await client.connect()
        session = (await client.request({"janus": "create"}))["data"]["id"]
        handle = (await client.request({"janus": "attach", "session_id": session,
                                        "plugin": "janus.plugin.streaming"}))["data"]["id"]
        video = free_port()
        await client.request({"janus": "message", "session_id": session, "handle_id": handle, "body": {
            "request": "create", "type": "rtp", "id": 1, "permanent": False, "playoutdelay_ext": True,
            "media": [{"type": "video", "mid": "v", "port": video, "pt": 96, "codec": "h264",
                       "fmtp": "profile-level-id=42e01f;packetization-mode=1", "bufferkf": True}]}})
        yield f"http://127.0.0.1:{http}/janus", f"rtp://127.0.0.1:{video}", local
        await client.close()
    finally:
        local.stop()


def split_cpu(pid: int) -> tuple[list[Any], list[Any]]:
    """(graph process, janus processes) of a flowgraph process tree."""
    procs = tree(pid)
    janus = [p for p in procs if _name(p) == "janus"]
    return [p for p in procs if p not in janus], janus


def _name(p: Any) -> str:
    with contextlib.suppress(Exception):
        return str(p.name())
    return ""


def janus_resources(janus: list[Any]) -> dict[str, int]:
    """UDP sockets and threads the Janus processes hold (the earlier failures' suspects)."""
    udp = threads = fds = 0
    for p in janus:
        with contextlib.suppress(Exception):
            udp += len(p.net_connections(kind="udp"))
            threads += p.num_threads()
            fds += p.num_fds()
    return {"janus_udp": udp, "janus_threads": threads, "janus_fds": fds}


async def measure(pid: int, seconds: float) -> dict[str, float]:
    own, janus = split_cpu(pid)
    start = time.monotonic()
    a, b = cpu_seconds(own), cpu_seconds(janus)
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - start
    return {"cpu_pct": 100 * (cpu_seconds(own) - a + cpu_seconds(janus) - b) / elapsed,
            "own_cpu_pct": 100 * (cpu_seconds(own) - a) / elapsed,
            "janus_cpu_pct": 100 * (cpu_seconds(janus) - b) / elapsed, **janus_resources(janus)}


async def run_case(name: str, counts: list[int], seconds: float, tmp: Path) -> list[dict[str, Any]]:
    if name == "sfu":
        server: Any = flowgraph_server("sfu", tmp=tmp)
    elif name.startswith("janus"):
        server = bare_janus(tmp, old=name == "janus-old")
    else:
        server = flowgraph_server("passthrough", tmp=tmp)
    kind = "janus" if name.startswith("janus") else "http"
    rows: list[dict[str, Any]] = []
    async with server as (base, publish_url, proc), publishing(publish_url):
        await asyncio.sleep(5)
        idle = await measure(proc.pid, seconds / 2)
        rows.append({"case": name, "viewers": 0, **idle, "load": os.getloadavg()[0]})
        for count in counts:
            async with light_viewers(kind, base, count, tmp) as receiving:
                cpu = await measure(proc.pid, seconds)
                row = {"case": name, "viewers": count, "receiving": receiving, **cpu,
                       "per_viewer_pct": (cpu["cpu_pct"] - idle["cpu_pct"]) / count,
                       "own_per_viewer_pct": (cpu["own_cpu_pct"] - idle["own_cpu_pct"]) / count,
                       "load": os.getloadavg()[0]}
                rows.append(row)
                print(f"[{name}] {row}", file=sys.stderr, flush=True)
            await asyncio.sleep(3)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\nserver CPU per light viewer, 720p30 1.6 Mbit/s (% of one core; taken on a shared 2-core host)")
    print(f"{'case':<16}{'viewers':>8}{'receiving':>10}{'CPU %':>8}{'flowgraph %':>12}{'janus %':>9}"
          f"{'per viewer %':>13}{'janus udp/thr':>14}{'load':>6}")
    for r in rows:
        per = r.get("per_viewer_pct")
        print(f"{r['case']:<16}{r['viewers']:>8}{r.get('receiving', '—')!s:>10}{r['cpu_pct']:>8.1f}"
              f"{r['own_cpu_pct']:>12.1f}{r['janus_cpu_pct']:>9.1f}{'—' if per is None else f'{per:.3f}':>13}"
              f"{str(r.get('janus_udp', '—')) + '/' + str(r.get('janus_threads', '—')):>14}{r['load']:>6.1f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="16,64,128")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--cases", default="flowgraph,sfu,janus,janus-old")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fg-sfu-") as tmpdir:
        for name in args.cases.split(","):
            try:
                rows += await run_case(name, counts, args.seconds, Path(tmpdir))
            except Exception as exc:
                print(f"case {name} failed: {exc!r}", file=sys.stderr)
                rows.append({"case": name, "viewers": 0, "receiving": f"unavailable: {exc}", "cpu_pct": 0.0,
                             "own_cpu_pct": 0.0, "janus_cpu_pct": 0.0, "load": os.getloadavg()[0]})
    print_table(rows)
    record("sfu_viewers", rows)


if __name__ == "__main__":
    asyncio.run(main())
