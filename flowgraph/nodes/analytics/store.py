"""``store``: writes analytics to SQLite, Redis or PostgreSQL — batched, asynchronous, lossless.

YAML::

    db:
      node: store
      inputs: {analytics: {from: fuse/analytics, policy: block}}   # block is the default for Analytics
      params:
        url: postgresql://app@127.0.0.1:5432/morphine   # or sqlite:///analytics.db, redis://127.0.0.1:6379/0
        batch_size: 500
        flush_interval_ms: 200
        spool_dir: /var/lib/flowgraph/spool             # while the backend is down; replayed when it is back

The REST API reads back through this node (``GET /api/streams/{id}/analytics`` and ``/opportunities``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowgraph.context import NodeContext
from flowgraph.errors import NodeError, ParamsError
from flowgraph.messages import Analytics
from flowgraph.node import Node
from flowgraph.nodes.analytics.schemas import ANALYTICS_TYPES
from flowgraph.params import param
from flowgraph.ports import Input

from .backends import BackendMisconfigured, check_url


class Store(Node):
    """Writes analytics to SQLite / Redis / PostgreSQL in batches; spools to disk while the backend is down."""

    analytics = Input(Analytics, "messages to store (wire it with policy block: lossless)")

    @dataclass
    class Params:
        url: str = param("sqlite:///flowgraph-analytics.db", "sqlite:///path, redis://host:port/db or "
                                                             "postgresql://user@host:port/db")
        types: list[str] = param(list(ANALYTICS_TYPES), "message types to store",
                                 schema={"type": "array", "items": {"enum": list(ANALYTICS_TYPES)}})
        batch_size: int = param(500, "records per write", minimum=1, maximum=100_000)
        flush_interval_ms: float = param(200.0, "a partial batch is written after this long", exclusiveMinimum=0)
        max_pending_batches: int = param(8, "full batches queued before the input blocks", minimum=1)
        spool_dir: str = param("", "where batches wait while the backend is down ('' = beside the sqlite file, "
                                   "or ~/.local/state/flowgraph/spool/<graph>-<node>)")
        spool_max_mb: float = param(256.0, "spool size limit; beyond it records are lost (counted)",
                                    exclusiveMinimum=0)
        spool_fsync: bool = param(True, "fsync each spooled batch (survives a machine crash, not only a process "
                                        "crash)")
        retry_s: float = param(0.5, "first reconnect delay (doubles up to 5 s)", exclusiveMinimum=0)
        flush_timeout_s: float = param(3.0, "at shutdown, wait this long for the backend before leaving the rest "
                                            "in the spool for the next start", minimum=0)
        table: str = param("analytics", "SQL table (sqlite, postgresql)", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
        key_prefix: str = param("fg", "Redis key prefix", pattern=r"^[A-Za-z0-9_.:-]{1,32}$")
        redis_maxlen: int = param(100_000, "approximate length cap of each Redis stream", minimum=1)
        write_timeout_s: float = param(30.0, "a backend write that takes longer is an outage (spooled, replayed)",
                                       exclusiveMinimum=0)
        rejected_max_mb: float = param(64.0, "size cap of rejected.jsonl (records the backend refused); beyond it "
                                             "they are only counted", minimum=0)

        def __post_init__(self) -> None:
            problem = check_url(self.url)
            if problem is not None:
                raise ParamsError(problem, ("url",), "sqlite:///path, redis://host:port/db or "
                                                     "postgresql://user@host:port/db")

    def __init__(self, ctx: NodeContext, params: Store.Params | None = None) -> None:
        super().__init__(ctx, params)
        from .backends import open_backend
        from .records import record_of
        from .spool import Spool
        from .writer import BatchWriter

        p = self.params
        self._record_of = record_of
        self.backend = open_backend(p.url, offload=self.offload, table=p.table, prefix=p.key_prefix,
                                    maxlen=p.redis_maxlen, write_timeout_s=p.write_timeout_s)
        spool = Spool(self._spool_dir(), int(p.spool_max_mb * (1 << 20)), fsync=p.spool_fsync)
        self.writer = BatchWriter(self.backend, spool, self.offload, batch_size=p.batch_size,
                                  flush_interval_s=p.flush_interval_ms / 1000,
                                  max_pending_batches=p.max_pending_batches, retry_s=p.retry_s,
                                  rejected_max_bytes=int(p.rejected_max_mb * (1 << 20)))
        self._types = frozenset(p.types)
        self._received = 0  # records handed to the writer, over every start of this node
        self._run = ""  # uid prefix of the current start: "<run>-<n>" is unique and increasing within a run
        self._seq = 0
        self._running = False

    async def setup(self) -> None:
        from .api import api_for

        api_for(self.ctx).add_store(self)

    async def start(self) -> None:
        self._run = secrets.token_hex(4)
        self._seq = 0
        try:
            await self.writer.start()
        except BackendMisconfigured as exc:  # never spool forever into a backend that can take nothing
            await self.backend.close()
            raise NodeError(self.name, None, exc) from exc
        self._running = True

    def _spool_dir(self) -> Path:
        p = self.params
        if p.spool_dir:
            return Path(p.spool_dir)
        if p.url.startswith("sqlite:"):
            from .store_sqlite import sqlite_path

            path = sqlite_path(p.url)
            if path != ":memory:":
                return Path(path + ".spool")
        state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        return state / "flowgraph" / "spool" / f"{self.ctx.graph}-{self.name}"

    async def process(self, msg: Analytics) -> None:
        if msg.type not in self._types:
            return
        self._received += 1
        self._seq += 1
        await self.writer.put(self._record_of(msg, f"{self._run}-{self._seq}"))

    async def flush(self) -> None:
        import contextlib

        with contextlib.suppress(TimeoutError):
            await self.writer.flush(self.params.flush_timeout_s)

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        await self.writer.close(self.params.flush_timeout_s)
        await self.backend.close()
        totals = {k: v for k, v in self.counters().items() if isinstance(v, int) and not isinstance(v, bool)}
        logging.getLogger("flowgraph.analytics.store").info(
            "store %s (%s) stopped: %s", self.name, self.backend.describe(), json.dumps(totals, sort_keys=True))

    # -- reading back (REST) --------------------------------------------------------------------------------
    async def query(self, stream_id: str, t_from: float | None, t_to: float | None, types: Sequence[str] | None,
                    limit: int) -> list[dict[str, Any]]:
        """Stored messages of one stream (raises ``BackendDown`` while the backend is unreachable)."""
        return await self.backend.query(stream_id, t_from, t_to, types, limit)

    async def has_stream(self, stream_id: str) -> bool:
        return await self.backend.has_stream(stream_id)

    def describe(self) -> str:
        return self.backend.describe()

    def counters(self) -> dict[str, Any]:
        stats = self.writer.stats()
        stats["received"] = self._received
        return stats
