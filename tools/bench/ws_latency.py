"""Analytics update latency: fuse output → message received by a WebSocket client, p50/p99, for 1, 100 and
1,000 clients — flowgraph's ws_out beside a Node.js ``ws`` broadcast server measured in the same run.

flowgraph side: a graph ``bench_tracks → fuse → ws_out`` in its own process; ``payload.timestamp`` is stamped by
fuse when it emits. Node side: ``tools/bench/ws_node/broadcast.js`` sends the same messages (same JSON shape and
size, one per frame per track) at the same rate, stamping the timestamp as it serialises. Both are measured by
the same lean client processes (``_wsclient.py``), which stamp each message when its bytes arrive.

    python tools/bench/ws_latency.py [--clients 1,100,1000] [--duration 10] [--rate 30] [--people 1] [--procs 2]

Runs ``npm install`` in tools/bench/ws_node (ws 8) the first time. Prints a table; shared machines are noisy.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _net import free_port
from _report import record

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NODE_DIR = HERE / "ws_node"


def graph_yaml(port: int, rate: float, people: int) -> str:
    return f"""name: ws-latency
server: {{port: {port}}}
nodes:
  src: {{node: bench_tracks, params: {{fps: {rate}, people: {people}}}}}
  fuse: {{node: fuse, inputs: {{tracks: src/tracks}}, params: {{emit: [speed]}}}}
  ws:
    node: ws_out
    inputs: {{analytics: fuse/analytics}}
    params: {{ping_interval_s: 0, max_clients: 20000, max_clients_per_stream: 20000}}
"""


async def serve_flowgraph(port: int, rate: float, people: int) -> None:
    """Run the flowgraph side until SIGTERM (this is the server process)."""
    sys.path.insert(0, str(HERE))
    from _benchnodes import registry

    from flowgraph.testing import compile_text, running

    plan = compile_text(graph_yaml(port, rate, people), registry=registry())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with running(plan, port=port) as rt:
        print(f"ready {port} {time.time()}", flush=True)
        await stop.wait()
        hub = rt.runners["ws"].node.hub
        print(f"flowgraph ws_out: {hub.published} messages, fan-out p50/p99 {hub.fanout_time.summary_ms()} ms "
              f"(last {len(hub.fanout_time.values())} messages)", file=sys.stderr, flush=True)


def templates(people: int) -> list[dict[str, Any]]:
    """The messages fuse emits for one frame (speed per track), for the Node server to send verbatim."""
    from flowgraph.nodes.analytics import payloads
    from flowgraph.nodes.vibrio.messages import Track, Tracks

    tracks = Tracks(stream_id="cam1", frame_id=0, pts=0, tracks=[
        Track(track_id=i + 1, bbox=(100.0, 80.0, 180.0, 400.0), score=0.91, speed_mps=5.5 + i, heading_deg=87.5,
              distance_m=1.0, confidence=0.88) for i in range(people)])
    return [m.to_wire() for m in payloads.speeds(tracks, time.time())]


def start_server(kind: str, port: int, rate: float, people: int, workdir: Path) -> subprocess.Popen[str]:
    if kind == "flowgraph":
        cmd = [sys.executable, str(Path(__file__)), "--serve", "--port", str(port), "--rate", str(rate),
               "--people", str(people)]
    else:
        path = workdir / "templates.json"
        path.write_text(json.dumps(templates(people)))
        cmd = ["node", str(NODE_DIR / "broadcast.js"), "--port", str(port), "--rate", str(rate), "--templates",
               str(path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise RuntimeError(f"{kind} server did not start: {line!r}")
    return proc


def run_clients(port: int, clients: int, procs: int, duration: float, warmup: float, workdir: Path
                ) -> tuple[array.array, dict[str, int]]:
    procs = max(1, min(procs, clients))
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    running = []
    for i, share in enumerate(shares):
        out = workdir / f"samples-{i}.bin"
        cmd = [sys.executable, str(HERE / "_wsclient.py"), "--port", str(port), "--clients", str(share),
               "--duration", str(duration), "--out", str(out), "--wait-for-go"]
        running.append((subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True), out))
    for proc, _ in running:  # everybody connected: the handshake storm is over before measuring starts
        assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
    go = f"{time.time() + warmup}\n"
    for proc, _ in running:
        assert proc.stdin is not None
        proc.stdin.write(go)
        proc.stdin.flush()
    samples = array.array("d")
    totals = {"messages": 0, "gaps": 0, "connected": 0}
    for proc, out in running:
        stdout, _ = proc.communicate(timeout=duration + warmup + 120)
        summary = json.loads(stdout.strip().splitlines()[-1])
        for key in totals:
            totals[key] += summary[key]
        with open(out, "rb") as handle:
            samples.frombytes(handle.read())
    return samples, totals


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def measure(kind: str, clients: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import psutil

    port = free_port()
    server = start_server(kind, port, args.rate, args.people, workdir)
    try:
        cpu_before = psutil.Process(server.pid).cpu_times()
        started = time.monotonic()
        samples, totals = run_clients(port, clients, args.procs, args.duration, args.warmup, workdir)
        elapsed = time.monotonic() - started
        cpu_after = psutil.Process(server.pid).cpu_times()
        rss = psutil.Process(server.pid).memory_info().rss
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    ordered = sorted(samples)
    cpu = (cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system) / elapsed
    return {
        "server": kind, "clients": clients, "connected": totals["connected"], "messages": totals["messages"],
        "gaps": totals["gaps"], "p50_ms": percentile(ordered, 50) * 1000 if ordered else None,
        "p99_ms": percentile(ordered, 99) * 1000 if ordered else None,
        "max_ms": ordered[-1] * 1000 if ordered else None, "server_cpu": cpu, "server_rss_mb": rss / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,100,1000")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second")
    parser.add_argument("--people", type=int, default=1, help="tracks per frame (one speed message each)")
    parser.add_argument("--procs", type=int, default=max(2, (os.cpu_count() or 2) // 2), help="client processes")
    parser.add_argument("--servers", default="flowgraph,node")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.serve:
        asyncio.run(serve_flowgraph(args.port, args.rate, args.people))
        return
    if not (NODE_DIR / "node_modules" / "ws").exists():  # the baseline's one dependency, pinned in package.json
        installed = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR,
                                   capture_output=True, text=True, check=False)
        if installed.returncode != 0:
            sys.exit(f"npm install in {NODE_DIR} failed: {installed.stderr.strip()[-500:]}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ws-latency-") as tmp:
        for clients in (int(c) for c in args.clients.split(",")):
            for kind in args.servers.split(","):
                row = measure(kind, clients, args, Path(tmp))
                rows.append(row)
                print(f"  {kind:9s} {clients:5d} clients: p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  "
                      f"({row['messages']} messages, {row['gaps']} lost)", file=sys.stderr, flush=True)
    load = os.getloadavg()
    print(f"\nWS analytics latency, fuse output -> client ({args.rate:g} frames/s x {args.people} speed message(s), "
          f"{args.duration:g} s per run, {args.procs} client processes, {os.cpu_count()} cores, "
          f"load {load[0]:.1f})")
    print("| clients | server | p50 ms | p99 ms | max ms | messages | lost | server CPU | server RSS MB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['clients']} | {r['server']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | "
              f"{r['messages']} | {r['gaps']} | {r['server_cpu'] * 100:.0f}% | {r['server_rss_mb']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    record("ws_latency", rows)


if __name__ == "__main__":
    main()
