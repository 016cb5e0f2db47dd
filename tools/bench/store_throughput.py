"""Store throughput per backend — flowgraph's ``store`` node (lossless edge, batching, spool armed) beside the raw
driver writing the same rows in the same batches, measured in the same run.

raw:        the rows built from the same messages (JSON-encoded payload), then per batch:
            sqlite3 ``executemany`` in a transaction · redis.asyncio pipelined ``XADD`` · asyncpg ``COPY``;
            timed once with the encoding ("encode + write"), once with rows built beforehand ("prebuilt")
flowgraph:  ``bench_analytics (prebuilt messages) → store`` on a ``block`` edge (queue 512, as in
            graphs/demo.yaml), timed from the first message
            sent until the store reports every record written.

    python tools/bench/store_throughput.py [--records 100000] [--batch 500] [--backends sqlite,redis,postgresql]

Starts its own redis-server and PostgreSQL (temporary directories, free ports). Numbers on a shared machine are
noisy; each figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _benchnodes import make_message, registry  # noqa: E402
from _report import record  # noqa: E402
from _servers import Postgres, Redis  # noqa: E402

from flowgraph.testing import compile_text, running  # noqa: E402

TABLE = ("CREATE TABLE IF NOT EXISTS analytics (uid TEXT NOT NULL, stream_id TEXT NOT NULL, ts REAL NOT NULL, "
         "type TEXT NOT NULL, frame_id INTEGER, seq INTEGER, track_id INTEGER, payload TEXT NOT NULL)")


def rows_of(messages: list[Any]) -> list[tuple[Any, ...]]:
    return [(f"raw-{i}", m.stream_id, m.payload["timestamp"], m.type, m.frame_id, i + 1, m.payload.get("track_id"),
             json.dumps(m.payload, separators=(",", ":"))) for i, m in enumerate(messages)]


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i: i + size] for i in range(0, len(items), size)]


# -- raw drivers ------------------------------------------------------------------------------------------------
async def raw_sqlite(messages: list[Any], batch: int, workdir: Path, prebuilt: bool = False) -> float:
    path = workdir / "raw.db"
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(TABLE)
    db.execute("CREATE INDEX IF NOT EXISTS analytics_stream_ts ON analytics (stream_id, ts)")
    ready = rows_of(messages) if prebuilt else None
    started = time.perf_counter()
    for chunk in batches(ready if ready is not None else rows_of(messages), batch):
        db.execute("BEGIN")
        db.executemany("INSERT INTO analytics VALUES (?, ?, ?, ?, ?, ?, ?, ?)", chunk)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


def wire_json(m: Any) -> str:
    return json.dumps({"type": m.type, "payload": m.payload, "seq": m.seq}, separators=(",", ":"))


async def raw_redis(messages: list[Any], batch: int, url: str, prebuilt: bool = False) -> float:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    await client.delete("raw:cam1:analytics")
    bodies = [wire_json(m) for m in messages] if prebuilt else None
    started = time.perf_counter()
    for start in range(0, len(messages), batch):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + batch, len(messages))):
            body = bodies[i] if bodies is not None else wire_json(messages[i])
            pipe.xadd("raw:cam1:analytics", {"d": body}, maxlen=len(messages), approximate=True)
        await pipe.execute()
    elapsed = time.perf_counter() - started
    await client.delete("raw:cam1:analytics")
    await client.aclose()
    return elapsed


async def raw_postgres(messages: list[Any], batch: int, url: str, prebuilt: bool = False) -> float:
    import asyncpg

    conn = await asyncpg.connect(url)
    await conn.execute("DROP TABLE IF EXISTS raw_analytics")
    await conn.execute("CREATE TABLE raw_analytics (stream_id text NOT NULL, ts timestamptz NOT NULL, type text NOT "
                       "NULL, frame_id bigint, seq bigint, track_id bigint, uid text NOT NULL, payload jsonb NOT NULL)")
    await conn.execute("CREATE INDEX ON raw_analytics (stream_id, ts)")
    columns = ("stream_id", "ts", "type", "frame_id", "seq", "track_id", "uid", "payload")
    def convert(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [(r[1], dt.datetime.fromtimestamp(r[2], dt.UTC), r[3], r[4], r[5], r[6], r[0], r[7]) for r in rows]

    ready = convert(rows_of(messages)) if prebuilt else None
    started = time.perf_counter()
    for start in range(0, len(messages), batch):
        if ready is not None:
            records = ready[start: start + batch]
        else:
            records = convert(rows_of(messages[start: start + batch]))
        await conn.copy_records_to_table("raw_analytics", records=records, columns=columns)
    elapsed = time.perf_counter() - started
    await conn.execute("DROP TABLE raw_analytics")
    await conn.close()
    return elapsed


# -- flowgraph ----------------------------------------------------------------------------------------------------
async def flowgraph_store(count: int, batch: int, url: str, workdir: Path, queue: int = 512
                          ) -> tuple[float, dict[str, Any]]:
    text = f"""name: store-bench
nodes:
  src: {{node: bench_analytics, params: {{count: {count}, prebuilt: true}}}}
  db:
    node: store
    inputs: {{analytics: {{from: src/out, policy: block, queue: {queue}}}}}
    params: {{url: "{url}", batch_size: {batch}, spool_dir: "{workdir}/spool", table: fg_analytics,
             key_prefix: fgbench, redis_maxlen: {count}}}
"""
    plan = compile_text(text, registry=registry())
    async with running(plan) as rt:
        source, store = rt.runners["src"].node, rt.runners["db"].node
        for _ in range(10_000_000):  # poll the writer's counter; 1 ms steps cost nothing measurable
            if store.writer.written >= count:
                break
            await asyncio.sleep(0.001)
        done = time.perf_counter()
        counters = store.counters()
    elapsed = done - (source.first_sent or done)
    return elapsed, counters


async def clean(url: str) -> None:
    if url.startswith("redis"):
        import redis.asyncio as aioredis

        client = aioredis.from_url(url)
        keys = await client.keys("fgbench:*")
        if keys:
            await client.delete(*keys)
        await client.aclose()
    elif url.startswith("postgresql"):
        import asyncpg

        conn = await asyncpg.connect(url)
        await conn.execute("DROP TABLE IF EXISTS fg_analytics")
        await conn.close()


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    messages = [make_message(n) for n in range(args.records)]
    for i, m in enumerate(messages):
        m.seq = i + 1
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        workdir = Path(tmp)
        for backend in args.backends.split(","):
            server: Any = None
            if backend == "sqlite":
                url = f"sqlite:///{workdir}/fg.db"
            elif backend == "redis":
                server = Redis()
                url = server.url
            else:
                server = Postgres()
                url = server.url
            try:
                raw_times, prebuilt_times, fg_times = [], [], []
                counters: dict[str, Any] = {}
                for _ in range(args.repeat):
                    for prebuilt, times in ((False, raw_times), (True, prebuilt_times)):
                        if backend == "sqlite":
                            times.append(await raw_sqlite(messages, args.batch, workdir, prebuilt))
                        elif backend == "redis":
                            times.append(await raw_redis(messages, args.batch, url, prebuilt))
                        else:
                            times.append(await raw_postgres(messages, args.batch, url, prebuilt))
                    if backend == "sqlite":
                        (workdir / "fg.db").unlink(missing_ok=True)
                    await clean(url)
                    elapsed, counters = await flowgraph_store(args.records, args.batch, url, workdir)
                    fg_times.append(elapsed)
                raw_rate = args.records / min(raw_times)
                prebuilt_rate = args.records / min(prebuilt_times)
                fg_rate = args.records / min(fg_times)
                rows.append({"backend": backend, "raw_rows_s": raw_rate, "raw_prebuilt_rows_s": prebuilt_rate,
                             "flowgraph_rows_s": fg_rate, "ratio": fg_rate / raw_rate,
                             "ratio_prebuilt": fg_rate / prebuilt_rate, "lost": counters.get("lost"),
                             "spooled": counters.get("spooled"), "written": counters.get("written")})
                print(f"  {backend}: raw {raw_rate:,.0f} rows/s, flowgraph {fg_rate:,.0f} rows/s", file=sys.stderr,
                      flush=True)
            finally:
                if server is not None:
                    server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--backends", default="sqlite,redis,postgresql")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = asyncio.run(bench(args))
    load = os.getloadavg()
    print(f"\nStore throughput, {args.records:,} records (1 detection + 3 speed per frame, ~300-700 B JSON), "
          f"batches of {args.batch}, best of {args.repeat}; {os.cpu_count()} cores, load {load[0]:.1f}")
    print("| backend | raw driver rows/s (encode + write) | raw driver rows/s (rows prebuilt) | flowgraph store "
          "rows/s | flowgraph / raw | flowgraph / prebuilt | written | lost |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['backend']} | {r['raw_rows_s']:,.0f} | {r['raw_prebuilt_rows_s']:,.0f} | "
              f"{r['flowgraph_rows_s']:,.0f} | {r['ratio']:.2f} | {r['ratio_prebuilt']:.2f} | {r['written']:,} | "
              f"{r['lost']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    record("store_throughput", rows)


if __name__ == "__main__":
    main()
