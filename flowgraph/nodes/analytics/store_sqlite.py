"""SQLite backend: the embedded default (``sqlite:///analytics.db``), no setup.

One table indexed by ``(stream_id, ts)``; WAL journal so readers (the REST API) never block the writer. Every
call runs in the store node's worker thread (``offload``): sqlite3 blocks, and one thread owns the connection.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .backends import Backend, BackendDown
from .records import Record, wire

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def sqlite_path(url: str) -> str:
    """``sqlite:///rel.db`` → ``rel.db``; ``sqlite:////abs.db`` → ``/abs.db``; ``sqlite:///:memory:``."""
    path = unquote(urlsplit(url).path)
    return path[1:] if path.startswith("/") else path


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, url: str, *, offload: Callable[..., Any], table: str = "analytics") -> None:
        if not _NAME.match(table):
            raise ValueError(f"bad table name {table!r}")
        self.path = sqlite_path(url)
        self.table = table
        self._offload = offload
        self._db: sqlite3.Connection | None = None

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    async def connect(self) -> None:
        await self._offload(self._open)

    def _open(self) -> None:
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (uid TEXT NOT NULL, stream_id TEXT NOT NULL, "
                       "ts REAL NOT NULL, type TEXT NOT NULL, frame_id INTEGER, seq INTEGER, track_id INTEGER, "
                       "payload TEXT NOT NULL)")
            db.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_stream_ts ON {self.table} (stream_id, ts)")
        except (sqlite3.OperationalError, OSError) as exc:
            raise BackendDown(f"sqlite {self.path}: {exc}") from exc
        self._db = db

    async def write(self, records: Sequence[Record]) -> None:
        await self._offload(self._write, records)

    def _write(self, records: Sequence[Record]) -> None:
        db = self._db
        if db is None:
            raise BackendDown("sqlite database is not open")
        try:
            db.execute("BEGIN")
            db.executemany(f"INSERT INTO {self.table} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", records)
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # locked, disk full, I/O error: retry later from the spool
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise BackendDown(f"sqlite {self.path}: {exc}") from exc

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

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await self._offload(db.close)
