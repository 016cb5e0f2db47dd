"""What a store backend is, which one a URL names, and what each of its errors means.

``sqlite:///relative.db``, ``sqlite:////absolute.db`` (embedded default), ``redis://host:port/db`` (Redis
Streams + latest-state hashes), ``postgresql://user@host:port/db`` (a time-series table, idempotent batched
inserts). The driver of each is imported only when that backend connects.

Every error a write can raise is sorted by a table (:data:`ErrorRule` rows, first match wins) into one of four
verdicts — see :class:`Verdict`. The table of each backend sits in its module (``ERRORS``); the README's
Reliability section lists them all.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .records import Record

SCHEMES = ("sqlite", "redis", "rediss", "postgresql", "postgres")


class Verdict(enum.Enum):
    """What the writer does with a batch whose write raised."""

    #: a transient conflict (serialization, deadlock, lock wait, TRYAGAIN): write the same batch again shortly
    RETRY = "retry"
    #: the backend cannot take writes now (gone, restarting, read-only, out of memory or disk): spool the batch,
    #: reconnect with backoff, replay the spool
    OUTAGE = "outage"
    #: the backend refuses these records themselves: isolate the bad ones, keep them in rejected.jsonl (counted)
    POISON = "poison"
    #: the backend will never accept records as configured (wrong table shape, auth, wrong key type): refuse to
    #: start; found while running it is handled as an outage and logged as an error
    CONFIG = "config"


class BackendDown(Exception):
    """The backend cannot be reached right now: the batch goes to the spool and is retried later."""


class BackendMisconfigured(Exception):
    """The backend is reachable but set up so that it can never accept records (a configuration error)."""


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """One row of a backend's error table: errors of ``types`` (and, when given, passing ``test``) get
    ``verdict``; ``what`` names the row in logs and in the README."""

    verdict: Verdict
    what: str
    types: tuple[type[BaseException], ...]
    test: Callable[[BaseException], bool] | None = None

    def matches(self, exc: BaseException) -> bool:
        return isinstance(exc, self.types) and (self.test is None or self.test(exc))


#: Rows every backend shares (they come first): the backend's own verdicts, then plain network failures.
COMMON: tuple[ErrorRule, ...] = (
    ErrorRule(Verdict.CONFIG, "misconfigured backend", (BackendMisconfigured,)),
    ErrorRule(Verdict.OUTAGE, "backend down", (BackendDown,)),
    ErrorRule(Verdict.OUTAGE, "network failure or timeout", (ConnectionError, TimeoutError, asyncio.TimeoutError)),
    ErrorRule(Verdict.POISON, "record cannot be encoded", (ValueError, TypeError, OverflowError, UnicodeError)),
)


def classify(rules: Sequence[ErrorRule], exc: BaseException, fallback: Verdict) -> tuple[Verdict, str]:
    """The verdict of the first row matching ``exc`` (``fallback`` when none does) and the row's name."""
    for rule in rules:
        if rule.matches(exc):
            return rule.verdict, rule.what
    return fallback, "unclassified error"


def message_has(*words: str) -> Callable[[BaseException], bool]:
    """A row test: the server's error code is one of ``words`` — at the start of the message, or after the
    prefix a client adds (redis-py: ``Command # 1 (...) of pipeline caused error: ('MISCONF ...',)``)."""
    codes = "|".join(map(re.escape, words))
    pattern = re.compile(r"(?:^|caused error: \(?['\"]?|Error running script[^:]*: ?)(?:ERR )?(" + codes + r")\b")

    def test(exc: BaseException) -> bool:
        return pattern.search(str(exc)) is not None

    return test


class Backend:
    """A place analytics records go to and can be read back from."""

    #: Short name for metrics and API answers.
    name = "backend"
    #: This backend's error table (after :data:`COMMON`).
    errors: tuple[ErrorRule, ...] = ()

    async def connect(self) -> None:
        """Open the connection, create tables/keys and check they fit; :class:`BackendDown` when unreachable,
        :class:`BackendMisconfigured` when reachable but unusable as configured."""
        raise NotImplementedError

    async def write(self, records: Sequence[Record]) -> None:
        """Write one batch idempotently: a record already stored (same ``uid``) is skipped, so a batch replayed
        after an outage never duplicates. Raises whatever the driver raises; :meth:`classify` sorts it."""
        raise NotImplementedError

    def connected(self) -> bool:
        """Whether the connection is still open (an unclassified error on an open connection is the data's)."""
        return False

    def classify(self, exc: BaseException) -> tuple[Verdict, str]:
        verdict, what = classify((*COMMON, *self.errors), exc, Verdict.POISON if self.connected() else
                                 Verdict.OUTAGE)
        return verdict, what

    async def drop_connection(self) -> None:
        """Forget the write connection after an outage (the next :meth:`connect` opens a fresh one)."""
        await self.close()

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
                 maxlen: int = 100_000, ttl_s: int = 3600, write_timeout_s: float = 30.0) -> Backend:
    """The backend a URL names (not yet connected)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from .store_sqlite import SqliteBackend

        return SqliteBackend(url, offload=offload, table=table)
    if scheme in ("redis", "rediss"):
        from .store_redis import RedisBackend

        return RedisBackend(url, prefix=prefix, maxlen=maxlen, ttl_s=ttl_s, timeout_s=write_timeout_s)
    if scheme in ("postgresql", "postgres"):
        from .store_postgres import PostgresBackend

        return PostgresBackend(url, table=table, write_timeout_s=write_timeout_s)
    raise ValueError(check_url(url) or f"unsupported store URL {url!r}")


def uid_parts(uid: str) -> tuple[str, int] | None:
    """``"<run>-<counter>"`` → ``(run, counter)``; None for a uid of another form."""
    run, _, counter = uid.rpartition("-")
    if not run or not counter.isdigit():
        return None
    return run, int(counter)
