"""Chaos soak: graphs/platform.yaml with real Redis + PostgreSQL while the publisher drops and the databases are
killed (SIGKILL) and restarted; at the end every record the stores received is counted READ BACK FROM THE
DATABASES (Redis XLEN + distinct uids, PostgreSQL count(*) + count(DISTINCT uid)): 0 lost, 0 duplicated.

Everything real, on loopback: redis-server (AOF, appendfsync always: an acknowledged write survives kill -9) and
PostgreSQL in temporary folders, an ffmpeg RTMP publisher looping a synthetic 720p30 scene (tools/testsrc.py),
`flowgraph run graphs/platform.yaml`, WebSocket clients on the analytics stream. Every `--publisher-every` seconds
the publisher is killed and restarted a few seconds later; every `--kill-every` seconds Redis, then (half a period
later) PostgreSQL is SIGKILLed and restarted after `--down-s` seconds. Meanwhile `--viewers` aiortc WebRTC viewers
churn: each joins (POST /api/stream/connect), waits for its first RTP packet, watches 20-90 s (RTP counted, never
decoded), leaves (WHEP DELETE) and joins again a few seconds later — a viewer whose video stops (publisher dropped)
leaves and rejoins. Every 10 s a line: RSS, ingest fps, records received / written / spooled per store, viewers
watching; every `--table-every` seconds an interim table (records received / written / counted in each database so
far, viewer joins and first-packet times, load average), so a run cut short still has figures (also written to
chaos.json as it goes). Finally the publisher stops, the stores drain (spool replayed), the graph stops, and the
databases are counted. Results in $FLOWGRAPH_RESULTS/chaos.json.

    python tools/bench/chaos.py --minutes 3       (short, also --quick: publisher drop every 45 s, kills every 60 s)
    python tools/bench/chaos.py --minutes 60      (the full soak: every 180 s / 300 s; the default is 25 minutes so
                                                   that `flowgraph bench` finishes it within its 30-minute limit)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _net import free_port
from _webrtc_common import FLOWGRAPH, PY, ROOT, Proc, rss_mib, tree, wait_http

from flowgraph.testservers import PostgresServer, RedisServer

STORES = {"cache": "redis", "history": "postgresql"}


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


class ViewerChurn:
    """``count`` aiortc viewers joining, watching and leaving for the whole soak (RTP counted, never decoded)."""

    def __init__(self, base: str, stream: str, count: int, hold_s: tuple[float, float] = (20.0, 90.0)) -> None:
        self.base, self.stream, self.count, self.hold_s = base, stream, count, hold_s
        self.joins = 0
        self.watching = 0
        self.first_packet_s: list[float] = []
        self.no_video = 0          # answered, but no RTP within 20 s (a join while the publisher was away)
        self.refused: dict[int, int] = {}  # HTTP status → count (404 while the stream is not live)
        #: no frame for 5 s while watching — the publisher dropped, or this (nice'd, Python) client fell behind —
        #: so the viewer left and rejoined
        self.video_stopped = 0
        self.completed = 0         # watched for the whole hold and left
        self.errors: list[str] = []
        self.frames = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        from flowgraph.nodes.webrtc.aiortc_adapter import allow_loopback_candidates

        allow_loopback_candidates()
        self._tasks = [asyncio.create_task(self._viewer(i), name=f"chaos-viewer-{i}") for i in range(self.count)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _viewer(self, index: int) -> None:
        import aiohttp

        rng = random.Random(1000 + index)
        await asyncio.sleep(rng.uniform(0, 10))  # staggered
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            while True:
                try:
                    await self._session(http, rng.uniform(*self.hold_s))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a soak counts failures and goes on
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(rng.uniform(1.0, 5.0))

    async def _session(self, http: Any, hold_s: float) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        from flowgraph.nodes.webrtc.aiortc_adapter import tap_receiver

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = pc.addTransceiver("video", direction="recvonly")
        frames = [0]
        first: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        started = time.perf_counter()

        def deliver(codec: Any, frame: Any) -> None:
            frames[0] += 1
            if not first.done():
                first.set_result(time.perf_counter() - started)

        tap_receiver(transceiver.receiver, deliver)  # encoded frames counted; the decoder never runs
        self.joins += 1
        location = None
        try:
            await pc.setLocalDescription(await pc.createOffer())
            async with http.post(f"{self.base}/api/stream/connect",
                                 json={"offer": pc.localDescription.sdp, "stream_id": self.stream}) as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    self.refused[response.status] = self.refused.get(response.status, 0) + 1
                    return
            location = body.get("location")
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body["answer"], type="answer"))
            try:
                self.first_packet_s.append(await asyncio.wait_for(first, 20))
            except TimeoutError:
                self.no_video += 1
                return
            self.watching += 1
            try:
                until = time.monotonic() + hold_s
                seen, seen_at = frames[0], time.monotonic()
                while time.monotonic() < until:
                    await asyncio.sleep(1.0)
                    if frames[0] != seen:
                        seen, seen_at = frames[0], time.monotonic()
                    elif time.monotonic() - seen_at > 5.0:
                        self.video_stopped += 1
                        break
                else:
                    self.completed += 1
            finally:
                self.watching -= 1
        finally:
            self.frames += frames[0]
            if location:
                try:
                    async with http.delete(self.base + location) as response:
                        await response.read()
                except Exception:  # the server may have ended this viewer already
                    pass
            await pc.close()

    def figures(self) -> dict[str, Any]:
        ms = sorted(t * 1000 for t in self.first_packet_s)
        return {"viewers": self.count, "joins": self.joins, "watching": self.watching, "completed": self.completed,
                "video_stopped": self.video_stopped, "no_video": self.no_video, "refused": dict(self.refused),
                "errors": len(self.errors), "first_errors": self.errors[:5], "frames": self.frames,
                "first_packet_ms_p50": round(ms[len(ms) // 2], 1) if ms else None,
                "first_packet_ms_max": round(ms[-1], 1) if ms else None}


async def interim_table(minute: float, stores: dict[str, dict[str, Any]], redis_url: str, postgres_url: str,
                        churn: ViewerChurn | None) -> dict[str, Any]:
    """Counts so far (a soak cut short still reports): per store received / written / in the database."""
    counted: dict[str, Any] = {}
    for name, count in (("cache", count_redis), ("history", count_postgres)):
        url = redis_url if name == "cache" else postgres_url
        try:
            counted[name] = await asyncio.wait_for(count(url), 20)
        except Exception as exc:  # the database may be down right now
            counted[name] = {"rows": None, "distinct": None, "down": type(exc).__name__}
    load = os.getloadavg()
    print(f"\n-- interim at {minute:.1f} min, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}", flush=True)
    print(f"   {'store':<8} {'received':>9} {'written':>8} {'in DB':>8} {'distinct':>9} {'spool':>6} {'outages':>7}")
    for name, c in stores.items():
        db = counted.get(name, {})
        print(f"   {name:<8} {c.get('received', 0):>9} {c.get('written', 0):>8} {db.get('rows')!s:>8} "
              f"{db.get('distinct')!s:>9} {c.get('spool_segments', 0):>6} {c.get('outages', 0)!s:>7}", flush=True)
    figures = churn.figures() if churn is not None else None
    if figures:
        print(f"   viewers: {figures['joins']} joins, {figures['watching']} watching, {figures['completed']} "
              f"watched to the end, {figures['video_stopped']} saw video stop for 5 s, {figures['no_video']} no "
              f"video, refused {figures['refused']}, {figures['errors']} errors; first packet p50 "
              f"{figures['first_packet_ms_p50']} ms, max {figures['first_packet_ms_max']} ms", flush=True)
    print("", flush=True)
    return {"minute": round(minute, 1), "load_avg": load, "counted": counted, "viewers": figures}


async def chaos(args: argparse.Namespace, out: Path) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="fg-chaos-"))
    os.chmod(tmp, 0o755)  # PostgreSQL runs as its own user and must reach its folder inside
    (tmp / "redis").mkdir()
    # Redis: AOF + fsync always (an acknowledged write survives SIGKILL); PostgreSQL with its default durability
    redis = RedisServer(tmp / "redis", durable=True)
    postgres = PostgresServer(tmp / "pg", fast=False, shared_buffers="64MB", timeout_s=120)
    postgres.init()
    redis.start(60)
    postgres.start()
    procs: list[Proc] = []
    events: list[str] = []
    samples: list[dict[str, Any]] = []
    interims: list[dict[str, Any]] = []
    churn: ViewerChurn | None = None
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
        if args.viewers:
            churn = ViewerChurn(base, "main", args.viewers)
            churn.start()
        duration = args.minutes * 60
        next_pub = args.publisher_every
        next_redis = args.kill_every
        next_pg = args.kill_every * 1.5
        pending: list[tuple[float, str]] = []  # (when, what to restart)
        next_sample = 10.0
        next_table = args.table_every
        kills = {"publisher": 0, "redis": 0, "postgresql": 0}
        print(f"{'min':>5} {'RSS MB':>7} {'fps':>5} " + " ".join(
            f"{name + ' recv/written/spool':>28}" for name in STORES) + f" {'watching':>8}", flush=True)
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
                    await asyncio.to_thread(redis.start, 60)
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
                sample["watching"] = churn.watching if churn is not None else None
                print(f"{now / 60:>5.1f} {sample['rss_mb']:>7.1f} {sample['fps'] or 0:>5.1f} " + " ".join(
                    f"{c.get('received', 0):>10}/{c.get('written', 0):>8}/{c.get('spool_segments', 0):>6}"
                    for c in stores.values()) + f" {sample['watching']!s:>8}", flush=True)
                if now >= next_table:
                    next_table += args.table_every
                    interims.append(await interim_table(now / 60, stores, redis.url, postgres.url, churn))
                    write_result(out, {"partial": True, "minutes_so_far": round(now / 60, 1), "kills": kills,
                                       "interims": interims, "events": events, "samples": samples})
            await asyncio.sleep(0.5)
        # the end: viewers leave, everything back, publisher off, stores drained
        if churn is not None:
            await churn.stop()
        for _, what in pending:
            if what == "redis":
                await asyncio.to_thread(redis.start, 60)
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
        if churn is not None:
            await churn.stop()
        for proc in reversed(procs):
            proc.stop()
        if "publisher" in locals() and publisher is not None:
            publisher.stop()
        redis.stop()
        postgres.stop("fast")
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
              "load_avg": os.getloadavg(), "stores": verdicts, "viewers": churn.figures() if churn else None,
              "interims": interims, "events": events, "samples": samples,
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
    if churn is not None:
        v = churn.figures()
        print(f"viewer churn ({v['viewers']} viewers): {v['joins']} joins, {v['completed']} watched to the end, "
              f"{v['video_stopped']} saw video stop for 5 s and rejoined, {v['no_video']} no video within 20 s, "
              f"refused {v['refused']}, {v['errors']} errors; first packet p50 {v['first_packet_ms_p50']} ms, "
              f"max {v['first_packet_ms_max']} ms; {v['frames']} frames received")
        for line in v["first_errors"]:
            print("  viewer error: " + line)
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
    parser.add_argument("--viewers", type=int, default=4, help="WebRTC viewers churning (join, watch, leave)")
    parser.add_argument("--table-every", type=float, default=None,
                        help="seconds between interim tables (default 300; 60 if < 15 min)")
    args = parser.parse_args()
    if args.quick:
        args.minutes = 3.0
    short = args.minutes < 15
    args.publisher_every = args.publisher_every or (45.0 if short else 180.0)
    args.kill_every = args.kill_every or (60.0 if short else 300.0)
    args.table_every = args.table_every or (60.0 if short else 300.0)
    out = Path(os.environ.get("FLOWGRAPH_RESULTS", "."))
    return asyncio.run(chaos(args, out))


if __name__ == "__main__":
    sys.exit(main())
