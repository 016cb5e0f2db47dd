"""Redis backend (``redis://host:port/db``): Redis Streams for recent analytics plus a latest-state cache.

Keys (``prefix`` defaults to ``fg``):

``fg:{stream}:analytics``      a Redis Stream (XADD, ``MAXLEN ~ maxlen``), entry id = the message timestamp in ms
                                (kept increasing), fields ``t`` (type) and ``d`` (the wire JSON)
``fg:{stream}:opportunities``  the betting opportunities alone (same form), for cheap listing
``fg:{stream}:latest``         hash: message type → newest message of that type
``fg:{stream}:tracks``         hash: track id → newest ``speed`` payload of that track

A batch is one pipeline (one round trip; not MULTI/EXEC, which costs ~25 % in reply parsing): if Redis dies
mid-batch, part of it may have landed and the whole batch is replayed from the spool, so a record can appear
twice — entries carry the record's ``uid`` and :meth:`RedisBackend.query` drops repeats. Entry ids follow event
time, so ``XRANGE`` answers time windows directly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from .backends import Backend, BackendDown
from .records import Record, wire

_DOWN = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.BusyLoadingError, OSError,
         ConnectionError)


class RedisBackend(Backend):
    name = "redis"

    def __init__(self, url: str, *, prefix: str = "fg", maxlen: int = 100_000, ttl_s: int = 3600) -> None:
        self.url = url
        self.prefix = prefix
        self.maxlen = maxlen
        self.ttl_s = ttl_s
        self._client: Any = None  # redis.asyncio.Redis (its stubs fight bytes/str unions)
        self._last_ms: dict[str, int] = {}  # newest entry id (ms) per stream key, so ids only grow

    def describe(self) -> str:
        parts = urlsplit(self.url)
        return f"redis://{parts.hostname}:{parts.port or 6379}{parts.path or ''}"

    def key(self, stream_id: str, kind: str) -> str:
        return f"{self.prefix}:{stream_id}:{kind}"

    async def connect(self) -> None:
        await self.close()
        client = aioredis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2,
                                   health_check_interval=0, retry_on_timeout=False)
        try:
            await client.ping()
        except _DOWN as exc:
            await client.aclose()
            raise BackendDown(f"redis {self.describe()}: {exc}") from exc
        self._client = client
        self._last_ms.clear()  # the server may have restarted: re-read the newest ids lazily

    async def _newest_ms(self, client: Any, key: str) -> int:
        last = self._last_ms.get(key)
        if last is None:
            entries = await client.xrevrange(key, count=1)
            last = int(entries[0][0].split(b"-")[0]) if entries else 0
            self._last_ms[key] = last
        return last

    async def write(self, records: Sequence[Record]) -> None:
        client = self._client
        if client is None:
            raise BackendDown("redis is not connected")
        try:
            await self._write(client, records)
        except _DOWN as exc:
            self._last_ms.clear()
            raise BackendDown(f"redis {self.describe()}: {exc}") from exc

    async def _write(self, client: Any, records: Sequence[Record]) -> None:
        streams = {r.stream_id for r in records}
        last = {s: await self._newest_ms(client, self.key(s, "analytics")) for s in streams}
        last_opp = {s: await self._newest_ms(client, self.key(s, "opportunities")) for s in streams
                    if any(r.type == "betting_opportunity" and r.stream_id == s for r in records)}
        latest: dict[str, dict[str, str]] = {}
        tracks: dict[str, dict[str, str]] = {}
        pipe = client.pipeline(transaction=False)
        maxlen = self.maxlen
        for r in records:
            body = f'{{"type":"{r.type}","payload":{r.payload},"seq":{r.seq},"uid":"{r.uid}"}}'
            ms = max(int(r.ts * 1000), last[r.stream_id])
            last[r.stream_id] = ms
            fields = {"t": r.type, "d": body}
            pipe.xadd(self.key(r.stream_id, "analytics"), fields, id=f"{ms}-*", maxlen=maxlen, approximate=True)
            latest.setdefault(r.stream_id, {})[r.type] = body
            if r.type == "betting_opportunity":
                opp_ms = max(int(r.ts * 1000), last_opp[r.stream_id])
                last_opp[r.stream_id] = opp_ms
                pipe.xadd(self.key(r.stream_id, "opportunities"), fields, id=f"{opp_ms}-*", maxlen=maxlen,
                          approximate=True)
            elif r.type == "speed" and r.track_id is not None:
                tracks.setdefault(r.stream_id, {})[str(r.track_id)] = r.payload
        for stream_id, mapping in latest.items():
            pipe.hset(self.key(stream_id, "latest"), mapping=mapping)
            pipe.expire(self.key(stream_id, "latest"), self.ttl_s)
        for stream_id, mapping in tracks.items():
            pipe.hset(self.key(stream_id, "tracks"), mapping=mapping)
            pipe.expire(self.key(stream_id, "tracks"), self.ttl_s)
        await pipe.execute()
        for stream_id, ms in last.items():
            self._last_ms[self.key(stream_id, "analytics")] = ms
        for stream_id, ms in last_opp.items():
            self._last_ms[self.key(stream_id, "opportunities")] = ms

    async def query(self, stream_id: str, t_from: float | None, t_to: float | None, types: Sequence[str] | None,
                    limit: int) -> list[dict[str, Any]]:
        client = self._client
        if client is None:
            raise BackendDown("redis is not connected")
        wanted = None if not types else set(types)
        kind = "opportunities" if wanted == {"betting_opportunity"} else "analytics"
        low = "-" if t_from is None else str(int(t_from * 1000))
        high = "+" if t_to is None else str(int(t_to * 1000))
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        try:
            while len(out) < limit:
                page = await client.xrange(self.key(stream_id, kind), low, high, count=max(100, limit - len(out)))
                for _entry_id, fields in page:
                    if wanted is None or fields[b"t"].decode() in wanted:
                        body = json.loads(fields[b"d"])
                        uid = body.get("uid")
                        if uid in seen:
                            continue  # a batch replayed after a partial write
                        seen.add(uid)
                        out.append(wire(body["type"], body.get("seq"), body["payload"]))
                        if len(out) >= limit:
                            break
                if len(page) < max(100, limit - len(out)) or not page:
                    break
                low = "(" + page[-1][0].decode()
        except _DOWN as exc:
            raise BackendDown(f"redis {self.describe()}: {exc}") from exc
        return out

    async def latest(self, stream_id: str) -> dict[str, Any]:
        """The newest message of each type, and the newest speed per track (the cache)."""
        client = self._client
        if client is None:
            raise BackendDown("redis is not connected")
        try:
            latest = await client.hgetall(self.key(stream_id, "latest"))
            tracks = await client.hgetall(self.key(stream_id, "tracks"))
        except _DOWN as exc:
            raise BackendDown(f"redis {self.describe()}: {exc}") from exc
        return {"latest": {k.decode(): json.loads(v) for k, v in latest.items()},
                "tracks": {k.decode(): json.loads(v) for k, v in tracks.items()}}

    async def has_stream(self, stream_id: str) -> bool:
        client = self._client
        if client is None:
            return False
        try:
            return bool(await client.exists(self.key(stream_id, "analytics")))
        except _DOWN:
            return False

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await client.aclose()
            except _DOWN:
                pass
