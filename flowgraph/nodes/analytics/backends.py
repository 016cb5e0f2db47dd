"""What a store backend is, and which one a URL names.

``sqlite:///relative.db``, ``sqlite:////absolute.db`` (embedded default), ``redis://host:port/db`` (Redis
Streams + latest-state hashes), ``postgresql://user@host:port/db`` (a time-series table, batched COPY). The
driver of each is imported only when that backend connects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from .records import Record

SCHEMES = ("sqlite", "redis", "rediss", "postgresql", "postgres")


class BackendDown(Exception):
    """The backend cannot be reached right now: the batch goes to the spool and is retried later."""


class Backend:
    """A place analytics records go to and can be read back from."""

    #: Short name for metrics and API answers.
    name = "backend"

    async def connect(self) -> None:
        """Open the connection and create tables/keys; raise :class:`BackendDown` when unreachable."""
        raise NotImplementedError

    async def write(self, records: Sequence[Record]) -> None:
        """Write one batch atomically where the backend allows; :class:`BackendDown` when unreachable."""
        raise NotImplementedError

    async def query(self, stream_id: str, t_from: float | None, t_to: float | None, types: Sequence[str] | None,
                    limit: int) -> list[dict[str, Any]]:
        """Stored messages of one stream in ``[t_from, t_to]`` (unix seconds), oldest first, wire form."""
        raise NotImplementedError

    async def has_stream(self, stream_id: str) -> bool:
        """Whether anything was stored for ``stream_id``."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections (idempotent)."""

    def describe(self) -> str:
        return self.name


def check_url(url: str) -> str | None:
    """What is wrong with a store URL (``None`` when it names a backend)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        return f"unsupported store URL scheme {parts.scheme or '(none)'!r}"
    if parts.scheme == "sqlite" and not (parts.path and parts.path != "/"):
        return "sqlite URL needs a path: sqlite:///relative.db or sqlite:////absolute.db"
    if parts.scheme != "sqlite" and not parts.hostname:
        return f"{parts.scheme} URL needs a host"
    return None


def open_backend(url: str, *, offload: Callable[..., Any], table: str = "analytics", prefix: str = "fg",
                 maxlen: int = 100_000, ttl_s: int = 3600) -> Backend:
    """The backend a URL names (not yet connected)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from .store_sqlite import SqliteBackend

        return SqliteBackend(url, offload=offload, table=table)
    if scheme in ("redis", "rediss"):
        from .store_redis import RedisBackend

        return RedisBackend(url, prefix=prefix, maxlen=maxlen, ttl_s=ttl_s)
    if scheme in ("postgresql", "postgres"):
        from .store_postgres import PostgresBackend

        return PostgresBackend(url, table=table)
    raise ValueError(check_url(url) or f"unsupported store URL {url!r}")
