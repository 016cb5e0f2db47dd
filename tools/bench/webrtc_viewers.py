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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _light_viewers import light_viewers
from _report import record, unavailable_row
from _webrtc_common import (
    cpu_seconds,
    flowgraph_server,
    janus_server,
    minimal_server,
    publishing,
    rss_mib,
    tree,
    wait_stream,
)


# -- the measuring side -------------------------------------------------------------------------------------
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
    async with server as (base, publish_url, proc), publishing(publish_url):
        if name.startswith("flowgraph"):
            await wait_stream(base, "bench")
        else:
            await asyncio.sleep(4)
        idle_cpu, idle_rss = await measure([proc.pid], seconds / 2)
        rows.append({"case": name, "viewers": 0, "cpu_pct": idle_cpu, "rss_mib": idle_rss})
        for count in counts:
            async with light_viewers(kind, base, count, tmp) as receiving:
                cpu, rss = await measure([proc.pid], seconds)
                rows.append({"case": name, "viewers": count, "receiving": receiving, "cpu_pct": cpu,
                             "rss_mib": rss,
                             "cpu_per_viewer_pct": (cpu - idle_cpu) / count,
                             "rss_per_viewer_mib": (rss - idle_rss) / count})
                print(f"[{name}] {rows[-1]}", file=sys.stderr)
            await asyncio.sleep(3 if name != "janus" else 2)
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
    asyncio.run(main())
