"""PostgreSQL backend (``postgresql://user@host:port/db``): a time-series table written with batched COPY.

Table (name from the ``table`` param)::

    stream_id text, ts timestamptz, type text, frame_id bigint, seq bigint, track_id bigint, uid text,
    payload jsonb                      -- index (stream_id, ts)

A batch is one ``COPY ... FROM STDIN (FORMAT binary)`` through asyncpg: one round trip, atomic. A connection
lost mid-COPY leaves nothing behind (the COPY's transaction aborts), so the batch is spooled and replayed whole.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from .backends import Backend, BackendDown
from .records import Record, wire

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
COLUMNS = ("stream_id", "ts", "type", "frame_id", "seq", "track_id", "uid", "payload")
_UTC = dt.UTC
#: Errors that mean "not reachable now": retried from the spool. Anything else is a bad batch.
_DOWN: tuple[type[BaseException], ...] = (
    OSError, ConnectionError, TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # the protocol state machine after the server dropped the connection
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,
)


def _stamp(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, _UTC)


class PostgresBackend(Backend):
    name = "postgresql"

    def __init__(self, url: str, *, table: str = "analytics", connect_timeout: float = 3.0) -> None:
        if not _NAME.match(table):
            raise ValueError(f"bad table name {table!r}")
        self.url = url.replace("postgres://", "postgresql://", 1)
        self.table = table
        self.connect_timeout = connect_timeout
        self._conn: asyncpg.Connection | None = None  # the writer's
        self._reader: asyncpg.Connection | None = None  # queries get their own: a connection runs one thing at once
        self._reader_lock: Any = None

    def describe(self) -> str:
        parts = urlsplit(self.url)
        return f"postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}"

    async def connect(self) -> None:
        await self.close()
        try:
            conn = await asyncpg.connect(self.url, timeout=self.connect_timeout)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (stream_id text NOT NULL, ts timestamptz NOT NULL, "
                "type text NOT NULL, frame_id bigint, seq bigint, track_id bigint, uid text NOT NULL, "
                "payload jsonb NOT NULL)")
            await conn.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_stream_ts ON {self.table} (stream_id, ts)")
        except _DOWN as exc:
            raise BackendDown(f"postgresql {self.describe()}: {exc}") from exc
        self._conn = conn

    async def write(self, records: Sequence[Record]) -> None:
        conn = self._conn
        if conn is None or conn.is_closed():
            raise BackendDown("postgresql is not connected")
        rows = [(r.stream_id, _stamp(r.ts), r.type, r.frame_id, r.seq, r.track_id, r.uid, r.payload)
                for r in records]
        try:
            await conn.copy_records_to_table(self.table, records=rows, columns=COLUMNS)
        except _DOWN as exc:
            self._conn = None
            conn.terminate()  # half a COPY left on it: never reuse this connection
            raise BackendDown(f"postgresql {self.describe()}: {exc}") from exc

    async def query(self, stream_id: str, t_from: float | None, t_to: float | None, types: Sequence[str] | None,
                    limit: int) -> list[dict[str, Any]]:
        sql = f"SELECT type, seq, payload::text FROM {self.table} WHERE stream_id = $1"
        args: list[Any] = [stream_id]
        if t_from is not None:
            args.append(_stamp(t_from))
            sql += f" AND ts >= ${len(args)}"
        if t_to is not None:
            args.append(_stamp(t_to))
            sql += f" AND ts <= ${len(args)}"
        if types:
            args.append(list(types))
            sql += f" AND type = ANY(${len(args)}::text[])"
        args.append(limit)
        sql += f" ORDER BY ts LIMIT ${len(args)}"
        rows = await self._read("fetch", sql, *args)
        return [wire(row[0], row[1], row[2]) for row in rows]

    async def has_stream(self, stream_id: str) -> bool:
        try:
            found = await self._read("fetchval", f"SELECT EXISTS (SELECT 1 FROM {self.table} WHERE stream_id = $1)",
                                     stream_id)
        except BackendDown:
            return False
        return bool(found)

    async def _read(self, method: str, sql: str, *args: Any) -> Any:
        """Run a query on the reader connection (opened on first use, reopened after a failure)."""
        import asyncio

        if self._reader_lock is None:
            self._reader_lock = asyncio.Lock()
        async with self._reader_lock:
            for attempt in (1, 2):
                reused = self._reader is not None and not self._reader.is_closed()
                try:
                    if not reused:
                        self._reader = await asyncpg.connect(self.url, timeout=self.connect_timeout)
                    assert self._reader is not None
                    return await getattr(self._reader, method)(sql, *args)
                except _DOWN as exc:
                    if self._reader is not None:
                        self._reader.terminate()
                        self._reader = None
                    if reused and attempt == 1:
                        continue  # a connection the server dropped while idle (restart): one fresh try
                    raise BackendDown(f"postgresql {self.describe()}: {exc}") from exc
            raise AssertionError("unreachable")

    async def close(self) -> None:
        for attr in ("_conn", "_reader"):
            conn = getattr(self, attr)
            if conn is None:
                continue
            setattr(self, attr, None)
            try:
                await conn.close(timeout=2)
            except Exception:  # closing a dead connection: nothing more to release
                conn.terminate()
