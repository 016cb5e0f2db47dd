"""Redis backend (``redis://host:port/db``): Redis Streams for recent analytics plus a latest-state cache.

Keys (``prefix`` defaults to ``fg``):

``fg:{stream}:analytics``      a Redis Stream (XADD, ``MAXLEN ~ maxlen``), entry id = the message timestamp in ms
                                (kept increasing), fields ``t`` (type) and ``d`` (the wire JSON)
``fg:{stream}:opportunities``  the betting opportunities alone (same form), for cheap listing
``fg:{stream}:latest``         hash: message type → newest message of that type
``fg:{stream}:tracks``         hash: track id → newest ``speed`` payload of that track
``fg:{stream}:written``        hash: store run id → the highest record counter of that run written (dedupe)

Idempotent writes: a record's ``uid`` is ``<run>-<counter>``, and one store run delivers its records in counter
order (straight, or through the spool, which is replayed oldest first before straight writes resume). So a
per-stream *high-water mark* per run says exactly which records are in: a Lua script (atomic in Redis, one round
trip per stream in the batch) skips records at or below the mark, XADDs the rest and raises the mark. A batch
replayed after Redis died — even one that had landed before the reply was lost — adds nothing twice, with O(runs)
memory instead of one dedupe key per record (a TTL'd dedupe set would have to outlive the longest outage). It is
sent with EVAL (Redis caches it compiled; no NOSCRIPT after a restart). The script declares itself a writer
(``#!lua``), so an OOM / READONLY server refuses it before it runs: never half a batch. Entry ids follow event
time, so ``XRANGE`` answers time windows directly.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis import exceptions as rx

from .backends import Backend, BackendDown, BackendMisconfigured, ErrorRule, Verdict, message_has, uid_parts
from .records import Record, wire

_DOWN = (rx.ConnectionError, rx.TimeoutError, rx.BusyLoadingError, OSError, ConnectionError)
MARKS_TTL_S = 30 * 86400  # a run's high-water mark outlives any spool it could leave

#: What each Redis error means to the writer (first match wins; after backends.COMMON).
ERRORS: tuple[ErrorRule, ...] = (
    ErrorRule(Verdict.CONFIG, "authentication or ACL refused (WRONGPASS, NOAUTH, NOPERM)",
              (rx.AuthenticationError, rx.AuthorizationError, rx.NoPermissionError)),
    ErrorRule(Verdict.OUTAGE, "loading the dataset after a restart (LOADING)", (rx.BusyLoadingError,)),
    ErrorRule(Verdict.OUTAGE, "connection refused, lost or timed out", (rx.ConnectionError, rx.TimeoutError,
                                                                       OSError)),
    ErrorRule(Verdict.OUTAGE, "a replica, read-only (READONLY: failover or REPLICAOF)", (rx.ReadOnlyError,)),
    ErrorRule(Verdict.OUTAGE, "maxmemory reached with noeviction (OOM)", (rx.OutOfMemoryError,)),
    ErrorRule(Verdict.RETRY, "cluster slot migrating (TRYAGAIN) or a script busy (BUSY)", (rx.TryAgainError,)),
    ErrorRule(Verdict.OUTAGE, "replica without its master or cluster down (MASTERDOWN, CLUSTERDOWN)",
              (rx.ClusterDownError,)),
    ErrorRule(Verdict.OUTAGE, "snapshots failing, writes stopped (MISCONF)", (rx.ResponseError,),
              message_has("MISCONF")),
    ErrorRule(Verdict.OUTAGE, "the same, reported from inside the script", (rx.ResponseError,),
              message_has("OOM", "READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN")),
    ErrorRule(Verdict.RETRY, "the same, reported from inside the script", (rx.ResponseError,),
              message_has("TRYAGAIN", "BUSY")),
    ErrorRule(Verdict.CONFIG, "a key of another type under our prefix (WRONGTYPE)", (rx.ResponseError,),
              message_has("WRONGTYPE")),
    ErrorRule(Verdict.POISON, "a record Redis refuses", (rx.DataError, rx.ResponseError)),
)

# KEYS: analytics stream, opportunities stream, latest hash, tracks hash, written-marks hash
# ARGV: maxlen, ttl, marks ttl, then 7 per record: run, counter (-1: no mark), ms, type, body, track id ('' = not a
# speed record with a track), payload
_SCRIPT = """#!lua
local maxlen, ttl, marks_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local function top(key)
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if #last == 0 then return 0 end
  return tonumber(string.match(last[1][1], '^(%d+)'))
end
local last, last_opp = top(KEYS[1]), nil
local marks, latest, tracks = {}, {}, {}
local n = 0
for i = 4, #ARGV, 7 do
  local run, counter, ms = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local mark = marks[run]
  if mark == nil then
    mark = tonumber(redis.call('HGET', KEYS[5], run) or '-1')
    marks[run] = mark
  end
  if counter < 0 or counter > mark then
    local kind, body, track = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
    if ms < last then ms = last end
    last = ms
    local id = string.format('%d-*', ms)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, id, 't', kind, 'd', body)
    if kind == 'betting_opportunity' then
      if last_opp == nil then last_opp = top(KEYS[2]) end
      if ms < last_opp then ms = last_opp end
      last_opp = ms
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, string.format('%d-*', ms), 't', kind, 'd', body)
    end
    latest[kind] = body
    if track ~= '' then tracks[track] = ARGV[i + 6] end
    if counter >= 0 then marks[run] = counter end
    n = n + 1
  end
end
for run, mark in pairs(marks) do
  if mark >= 0 then redis.call('HSET', KEYS[5], run, string.format('%d', mark)) end
end
redis.call('EXPIRE', KEYS[5], marks_ttl)
for kind, body in pairs(latest) do redis.call('HSET', KEYS[3], kind, body) end
if n > 0 then redis.call('EXPIRE', KEYS[3], ttl) end
local any_track = false
for track, payload in pairs(tracks) do
  redis.call('HSET', KEYS[4], track, payload)
  any_track = true
end
if any_track then redis.call('EXPIRE', KEYS[4], ttl) end
return n
"""


class RedisBackend(Backend):
    name = "redis"
    errors = ERRORS

    def __init__(self, url: str, *, prefix: str = "fg", maxlen: int = 100_000, ttl_s: int = 3600,
                 timeout_s: float = 30.0) -> None:
        self.url = url
        self.prefix = prefix
        self.maxlen = maxlen
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._client: Any = None  # redis.asyncio.Redis (its stubs fight bytes/str unions)

    def describe(self) -> str:
        parts = urlsplit(self.url)
        return f"redis://{parts.hostname}:{parts.port or 6379}{parts.path or ''}"

    def key(self, stream_id: str, kind: str) -> str:
        return f"{self.prefix}:{stream_id}:{kind}"

    def connected(self) -> bool:
        return self._client is not None

    async def connect(self) -> None:
        await self.close()
        client = aioredis.from_url(self.url, socket_timeout=self.timeout_s, socket_connect_timeout=2,
                                   health_check_interval=0, retry_on_timeout=False)
        try:
            await client.ping()
            role = await client.execute_command("ROLE")
        except Exception as exc:
            await client.aclose()
            verdict, what = self.classify(exc)
            text = f"redis {self.describe()}: {what}: {type(exc).__name__}: {exc}"
            raise (BackendMisconfigured(text) if verdict is Verdict.CONFIG else BackendDown(text)) from exc
        if role and role[0] in (b"slave", "slave"):
            await client.aclose()
            raise BackendDown(f"redis {self.describe()} is a replica (read-only): waiting for a writable master")
        self._client = client

    async def write(self, records: Sequence[Record]) -> None:
        client = self._client
        if client is None:
            raise BackendDown("redis is not connected")
        by_stream: dict[str, list[str]] = defaultdict(list)
        for r in records:
            body = f'{{"type":"{r.type}","payload":{r.payload},"seq":{r.seq},"uid":"{r.uid}"}}'
            parts = uid_parts(r.uid)
            run, counter = parts if parts is not None else ("", -1)
            track = str(r.track_id) if r.type == "speed" and r.track_id is not None else ""
            by_stream[r.stream_id] += [run, str(counter), str(int(r.ts * 1000)), r.type, body, track,
                                       r.payload]
        pipe = client.pipeline(transaction=False)
        for stream_id, argv in by_stream.items():
            keys = [self.key(stream_id, kind) for kind in ("analytics", "opportunities", "latest", "tracks",
                                                             "written")]
            pipe.eval(_SCRIPT, len(keys), *keys, self.maxlen, self.ttl_s, MARKS_TTL_S, *argv)
        await pipe.execute()

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
                            continue  # written twice by an older, non-idempotent version
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
