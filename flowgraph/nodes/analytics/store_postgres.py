"""PostgreSQL backend (``postgresql://user@host:port/db``): a time-series table, written idempotently in batches.

Table (name from the ``table`` param)::

    stream_id text, ts timestamptz, type text, frame_id bigint, seq bigint, track_id bigint, uid text,
    payload jsonb                      -- index (stream_id, ts); unique index (uid)

A batch is one ``INSERT ... SELECT FROM unnest($1, ...) ON CONFLICT (uid) DO NOTHING`` (one round trip, one
statement, atomic, with a timeout): a batch replayed after an outage — even one that had landed before the
connection died — adds only the records that are not there yet. (Plain ``COPY`` cannot skip duplicates.)

At connect the table is created, or checked to have these columns and types: a table of another shape is a
configuration error at start, not an endless outage.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from asyncpg import exceptions as pg

from .backends import Backend, BackendDown, BackendMisconfigured, ErrorRule, Verdict
from .records import Record, wire

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: column → (SQL type in CREATE, information_schema data_type)
SCHEMA = {"stream_id": ("text NOT NULL", "text"), "ts": ("timestamptz NOT NULL", "timestamp with time zone"),
          "type": ("text NOT NULL", "text"), "frame_id": ("bigint", "bigint"), "seq": ("bigint", "bigint"),
          "track_id": ("bigint", "bigint"), "uid": ("text NOT NULL", "text"), "payload": ("jsonb NOT NULL", "jsonb")}
COLUMNS = tuple(SCHEMA)
_ARRAYS = ("text[]", "timestamptz[]", "text[]", "bigint[]", "bigint[]", "bigint[]", "text[]", "jsonb[]")
_UTC = dt.UTC

#: What each PostgreSQL / asyncpg error means to the writer (first match wins; after backends.COMMON).
ERRORS: tuple[ErrorRule, ...] = (
    ErrorRule(Verdict.OUTAGE, "connection lost (asyncpg protocol state after the server closed it)",
              (pg.InternalClientError, pg.InterfaceError)),
    ErrorRule(Verdict.OUTAGE, "connection failure (08xxx)", (pg.PostgresConnectionError, OSError)),
    ErrorRule(Verdict.OUTAGE, "read-only transaction: a standby or failover (25006)",
              (pg.ReadOnlySQLTransactionError,)),
    ErrorRule(Verdict.OUTAGE, "transaction aborted on this connection (25P02)", (pg.InFailedSQLTransactionError,)),
    ErrorRule(Verdict.OUTAGE, "server shutting down, restarting or cancelling (57xxx)",
              (pg.OperatorInterventionError,)),
    ErrorRule(Verdict.OUTAGE, "out of disk, memory or connections (53xxx)", (pg.InsufficientResourcesError,)),
    ErrorRule(Verdict.OUTAGE, "table dropped (42P01): reconnecting creates it", (pg.UndefinedTableError,)),
    ErrorRule(Verdict.RETRY, "serialization failure or deadlock (40xxx)", (pg.TransactionRollbackError,)),
    ErrorRule(Verdict.RETRY, "lock not available (55P03)", (pg.LockNotAvailableError,)),
    ErrorRule(Verdict.CONFIG, "authentication or unknown database (28xxx, 3D000)",
              (pg.InvalidAuthorizationSpecificationError, pg.InvalidCatalogNameError)),
    ErrorRule(Verdict.CONFIG, "table shape or privileges (42xxx)", (pg.SyntaxOrAccessError,)),
    ErrorRule(Verdict.POISON, "bad data (22xxx) or a violated constraint (23xxx)",
              (pg.DataError, pg.IntegrityConstraintViolationError)),
)


def _stamp(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, _UTC)


class PostgresBackend(Backend):
    name = "postgresql"
    errors = ERRORS

    def __init__(self, url: str, *, table: str = "analytics", connect_timeout: float = 3.0,
                 write_timeout_s: float = 30.0, lock_timeout_s: float = 5.0) -> None:
        if not _NAME.match(table):
            raise ValueError(f"bad table name {table!r}")
        self.url = url.replace("postgres://", "postgresql://", 1)
        self.table = table
        self.connect_timeout = connect_timeout
        self.write_timeout_s = write_timeout_s
        self.lock_timeout_s = lock_timeout_s
        self._conn: asyncpg.Connection | None = None  # the writer's
        self._reader: asyncpg.Connection | None = None  # queries get their own: a connection runs one thing at once
        self._reader_lock: asyncio.Lock | None = None
        columns = ", ".join(COLUMNS)
        unnest = ", ".join(f"${i}::{kind}" for i, kind in enumerate(_ARRAYS, 1))
        self._insert = (f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({unnest}) "
                        "ON CONFLICT (uid) DO NOTHING")

    def describe(self) -> str:
        parts = urlsplit(self.url)
        return f"postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}"

    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def connect(self) -> None:
        await self.close()
        try:
            conn = await asyncpg.connect(self.url, timeout=self.connect_timeout, server_settings={
                "lock_timeout": f"{int(self.lock_timeout_s * 1000)}ms"})
        except Exception as exc:
            raise self._connect_error(exc) from exc
        try:
            if await conn.fetchval("SHOW transaction_read_only") == "on":
                raise BackendDown(f"postgresql {self.describe()} is read-only (a standby, or failover under way)")
            await self._prepare(conn)
        except BaseException as exc:
            conn.terminate()
            if isinstance(exc, BackendDown | BackendMisconfigured) or not isinstance(exc, Exception):
                raise
            raise self._connect_error(exc) from exc
        self._conn = conn

    def _connect_error(self, exc: Exception) -> Exception:
        verdict, what = self.classify(exc)
        text = f"postgresql {self.describe()}: {what}: {type(exc).__name__}: {exc}"
        return BackendMisconfigured(text) if verdict is Verdict.CONFIG else BackendDown(text)

    async def _prepare(self, conn: asyncpg.Connection) -> None:
        """Create the table and its indexes, or check that an existing table has the columns we write."""
        found = {row[0]: row[1] for row in await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1", self.table)}
        if not found:
            columns = ", ".join(f"{name} {sql}" for name, (sql, _) in SCHEMA.items())
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} ({columns})")
        else:
            wrong = [f"{name} {kind}" + (f" (is {found[name]})" if name in found else " (missing)")
                     for name, (_, kind) in SCHEMA.items() if found.get(name) != kind]
            if wrong:
                raise BackendMisconfigured(
                    f"postgresql {self.describe()}: table {self.table!r} does not fit: needs "
                    f"{', '.join(wrong)} — drop it, alter it, or set another `table`")
        await conn.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_stream_ts ON {self.table} (stream_id, ts)")
        try:
            await conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {self.table}_uid ON {self.table} (uid)")
        except pg.UniqueViolationError as exc:
            raise BackendMisconfigured(
                f"postgresql {self.describe()}: table {self.table!r} holds duplicate uids (written before writes "
                f"were idempotent); remove the duplicates or set another `table` ({exc})") from exc

    async def write(self, records: Sequence[Record]) -> None:
        conn = self._conn
        if conn is None or conn.is_closed():
            raise BackendDown("postgresql is not connected")
        columns: list[list[Any]] = [[] for _ in COLUMNS]
        for r in records:
            for column, value in zip(columns, (r.stream_id, _stamp(r.ts), r.type, r.frame_id, r.seq, r.track_id,
                                               r.uid, r.payload), strict=True):
                column.append(value)
        await conn.execute(self._insert, *columns, timeout=self.write_timeout_s)

    async def drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()  # an error mid-statement may leave it half way through the protocol: never reuse

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
        sql += f" ORDER BY ts, uid LIMIT ${len(args)}"
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
        if self._reader_lock is None:
            self._reader_lock = asyncio.Lock()
        async with self._reader_lock:
            for attempt in (1, 2, 3):
                reused = self._reader is not None and not self._reader.is_closed()
                try:
                    if not reused:
                        self._reader = await asyncpg.connect(self.url, timeout=self.connect_timeout)
                    assert self._reader is not None
                    return await getattr(self._reader, method)(sql, *args, timeout=self.write_timeout_s)
                except Exception as exc:
                    verdict, _ = self.classify(exc)
                    if verdict is not Verdict.OUTAGE:
                        raise
                    if self._reader is not None:
                        self._reader.terminate()
                        self._reader = None
                    if attempt < 3:  # a connection the server dropped while idle (restart): fresh tries
                        await asyncio.sleep(0.05 * attempt)
                        continue
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
