"""Soak: graphs/platform.yaml for 30 minutes at 720p30 with 16 WebRTC viewers and 100 WebSocket clients.

Everything real, on loopback: redis-server and PostgreSQL in temporary folders, an ffmpeg RTMP publisher looping a
synthetic 720p30 scene (tools/testsrc.py), `flowgraph run graphs/platform.yaml`, 16 light receive-only WebRTC
viewers (RTP counted, not decoded) and 100 WebSocket clients measuring analytics latency (receive time − the
frame's capture time). Every 10 s: the graph process's RSS and CPU, viewers receiving, WS message rate and
latency, errors and drops from /api/metrics. At the end: slopes of memory and latency after warm-up (a leak or a
growing backlog shows as a slope), errors logged, records stored; soak.json and soak.png in $FLOWGRAPH_RESULTS.

    python tools/bench/soak.py [--minutes 30] [--viewers 16] [--ws 100]      (--quick: 2 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("BENCH_STREAM", "main")

import numpy as np
from _light_viewers import Clients
from _servers import Postgres, Redis, free_port
from _webrtc_common import FLOWGRAPH, PY, ROOT, Proc, cpu_seconds, rss_mib, tree, wait_http

STREAM = "main"


async def ws_clients_main(url: str, count: int) -> None:
    """Child process: `count` WS clients; prints per-interval counts and latency percentiles as JSON lines."""
    import aiohttp

    latencies: list[float] = []
    received = [0]
    closed = [0]

    async def client(session: aiohttp.ClientSession) -> None:
        try:
            async with session.ws_connect(url, heartbeat=20) as ws:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    received[0] += 1
                    t_capture = json.loads(msg.data)["payload"].get("t_capture")
                    if t_capture:
                        latencies.append(time.time() - t_capture)
        finally:
            closed[0] += 1

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(client(session)) for _ in range(count)]
        while True:
            await asyncio.sleep(10)
            data = sorted(latencies)
            latencies.clear()
            print(json.dumps({"received": received[0], "closed": closed[0], "p50_ms": quantile_ms(data, 0.5),
                              "p99_ms": quantile_ms(data, 0.99)}), flush=True)
            if all(t.done() for t in tasks):
                return


def quantile_ms(data: list[float], q: float) -> float | None:
    return round(data[min(len(data) - 1, int(q * len(data)))] * 1000, 1) if data else None


def last_json(path: Path) -> dict[str, Any]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def slope_per_min(times: list[float], values: list[float | None], warmup_s: float) -> float | None:
    pairs = [(t, v) for t, v in zip(times, values, strict=True) if v is not None and t >= warmup_s]
    if len(pairs) < 3:
        return None
    t, v = np.array(pairs).T
    return float(np.polyfit(t / 60.0, v, 1)[0])


async def metrics(base: str) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(base + "/api/metrics") as response:
        data: dict[str, Any] = await response.json()
        return data


async def soak(minutes: float, viewers: int, ws_count: int, out: Path) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="fg-soak-"))
    redis, postgres = Redis(), Postgres()
    procs: list[Proc] = []
    try:
        scene = tmp / "scene.mp4"
        await asyncio.to_thread(subprocess.run, [
            PY, str(ROOT / "tools" / "testsrc.py"), "--width", "1280", "--height", "720", "--fps", "30",
            "--seconds", "20", "--people", "3", "--out", str(scene)], check=True, capture_output=True)
        rtmp, http = free_port(), free_port()
        # all on loopback: the listen check lets platform.yaml's empty API/WS tokens through (clients send none)
        env = {"STREAM_KEYS": "soak=main", "API_TOKEN": "", "WS_TOKEN": "", "REDIS_URL": redis.url,
               "POSTGRES_URL": postgres.url, "HOST": "127.0.0.1", "VIBRIO_BACKEND": "motion"}
        log = tmp / "graph.log"
        graph = Proc([FLOWGRAPH, "run", str(ROOT / "graphs" / "platform.yaml"), "--port", str(http),
                      "--set", f"rtmp.url=rtmp://127.0.0.1:{rtmp}/live"], env=env, log=str(log))
        procs.append(graph)
        base = f"http://127.0.0.1:{http}"
        await wait_http(base + "/api/metrics", timeout=60)
        procs.append(Proc(["ffmpeg", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(scene), "-c",
                           "copy", "-f", "flv", f"rtmp://127.0.0.1:{rtmp}/live/soak"]))
        await asyncio.sleep(5)
        clients = Clients("flowgraph", base, viewers, tmp)
        ws_log = tmp / "ws.log"
        procs.append(Proc([PY, __file__, "--ws-client", base.replace("http", "ws") + f"/stream/{STREAM}/analytics",
                           str(ws_count)], log=str(ws_log)))
        samples: list[dict[str, Any]] = []
        start = time.monotonic()
        last_cpu, last_t = cpu_seconds(tree(graph.pid)), time.monotonic()
        print(f"{'min':>5} {'RSS MB':>7} {'CPU %':>6} {'viewers':>7} {'WS msgs':>8} {'WS p50':>7} {'WS p99':>7}"
              f" {'errors':>6} {'drops':>6} {'CV skip':>7}", flush=True)
        while time.monotonic() - start < minutes * 60:
            await asyncio.sleep(10)
            procs_now = tree(graph.pid)
            cpu, now = cpu_seconds(procs_now), time.monotonic()
            snap = await metrics(base)
            ws = last_json(ws_log)
            sample = {
                "t": round(now - start, 1), "rss_mb": round(rss_mib(procs_now), 1),
                "cpu_pct": round((cpu - last_cpu) / (now - last_t) * 100, 1),
                "viewers_receiving": clients.receiving(), "ws_received": ws.get("received", 0),
                "ws_p50_ms": ws.get("p50_ms"), "ws_p99_ms": ws.get("p99_ms"), "ws_closed": ws.get("closed", 0),
                "errors": sum(n["errors"] for n in snap["nodes"].values()),
                # `latest` edges drop by design (CV skips to the freshest frame); other drops are lost messages
                "drops": sum(e["drops"] for e in snap["edges"] if e["policy"] != "latest"),
                "cv_skipped": sum(e["drops"] for e in snap["edges"] if e["policy"] == "latest"),
                "fps": snap["nodes"]["rtmp"]["rate_hz"],
            }
            last_cpu, last_t = cpu, now
            samples.append(sample)
            print(f"{sample['t'] / 60:>5.1f} {sample['rss_mb']:>7.1f} {sample['cpu_pct']:>6.1f}"
                  f" {sample['viewers_receiving']:>7} {sample['ws_received']:>8} {sample['ws_p50_ms']!s:>7}"
                  f" {sample['ws_p99_ms']!s:>7} {sample['errors']:>6} {sample['drops']:>6} {sample['cv_skipped']:>7}",
                  flush=True)
        stored = await metrics(base)
        logged_errors = [line for line in log.read_text(errors="replace").splitlines()
                         if " ERROR " in line or "Traceback" in line]
    finally:
        for proc in reversed(procs):
            proc.stop()
        if "clients" in locals():
            clients.stop()
        redis.stop()
        postgres.stop()
    times = [s["t"] for s in samples]
    warmup = min(120.0, minutes * 60 / 4)
    result = {
        "minutes": minutes, "viewers": viewers, "ws_clients": ws_count, "samples": samples,
        "rss_slope_mb_per_min": slope_per_min(times, [s["rss_mb"] for s in samples], warmup),
        "ws_p50_slope_ms_per_min": slope_per_min(times, [s["ws_p50_ms"] for s in samples], warmup),
        "errors_logged": len(logged_errors), "first_errors": logged_errors[:5],
        "node_errors": samples[-1]["errors"] if samples else None,
        "stores": {n: v.get("counters", {}) for n, v in stored["nodes"].items() if v["type"] == "store"},
    }
    (out / "soak.json").write_text(json.dumps(result, indent=1))
    plot(samples, out / "soak.png")
    print(f"RSS slope after {warmup:.0f} s warm-up: {result['rss_slope_mb_per_min']!s} MB/min; WS latency p50 slope:"
          f" {result['ws_p50_slope_ms_per_min']!s} ms/min; errors logged: {len(logged_errors)};"
          f" node errors: {result['node_errors']}")
    for line in logged_errors[:5]:
        print("  " + line[:200])
    return 0


def plot(samples: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not samples:
        return
    t = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    axes[0].plot(t, [s["rss_mb"] for s in samples])
    axes[0].set_ylabel("RSS MB")
    axes[1].plot(t, [s["cpu_pct"] for s in samples])
    axes[1].set_ylabel("CPU % of a core")
    axes[2].plot(t, [s["ws_p50_ms"] for s in samples], label="p50")
    axes[2].plot(t, [s["ws_p99_ms"] for s in samples], label="p99")
    axes[2].set_ylabel("WS analytics latency ms")
    axes[2].set_xlabel("minutes")
    axes[2].legend()
    fig.suptitle("soak: platform.yaml, 720p30, viewers + WS clients")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--viewers", type=int, default=16)
    parser.add_argument("--ws", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="2 minutes")
    args = parser.parse_args()
    out = Path(os.environ.get("FLOWGRAPH_RESULTS", "."))
    return asyncio.run(soak(2.0 if args.quick else args.minutes, args.viewers, args.ws, out))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--ws-client":
        asyncio.run(ws_clients_main(sys.argv[2], int(sys.argv[3])))
    else:
        sys.exit(main())
