"""store against real backends: SQLite (embedded), redis-server and PostgreSQL killed mid-stream and restarted
(every record present afterwards), a full spool (counted loss), a spool left for the next run, shutdown flush."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from flowgraph.testing import run_to_end, running


def graph(url: str, count: int, hz: float, store: str = "") -> str:
    return f"""name: store-test
nodes:
  tick: {{node: analytics_ticker, params: {{hz: {hz}, count: {count}}}}}
  db:
    node: store
    inputs: {{analytics: tick/out}}
    params: {{url: "{url}", retry_s: 0.05, {store}}}
"""


async def redis_frames(url: str) -> list[int]:
    client = aioredis.from_url(url)
    try:
        entries = await client.xrange("fg:cam1:analytics")
        latest = await client.hgetall("fg:cam1:latest")
        tracks = await client.hgetall("fg:cam1:tracks")
    finally:
        await client.aclose()
    assert b"speed" in latest and len(tracks) == 5  # the latest-state cache: per type and per track
    return [json.loads(fields[b"d"])["payload"]["frame_id"] for _, fields in entries]


async def postgres_frames(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT frame_id FROM analytics WHERE stream_id = 'cam1' ORDER BY ts")
    finally:
        await conn.close()
    return [row[0] for row in rows]


async def test_sqlite_stores_every_record_and_answers_queries(tmp_path: Path, compile_graph: Any,
                                                              eventually: Any) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    async with running(compile_graph(graph(url, 300, 200, "batch_size: 64"))) as rt:
        store = rt.runners["db"].node
        assert await eventually(lambda: store.writer.written >= 5, 30)
        items = await store.query("cam1", None, None, ["speed"], 5)
        assert [m["payload"]["frame_id"] for m in items] == [0, 1, 2, 3, 4]
        assert items[0]["type"] == "speed" and items[0]["payload"]["speed_kmh"] == 10.8
        assert await store.has_stream("cam1") and not await store.has_stream("nope")
        assert await eventually(lambda: rt.snapshot()["nodes"]["tick"]["state"] == "finished")
    db = sqlite3.connect(tmp_path / "a.db")
    frames = [row[0] for row in db.execute("SELECT frame_id FROM analytics ORDER BY rowid")]
    assert frames == list(range(300))
    counters = rt.snapshot()["nodes"]["db"]["counters"]
    assert counters["written"] == 300 and counters["lost"] == 0 and counters["spooled"] == 0


async def test_shutdown_flushes_a_partial_batch(tmp_path: Path, compile_graph: Any) -> None:
    url = f"sqlite:///{tmp_path}/b.db"
    await run_to_end(compile_graph(graph(url, 37, 0, "batch_size: 10000, flush_interval_ms: 60000")))
    assert sqlite3.connect(tmp_path / "b.db").execute("SELECT COUNT(*) FROM analytics").fetchone()[0] == 37


async def test_redis_killed_mid_stream_loses_nothing(redis_server: Any, tmp_path: Path, compile_graph: Any,
                                                     eventually: Any) -> None:
    text = graph(redis_server.url, 600, 200, f"batch_size: 20, flush_interval_ms: 20, spool_dir: {tmp_path}/spool")
    async with running(compile_graph(text)) as rt:
        writer = rt.runners["db"].node.writer
        assert await eventually(lambda: writer.written >= 100, 30)
        redis_server.kill()
        assert await eventually(lambda: writer.spool.spooled > 0 and not writer.up, 30)
        redis_server.start()
        assert await eventually(lambda: rt.snapshot()["nodes"]["tick"]["state"] == "finished", 30)
        assert await eventually(lambda: writer.up and writer.spool.empty(), 30)
    counters = rt.snapshot()["nodes"]["db"]["counters"]
    assert counters["outages"] == 1 and counters["lost"] == 0 and counters["replayed"] > 0
    frames = await redis_frames(redis_server.url)
    assert sorted(frames) == list(range(600))  # every record once: writes are idempotent


async def test_postgres_killed_mid_stream_loses_nothing(postgres: Any, tmp_path: Path, compile_graph: Any,
                                                        eventually: Any) -> None:
    text = graph(postgres.url, 600, 200, f"batch_size: 20, flush_interval_ms: 20, spool_dir: {tmp_path}/spool")
    async with running(compile_graph(text)) as rt:
        store = rt.runners["db"].node
        writer = store.writer
        assert await eventually(lambda: writer.written >= 100, 30)
        postgres.kill()
        assert await eventually(lambda: writer.spool.spooled > 0 and not writer.up, 30)
        await asyncio.to_thread(postgres.start)
        assert await eventually(lambda: rt.snapshot()["nodes"]["tick"]["state"] == "finished", 30)
        assert await eventually(lambda: writer.up and writer.spool.empty(), 30)
        items = await store.query("cam1", None, None, ["speed"], 3)
        assert [m["payload"]["frame_id"] for m in items] == [0, 1, 2]
    counters = rt.snapshot()["nodes"]["db"]["counters"]
    assert counters["outages"] >= 1 and counters["lost"] == 0 and counters["replayed"] > 0
    frames = await postgres_frames(postgres.url)
    assert sorted(frames) == list(range(600))  # every record once: writes are idempotent
    assert counters["rejected"] == 0 and counters["errors_poison"] == 0


async def test_queries_by_time_and_type_on_each_backend(redis_server: Any, postgres: Any, tmp_path: Path,
                                                        compile_graph: Any, eventually: Any) -> None:
    for url in (f"sqlite:///{tmp_path}/q.db", redis_server.url, postgres.url):
        async with running(compile_graph(graph(url, 0, 100, "batch_size: 10, flush_interval_ms: 20"))) as rt:
            writer = rt.runners["db"].node.writer
            assert await eventually(lambda w=writer: w.written >= 30, 30), url
            store = rt.runners["db"].node
            everything = await store.query("cam1", None, None, None, 10_000)
            assert len(everything) >= 30, url
            stamps = [m["payload"]["timestamp"] for m in everything]
            assert stamps == sorted(stamps), url
            t_from, t_to = stamps[10], stamps[20]
            window = await store.query("cam1", t_from, t_to, ["speed"], 10_000)
            assert [m["payload"]["frame_id"] for m in window] == list(range(10, 21)), url
            assert await store.query("cam1", None, None, ["pose"], 10) == [], url
            assert len(await store.query("cam1", None, None, None, 7)) == 7, url
            assert await store.query("other", None, None, None, 10) == [], url


async def test_a_full_spool_counts_what_it_loses(tmp_path: Path, compile_graph: Any, closed_port: int) -> None:
    dead = f"redis://127.0.0.1:{closed_port}/0"  # bound by the fixture, never listening: refused at once
    text = graph(dead, 200, 0, f"batch_size: 10, spool_dir: {tmp_path}/spool, spool_max_mb: 0.004, flush_timeout_s: 0")
    rt = await run_to_end(compile_graph(text))
    counters = rt.snapshot()["nodes"]["db"]["counters"]
    assert counters["written"] == 0 and counters["lost"] > 0
    assert counters["spooled"] + counters["lost"] == 200
    assert counters["spool_bytes"] <= 0.004 * (1 << 20) + 4000


async def test_a_spool_left_by_one_run_is_replayed_by_the_next(redis_server: Any, tmp_path: Path,
                                                               compile_graph: Any, eventually: Any) -> None:
    redis_server.stop()
    spool = tmp_path / "spool"
    text = graph(redis_server.url, 150, 0, f"batch_size: 25, spool_dir: {spool}, flush_timeout_s: 0")
    rt = await run_to_end(compile_graph(text))
    assert rt.snapshot()["nodes"]["db"]["counters"]["spooled"] == 150
    assert len(list(spool.glob("*.jsonl"))) == 6
    redis_server.start()
    async with running(compile_graph(graph(redis_server.url, 0, 1, f"spool_dir: {spool}"))) as rt2:
        writer = rt2.runners["db"].node.writer
        assert await eventually(lambda: writer.up and writer.spool.empty(), 30)
    assert sorted(set(await redis_frames(redis_server.url)))[:150] == list(range(150))
    assert not list(spool.glob("*.jsonl"))


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://", "redis:///0", "nonsense"])
def test_bad_urls_are_refused_before_start(url: str, compile_graph: Any) -> None:
    from flowgraph.errors import GraphError, GraphErrors

    with pytest.raises((GraphError, GraphErrors)) as info:
        compile_graph(graph(url, 1, 0))
    assert "graph.yaml:6:" in str(info.value) or "graph.yaml:7:" in str(info.value)
