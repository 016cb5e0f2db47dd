"""SQLite backend: the embedded default (``sqlite:///analytics.db``), no setup.

One table indexed by ``(stream_id, ts)`` with a unique index on ``uid``; WAL journal so readers (the REST API)
never block the writer. A batch is one transaction of ``INSERT ... ON CONFLICT (uid) DO NOTHING``: a batch
replayed after a failure never duplicates. At connect an existing table is checked to have the columns we write
(a table of another shape is a configuration error at start). Every call runs in the store node's worker thread
(``offload``): sqlite3 blocks, and one thread owns the connection.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .backends import Backend, BackendDown, BackendMisconfigured, ErrorRule, Verdict
from .records import Record, wire

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
COLUMNS = ("uid", "stream_id", "ts", "type", "frame_id", "seq", "track_id", "payload")


def _code(*names: str) -> Callable[[BaseException], bool]:
    def test(exc: BaseException) -> bool:
        name = getattr(exc, "sqlite_errorname", "") or ""
        return any(name == n or name.startswith(n + "_") for n in names)

    return test


def _says(*words: str) -> Callable[[BaseException], bool]:
    return lambda exc: any(w in str(exc) for w in words)


#: What each sqlite3 error means to the writer (first match wins; after backends.COMMON).
ERRORS: tuple[ErrorRule, ...] = (
    ErrorRule(Verdict.RETRY, "database busy or locked by another connection (SQLITE_BUSY, SQLITE_LOCKED)",
              (sqlite3.Error,), _code("SQLITE_BUSY", "SQLITE_LOCKED")),
    ErrorRule(Verdict.OUTAGE, "disk full, I/O error, read-only file, cannot open (SQLITE_FULL, _IOERR, "
                              "_READONLY, _CANTOPEN)",
              (sqlite3.Error,), _code("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN")),
    ErrorRule(Verdict.OUTAGE, "table dropped: reconnecting creates it", (sqlite3.OperationalError,),
              _says("no such table")),
    ErrorRule(Verdict.CONFIG, "table shape (no such column, wrong column count)", (sqlite3.OperationalError,),
              _says("has no column named", "no such column", "columns but")),
    ErrorRule(Verdict.POISON, "a record the table refuses (SQLITE_CONSTRAINT, _MISMATCH, _TOOBIG) or cannot "
                              "bind", (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError,
                                       sqlite3.ProgrammingError, OverflowError)),
    ErrorRule(Verdict.OUTAGE, "other operational failure", (sqlite3.OperationalError, sqlite3.DatabaseError,
                                                             OSError)),
)


def sqlite_path(url: str) -> str:
    """``sqlite:///rel.db`` → ``rel.db``; ``sqlite:////abs.db`` → ``/abs.db``; ``sqlite:///:memory:``."""
    path = unquote(urlsplit(url).path)
    return path[1:] if path.startswith("/") else path


class SqliteBackend(Backend):
    name = "sqlite"
    errors = ERRORS

    def __init__(self, url: str, *, offload: Callable[..., Any], table: str = "analytics") -> None:
        if not _NAME.match(table):
            raise ValueError(f"bad table name {table!r}")
        self.path = sqlite_path(url)
        self.table = table
        self._offload = offload
        self._db: sqlite3.Connection | None = None
        self._insert = (f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)}) "
                        "ON CONFLICT (uid) DO NOTHING")

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def connected(self) -> bool:
        return self._db is not None

    async def connect(self) -> None:
        await self._offload(self._open)

    def _open(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=2.0)
        except (sqlite3.Error, OSError) as exc:
            raise BackendDown(f"sqlite {self.path}: {exc}") from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (uid TEXT NOT NULL, stream_id TEXT NOT NULL, "
                       "ts REAL NOT NULL, type TEXT NOT NULL, frame_id INTEGER, seq INTEGER, track_id INTEGER, "
                       "payload TEXT NOT NULL)")
            found = {row[1] for row in db.execute(f"PRAGMA table_info({self.table})")}
            missing = [c for c in COLUMNS if c not in found]
            if missing:
                raise BackendMisconfigured(
                    f"sqlite {self.path}: table {self.table!r} has no column {', '.join(missing)} (it has "
                    f"{', '.join(sorted(found))}) — drop it, alter it, or set another `table`")
            db.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_stream_ts ON {self.table} (stream_id, ts)")
            try:
                db.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {self.table}_uid ON {self.table} (uid)")
            except sqlite3.IntegrityError as exc:
                raise BackendMisconfigured(
                    f"sqlite {self.path}: table {self.table!r} holds duplicate uids (written before writes were "
                    f"idempotent); remove them or set another `table` ({exc})") from exc
        except (sqlite3.Error, OSError) as exc:
            db.close()
            verdict, what = self.classify(exc)
            text = f"sqlite {self.path}: {what}: {exc}"
            raise (BackendMisconfigured(text) if verdict is Verdict.CONFIG else BackendDown(text)) from exc
        except BaseException:
            db.close()
            raise
        self._db = db

    async def write(self, records: Sequence[Record]) -> None:
        await self._offload(self._write, records)

    def _write(self, records: Sequence[Record]) -> None:
        db = self._db
        if db is None:
            raise BackendDown("sqlite database is not open")
        try:
            db.execute("BEGIN")
            db.executemany(self._insert, records)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # whatever failed, never leave BEGIN open for the next batch
                db.execute("ROLLBACK")
            raise

    async def query(self, stream_id: str, t_from: float | None, t_to: float | None, types: Sequence[str] | None,
                    limit: int) -> list[dict[str, Any]]:
        try:
            return list(await self._offload(self._query, stream_id, t_from, t_to, types, limit))
        except RuntimeError as exc:  # the node's worker thread is gone: the store has stopped
            raise BackendDown(f"sqlite {self.path}: store stopped") from exc

    def _query(self, stream_id: str, t_from: float | None, t_to: float | None, types: Sequence[str] | None,
               limit: int) -> list[dict[str, Any]]:
        db = self._db
        if db is None:
            raise BackendDown("sqlite database is not open")
        sql = f"SELECT type, seq, payload FROM {self.table} WHERE stream_id = ?"
        args: list[Any] = [stream_id]
        if t_from is not None:
            sql += " AND ts >= ?"
            args.append(t_from)
        if t_to is not None:
            sql += " AND ts <= ?"
            args.append(t_to)
        if types:
            sql += f" AND type IN ({', '.join('?' for _ in types)})"
            args.extend(types)
        sql += " ORDER BY ts, rowid LIMIT ?"
        args.append(limit)
        return [wire(t, s, p) for t, s, p in db.execute(sql, args)]

    async def has_stream(self, stream_id: str) -> bool:
        try:
            return bool(await self._offload(self._has, stream_id))
        except RuntimeError:
            return False

    def _has(self, stream_id: str) -> bool:
        db = self._db
        if db is None:
            return False
        return db.execute(f"SELECT 1 FROM {self.table} WHERE stream_id = ? LIMIT 1", (stream_id,)).fetchone() \
            is not None

    async def drop_connection(self) -> None:
        pass  # the file stays open: the next connect() reopens it and re-checks the table

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await self._offload(db.close)
