"""Memory and healthy-client latency with stalled WebSocket clients whose socket buffers really fill.

Ten clients complete the handshake and never read again; five healthy clients read everything and measure
latency (and count lost messages by sequence number). Messages are sent fast (default 500/s of ~1 KB, i.e.
≈ 0.5 MB/s per client) so each stalled connection's kernel buffers (a few MB on loopback) fill within seconds;
the server side's Send-Q is read with ``ss`` to show it. The server's RSS is sampled every second.

Servers, each in its own process: flowgraph (``bench_analytics → ws_out``: bounded per-client queue, oldest
dropped), Node.js ``ws`` with the idiomatic ``client.send`` broadcast, and Node.js skipping clients whose
``bufferedAmount`` is over 1 MB (what a careful Node server does).

    python tools/bench/ws_stalled.py [--seconds 40] [--rate 500] [--pad 800] [--stalled 10] [--healthy 5]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import record

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))


def graph_yaml(port: int, rate: float, pad: int) -> str:
    return f"""name: ws-stalled
nodes:
  src: {{node: bench_analytics, params: {{hz: {rate}, pad_bytes: {pad}, mix: false}}}}
  ws:
    node: ws_out
    inputs: {{analytics: src/out}}
    params: {{ping_interval_s: 0, queue_size: 256, high_water_kb: 256}}
"""


async def serve_flowgraph(port: int, rate: float, pad: int) -> None:
    from _benchnodes import registry

    from flowgraph.testing import compile_text, running

    plan = compile_text(graph_yaml(port, rate, pad), registry=registry())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with running(plan, port=port) as rt:
        print(f"ready {port}", flush=True)
        await stop.wait()
        print(json.dumps(rt.runners["ws"].node.hub.stats()), file=sys.stderr, flush=True)


def start_server(kind: str, port: int, args: argparse.Namespace, workdir: Path) -> subprocess.Popen[str]:
    if kind == "flowgraph":
        cmd = [sys.executable, str(Path(__file__)), "--serve", "--port", str(port), "--rate", str(args.rate),
               "--pad", str(args.pad)]
    else:
        from _benchnodes import make_message

        template = workdir / "template.json"
        template.write_text(json.dumps([make_message(0, mix=False, pad_bytes=args.pad).to_wire()]))
        cmd = ["node", str(HERE / "ws_node" / "broadcast.js"), "--port", str(port), "--rate", str(args.rate),
               "--templates", str(template)]
        if kind == "node-checked":
            cmd += ["--check-buffered", str(1 << 20)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise RuntimeError(f"{kind} server did not start: {line!r}")
    return proc


def stalled_client(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /stream/cam1/analytics HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head.decode(errors="replace"))
    return sock  # never read again


def send_queues(port: int, peers: set[int]) -> list[int]:
    """Server-side Send-Q (bytes the kernel holds, unsent) of the connections to ``peers``."""
    out = subprocess.run(["ss", "-tnH", "state", "established", f"( sport = :{port} )"], capture_output=True,
                         text=True).stdout
    queues = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and int(fields[3].rsplit(":", 1)[1]) in peers:
            queues.append(int(fields[1]))
    return queues


def measure(kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import psutil
    from ws_latency import free_port, percentile

    port = free_port()
    server = start_server(kind, port, args, workdir)
    process = psutil.Process(server.pid)
    out = workdir / f"{kind}.bin"
    healthy = subprocess.Popen([sys.executable, str(HERE / "_wsclient.py"), "--port", str(port), "--clients",
                                str(args.healthy), "--duration", str(args.seconds), "--out", str(out),
                                "--wait-for-go"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert healthy.stdout is not None and healthy.stdin is not None
    assert healthy.stdout.readline().strip() == "connected"
    time.sleep(1.0)
    rss_before = process.memory_info().rss
    stalled = [stalled_client(port) for _ in range(args.stalled)]
    peers = {s.getsockname()[1] for s in stalled}
    healthy.stdin.write(f"{time.time()}\n")
    healthy.stdin.flush()
    samples = []
    started = time.monotonic()
    while time.monotonic() - started < args.seconds:
        time.sleep(1.0)
        samples.append((round(time.monotonic() - started), process.memory_info().rss, send_queues(port, peers)))
    stdout, _ = healthy.communicate(timeout=60)
    summary = json.loads(stdout.strip().splitlines()[-1])
    latencies = array.array("d")
    latencies.frombytes(out.read_bytes())
    ordered = sorted(latencies)
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
    for sock in stalled:
        sock.close()
    rss = [r for _, r, _ in samples]
    filled = [q for _, _, q in samples if q]
    return {
        "server": kind, "rss_before_mb": rss_before / 1e6, "rss_after_10s_mb": rss[min(9, len(rss) - 1)] / 1e6,
        "rss_end_mb": rss[-1] / 1e6, "rss_max_mb": max(rss) / 1e6,
        "stalled_sendq_kb_min": min(filled[-1]) / 1024 if filled else 0,
        "healthy_messages": summary["messages"], "healthy_lost": summary["gaps"],
        "healthy_p50_ms": percentile(ordered, 50) * 1000 if ordered else None,
        "healthy_p99_ms": percentile(ordered, 99) * 1000 if ordered else None,
        "timeline": [(t, round(r / 1e6, 1), round(sum(q) / 1e6, 2)) for t, r, q in samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--rate", type=float, default=500.0, help="messages per second")
    parser.add_argument("--pad", type=int, default=800, help="extra payload bytes per message")
    parser.add_argument("--stalled", type=int, default=10)
    parser.add_argument("--healthy", type=int, default=5)
    parser.add_argument("--servers", default="flowgraph,node,node-checked")
    parser.add_argument("--json", help="also write the rows (with RSS timelines) to this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_flowgraph(args.port, args.rate, args.pad))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="ws-stalled-") as tmp:
        for kind in args.servers.split(","):
            row = measure(kind, args, Path(tmp))
            rows.append(row)
            print(f"  {kind}: RSS {row['rss_before_mb']:.0f} -> {row['rss_end_mb']:.0f} MB, healthy p99 "
                  f"{row['healthy_p99_ms']:.1f} ms, lost {row['healthy_lost']}", file=sys.stderr, flush=True)
    load = os.getloadavg()
    print(f"\n{args.stalled} stalled + {args.healthy} healthy WS clients, {args.rate:g} msg/s of ~{args.pad + 250} B, "
          f"{args.seconds:g} s; {os.cpu_count()} cores, load {load[0]:.1f}")
    print("| server | RSS before MB | RSS at 10 s | RSS end | RSS max | stalled Send-Q KB (min) | healthy msgs | "
          "healthy lost | healthy p50 ms | healthy p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['server']} | {r['rss_before_mb']:.0f} | {r['rss_after_10s_mb']:.0f} | {r['rss_end_mb']:.0f} | "
              f"{r['rss_max_mb']:.0f} | {r['stalled_sendq_kb_min']:.0f} | {r['healthy_messages']} | "
              f"{r['healthy_lost']} | {r['healthy_p50_ms']:.2f} | {r['healthy_p99_ms']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    record("ws_stalled", rows)


if __name__ == "__main__":
    main()
