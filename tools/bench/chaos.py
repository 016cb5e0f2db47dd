"""Chaos soak: graphs/platform.yaml with real Redis + PostgreSQL while the publisher drops and the databases are
killed (SIGKILL) and restarted; at the end every record the stores received is counted READ BACK FROM THE
DATABASES (Redis XLEN + distinct uids, PostgreSQL count(*) + count(DISTINCT uid)): 0 lost, 0 duplicated.

Everything real, on loopback: redis-server (AOF, appendfsync always: an acknowledged write survives kill -9) and
PostgreSQL in temporary folders, an ffmpeg RTMP publisher looping a synthetic 720p30 scene (tools/testsrc.py),
`flowgraph run graphs/platform.yaml`, WebSocket clients on the analytics stream. Every `--publisher-every` seconds
the publisher is killed and restarted a few seconds later; every `--kill-every` seconds Redis, then (half a period
later) PostgreSQL is SIGKILLed and restarted after `--down-s` seconds. Every 10 s a line: RSS, ingest fps, records
received / written / spooled per store. Finally the publisher stops, the stores drain (spool replayed), the graph
stops, and the databases are counted. Results in $FLOWGRAPH_RESULTS/chaos.json.

    python tools/bench/chaos.py --minutes 3       (short, also --quick: publisher drop every 45 s, kills every 60 s)
    python tools/bench/chaos.py --minutes 60      (the full soak: every 180 s / 300 s; the default is 25 minutes so
                                                   that `flowgraph bench` finishes it within its 30-minute limit)

Viewer (WebRTC) churn is not part of this tool; tools/bench/soak.py and webrtc_churn.py cover viewers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _net import free_port, wait_port
from _servers import pg_bin
from _webrtc_common import FLOWGRAPH, PY, ROOT, Proc, rss_mib, tree, wait_http

STORES = {"cache": "redis", "history": "postgresql"}


class KillableRedis:
    """redis-server that can be SIGKILLed and restarted on the same port and data (AOF, fsync always)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, 60)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(20)
            self.proc = None


class KillablePostgres:
    """A PostgreSQL cluster that can be SIGKILLed (postmaster and backends) and restarted (crash recovery)."""

    def __init__(self, directory: Path) -> None:
        import shutil

        self.dir = directory
        self.dir.mkdir(parents=True)
        self.data = directory / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.root = os.geteuid() == 0
        if self.root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.bin = pg_bin()
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.root else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c shared_buffers=64MB"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w",
                  "-t", "120", "start")
        wait_port(self.port, 60)

    def kill(self) -> None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        for child in [pid, *map(int, children)]:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        except subprocess.CalledProcessError:
            pass


async def metrics(base: str) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(base + "/api/metrics") as response:
        data: dict[str, Any] = await response.json()
        return data


def store_counters(snap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: snap["nodes"][name].get("counters", {}) for name in STORES if name in snap["nodes"]}


async def count_redis(url: str) -> dict[str, int]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    entries = uids = 0
    try:
        async for key in client.scan_iter(match="fg:*:analytics"):
            entries += await client.xlen(key)
            seen: set[str] = set()
            low = "-"
            while True:
                page = await client.xrange(key, low, "+", count=5000)
                for _, fields in page:
                    seen.add(json.loads(fields[b"d"])["uid"])
                if len(page) < 5000:
                    break
                low = "(" + page[-1][0].decode()
            uids += len(seen)
    finally:
        await client.aclose()
    return {"rows": entries, "distinct": uids}


async def count_postgres(url: str) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow("SELECT count(*), count(DISTINCT uid) FROM analytics")
    finally:
        await conn.close()
    return {"rows": int(row[0]), "distinct": int(row[1])}


async def chaos(args: argparse.Namespace, out: Path) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="fg-chaos-"))
    os.chmod(tmp, 0o755)  # PostgreSQL runs as its own user and must reach its folder inside
    redis, postgres = KillableRedis(tmp / "redis"), KillablePostgres(tmp / "pg")
    redis.start()
    postgres.start()
    procs: list[Proc] = []
    events: list[str] = []
    samples: list[dict[str, Any]] = []
    start = time.monotonic()

    def note(text: str) -> None:
        line = f"{time.monotonic() - start:7.1f}s  {text}"
        events.append(line)
        print("  ## " + line, flush=True)

    try:
        scene = tmp / "scene.mp4"
        await asyncio.to_thread(subprocess.run, [
            PY, str(ROOT / "tools" / "testsrc.py"), "--width", "1280", "--height", "720", "--fps", "30",
            "--seconds", "20", "--people", "3", "--out", str(scene)], check=True, capture_output=True)
        rtmp, http = free_port(), free_port()
        # all on loopback: the listen check lets the empty API/WS tokens of platform.yaml through
        env = {"STREAM_KEYS": "chaos=main", "API_TOKEN": "", "WS_TOKEN": "",
               "REDIS_URL": redis.url, "POSTGRES_URL": postgres.url,
               "HOST": "127.0.0.1", "VIBRIO_BACKEND": "motion", "XDG_STATE_HOME": str(tmp / "state")}
        log = tmp / "graph.log"
        graph = Proc([FLOWGRAPH, "run", str(ROOT / "graphs" / "platform.yaml"), "--port", str(http),
                      "--set", f"rtmp.url=rtmp://127.0.0.1:{rtmp}/live",
                      "--set", "cache.redis_maxlen=100000000",  # no trimming: every record must stay countable
                      "--set", "cache.retry_s=0.2", "--set", "history.retry_s=0.2"], env=env, log=str(log))
        procs.append(graph)
        base = f"http://127.0.0.1:{http}"
        await wait_http(base + "/api/metrics", timeout=120)
        publish = ["ffmpeg", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(scene), "-c", "copy",
                   "-f", "flv", f"rtmp://127.0.0.1:{rtmp}/live/chaos"]
        publisher: Proc | None = Proc(publish)
        for _ in range(240):  # the schedule starts once video flows (starting the CV stack can take minutes)
            if (await metrics(base))["nodes"]["rtmp"].get("rate_hz"):
                break
            await asyncio.sleep(1.0)
        start = time.monotonic()
        note("video flowing; chaos begins")
        if args.ws:
            procs.append(Proc([PY, str(Path(__file__).with_name("soak.py")), "--ws-client",
                               base.replace("http", "ws") + "/stream/main/analytics", str(args.ws)],
                              log=str(tmp / "ws.log")))
        duration = args.minutes * 60
        next_pub = args.publisher_every
        next_redis = args.kill_every
        next_pg = args.kill_every * 1.5
        pending: list[tuple[float, str]] = []  # (when, what to restart)
        next_sample = 10.0
        kills = {"publisher": 0, "redis": 0, "postgresql": 0}
        print(f"{'min':>5} {'RSS MB':>7} {'fps':>5} " + " ".join(
            f"{name + ' recv/written/spool':>28}" for name in STORES), flush=True)
        while (now := time.monotonic() - start) < duration:
            if now >= next_pub and publisher is not None:
                publisher.stop()
                publisher = None
                kills["publisher"] += 1
                note("publisher dropped")
                pending.append((now + args.down_s, "publisher"))
                next_pub += args.publisher_every
            if now >= next_redis:
                await asyncio.to_thread(redis.kill)
                kills["redis"] += 1
                note("redis SIGKILLed")
                pending.append((now + args.down_s, "redis"))
                next_redis += args.kill_every
            if now >= next_pg:
                await asyncio.to_thread(postgres.kill)
                kills["postgresql"] += 1
                note("postgresql SIGKILLed")
                pending.append((now + args.down_s, "postgresql"))
                next_pg += args.kill_every
            for item in [p for p in pending if p[0] <= now]:
                pending.remove(item)
                if item[1] == "publisher":
                    publisher = Proc(publish)
                elif item[1] == "redis":
                    await asyncio.to_thread(redis.start)
                else:
                    await asyncio.to_thread(postgres.start)
                note(f"{item[1]} back")
            if now >= next_sample:
                next_sample = now + 10
                snap = await metrics(base)
                stores = store_counters(snap)
                sample = {"t": round(now, 1), "rss_mb": round(rss_mib(tree(graph.pid)), 1),
                          "fps": snap["nodes"]["rtmp"].get("rate_hz"), "stores": stores}
                samples.append(sample)
                print(f"{now / 60:>5.1f} {sample['rss_mb']:>7.1f} {sample['fps'] or 0:>5.1f} " + " ".join(
                    f"{c.get('received', 0):>10}/{c.get('written', 0):>8}/{c.get('spool_segments', 0):>6}"
                    for c in stores.values()), flush=True)
            await asyncio.sleep(0.5)
        # the end: everything back, publisher off, stores drained
        for _, what in pending:
            if what == "redis":
                await asyncio.to_thread(redis.start)
            elif what == "postgresql":
                await asyncio.to_thread(postgres.start)
        if publisher is not None:
            publisher.stop()
        note("publisher stopped; waiting for the stores to drain")
        drained = False
        previous: dict[str, Any] = {}
        for _ in range(240):
            await asyncio.sleep(1.0)
            stores = store_counters(await metrics(base))
            steady = stores == previous
            previous = stores
            if steady and all(c.get("up") and not c.get("spool_segments") and c.get("received") ==
                              c.get("written", 0) + c.get("rejected", 0) + c.get("lost", 0)
                              for c in stores.values()):
                drained = True
                break
        final = store_counters(await metrics(base))
        graph.popen.send_signal(signal.SIGTERM)  # a graceful stop: the stores log their final counters
        try:
            await asyncio.to_thread(graph.popen.wait, 120)
        except subprocess.TimeoutExpired:
            note("graph did not stop in 120 s")
        procs.remove(graph)
        graph.stop()
        lines = log.read_text(errors="replace").splitlines()
        logged = [line for line in lines if " ERROR " in line]
        for line in lines:  # "store cache (redis://…) stopped: {json}" — counts that include the shutdown flush
            for name in STORES:
                if f"store {name} (" in line and " stopped: " in line:
                    final[name] = {**final.get(name, {}), **json.loads(line.split(" stopped: ", 1)[1])}
                    final[name]["from_stop_log"] = True
        counted = {"cache": await count_redis(redis.url), "history": await count_postgres(postgres.url)}
    finally:
        for proc in reversed(procs):
            proc.stop()
        if "publisher" in locals() and publisher is not None:
            publisher.stop()
        redis.stop()
        postgres.stop()
    verdicts = {}
    for name, counters in final.items():
        db = counted[name]
        received = counters.get("received", 0)
        verdicts[name] = {
            "backend": STORES[name], "received": received, "written_counter": counters.get("written"),
            "in_database": db["rows"], "distinct_in_database": db["distinct"],
            "lost": received - db["distinct"], "duplicated": db["rows"] - db["distinct"],
            "spool_lost": counters.get("lost"), "rejected": counters.get("rejected"),
            "outages": counters.get("outages"), "replayed": counters.get("replayed"),
            "final_counts_from_stop_log": bool(counters.get("from_stop_log")),
        }
    backs = [float(e.split("s", 1)[0]) for e in events if e.endswith("publisher back")]
    resumed = [any(t < smp["t"] <= t + 60 and (smp["fps"] or 0) > 10 for smp in samples) for t in backs]
    warm = [smp for smp in samples if smp["t"] >= min(60.0, args.minutes * 15)]
    rss_slope = ((warm[-1]["rss_mb"] - warm[0]["rss_mb"]) / ((warm[-1]["t"] - warm[0]["t"]) / 60)
                 if len(warm) >= 2 and warm[-1]["t"] > warm[0]["t"] else None)
    result = {"minutes": args.minutes, "video_resumed": resumed, "rss_slope_mb_per_min": rss_slope,
              "publisher_every_s": args.publisher_every, "kill_every_s": args.kill_every,
              "down_s": args.down_s, "ws_clients": args.ws, "kills": kills, "drained": drained,
              "load_avg": os.getloadavg(), "stores": verdicts, "events": events, "samples": samples,
              "errors_logged": len(logged), "first_errors": logged[:10]}
    write_result(out, result)
    print(f"\nchaos soak: {args.minutes} min, kills {kills}, drained={drained}, load {os.getloadavg()}")
    print(f"{'store':<8} {'backend':<11} {'received':>9} {'in DB':>8} {'distinct':>9} {'lost':>6} {'dup':>5}"
          f" {'outages':>7} {'replayed':>8}")
    for name, v in verdicts.items():
        print(f"{name:<8} {v['backend']:<11} {v['received']:>9} {v['in_database']:>8} {v['distinct_in_database']:>9}"
              f" {v['lost']:>6} {v['duplicated']:>5} {v['outages']!s:>7} {v['replayed']!s:>8}")
    for line in logged[:5]:
        print("  " + line[:200])
    print(f"video resumed after each publisher drop (ingest > 10 fps within 60 s): {resumed}; RSS slope after "
          f"warm-up: {rss_slope if rss_slope is None else round(rss_slope, 2)} MB/min")
    ok = drained and all(resumed) and all(v["final_counts_from_stop_log"] and v["lost"] == 0 and v["duplicated"] == 0
                         and v["received"] > 0 for v in verdicts.values())
    print("RESULT:", "PASS (0 lost, 0 duplicated)" if ok else "FAIL")
    return 0 if ok else 1


def write_result(out: Path, result: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "chaos.json").write_text(json.dumps(result, indent=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--quick", action="store_true", help="3 minutes")
    parser.add_argument("--publisher-every", type=float, default=None, help="seconds (default 180; 45 if < 15 min)")
    parser.add_argument("--kill-every", type=float, default=None, help="seconds (default 300; 60 if < 15 min)")
    parser.add_argument("--down-s", type=float, default=5.0, help="how long each thing stays down")
    parser.add_argument("--ws", type=int, default=100, help="WebSocket clients on the analytics stream")
    args = parser.parse_args()
    if args.quick:
        args.minutes = 3.0
    short = args.minutes < 15
    args.publisher_every = args.publisher_every or (45.0 if short else 180.0)
    args.kill_every = args.kill_every or (60.0 if short else 300.0)
    out = Path(os.environ.get("FLOWGRAPH_RESULTS", "."))
    return asyncio.run(chaos(args, out))


if __name__ == "__main__":
    sys.exit(main())
