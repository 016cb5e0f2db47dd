"""Who may publish: stream keys from a list, a file or an HTTP callback, and the limits on live streams.

One multi-stream ``ingest`` node asks :meth:`Admission.admit` for every RTMP ``publish`` and WHIP ``POST``:

* **key list** — ``keys: "a,b,c"`` (typically ``${STREAM_KEYS}``); an entry ``key=name`` publishes key ``key`` as
  stream ``name`` (keeps the secret out of viewer URLs), a bare ``key`` is its own stream id.
* **key file** — ``keys_file``: the same entries, one or more per line (``#`` comments). Re-read when its mtime or
  size changes (checked at each publish), so keys are added and revoked without a restart. Revoking a key does not
  cut a live publisher; its next publish is refused.
* **callback** — ``on_publish: http://auth/hook`` (nginx-rtmp ``on_publish`` style): POSTed as a form with ``key``,
  ``name`` (= key), ``addr`` (client ip:port), ``protocol`` (``rtmp``/``whip``) and ``app``. A 2xx admits; a JSON
  body ``{"stream_id": "..."}`` names the stream (else the key is the stream id). Anything else — non-2xx, timeout,
  connection refused — refuses (fails closed).

Then the limits: ``max_streams`` live streams (one more publisher is refused, "stream limit reached"), and one
publisher per stream: ``takeover: refuse`` (default) refuses a new publisher of a live stream while its publisher
is sending (409 / ``NetStream.Publish.Rejected``, counted ``stream_busy``) — as nginx-rtmp ("already publishing")
and SRS ("stream is busy") do, so a leaked or well-known key cannot hijack a live stream and two encoders
configured with one key do not knock each other off in turn; a publisher that has sent nothing for
``STALE_PUBLISHER_S`` is presumed gone (its encoder reconnecting from a dead connection) and is replaced.
``takeover: replace`` (MediaMTX's default, ``overridePublisher: yes``) lets any newcomer take the stream over. On a
takeover the old connection is closed and the stream goes on without an end.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger("flowgraph.media.admission")

STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class Refused(Exception):
    """A publisher not admitted; ``status`` is the HTTP status a WHIP publisher gets."""

    def __init__(self, reason: str, status: int = 403, kind: str = "unauthorised") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        #: Counted under this name: unauthorised, stream_busy, stream_limit, callback_down.
        self.kind = kind


@dataclass(frozen=True)
class Publisher:
    """Who asks to publish."""

    key: str
    client: str
    protocol: Literal["rtmp", "whip"]
    app: str = ""


@dataclass
class AdmissionConfig:
    keys: str = ""
    keys_file: str = ""
    on_publish: str = ""
    on_publish_timeout_s: float = 3.0
    max_streams: int = 16
    takeover: Literal["replace", "refuse"] = "refuse"

    @property
    def dynamic(self) -> bool:
        return bool(self.keys.strip() or self.keys_file or self.on_publish)


def parse_keys(text: str, where: str) -> dict[str, str]:
    """``{key: stream_id}`` from entries ``key`` or ``key=stream_id`` separated by commas, spaces or lines."""
    keys: dict[str, str] = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0]
        for entry in re.split(r"[,\s]+", line.strip()):
            if not entry:
                continue
            key, _, stream_id = entry.partition("=")
            stream_id = stream_id or key
            if not key or not STREAM_ID.match(stream_id):
                raise ValueError(f"{where}:{line_no}: bad stream key entry {_mask(entry)!r} (expected KEY or "
                                 f"KEY=STREAM_ID; stream ids are 1-64 of A-Z a-z 0-9 _ . -)")
            keys[key] = stream_id
    return keys


def _mask(entry: str) -> str:
    key, sep, rest = entry.partition("=")
    return (key[:2] + "***" if len(key) > 2 else "***") + sep + rest


class KeyFile:
    """A key file, re-read when it changes; a broken edit keeps the last good keys (and says so)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.keys: dict[str, str] = {}
        self.reloads = 0
        self._stamp: tuple[float, int] | None = None
        self.load()

    def load(self) -> dict[str, str]:
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            if self._stamp is None:
                raise ValueError(f"keys_file {self.path!r}: {exc.strerror}") from exc
            return self.keys  # a moment without the file (an editor replacing it): keep the last keys
        stamp = (stat.st_mtime, stat.st_size)
        if stamp != self._stamp:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
            try:
                keys = parse_keys(text, self.path)
            except ValueError as exc:
                if self._stamp is None:
                    raise
                log.error("%s (keeping the previous %d keys)", exc, len(self.keys))
                self._stamp = stamp
                return self.keys
            self.keys, self._stamp = keys, stamp
            self.reloads += 1
            log.info("stream keys: %d from %s", len(keys), self.path)
        return self.keys


class Admission:
    """Authorises publishers and holds the live-stream slots (the event loop's; not thread-safe)."""

    def __init__(self, config: AdmissionConfig) -> None:
        self.config = config
        self.static = parse_keys(config.keys, "keys") if config.keys.strip() else {}
        self.file = KeyFile(config.keys_file) if config.keys_file else None
        #: stream_id → the publisher holding it.
        self.live: dict[str, Publisher] = {}
        self.admitted = 0
        self.takeovers = 0
        self.refused: dict[str, int] = {}
        self._http: Any = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def admit(self, who: Publisher, busy: Callable[[str], str | None] | None = None) -> str:
        """The stream id ``who`` publishes as; raises :class:`Refused`. Claims the slot (see :meth:`release`).

        When the stream has a publisher, ``busy(stream_id)`` says why the newcomer is refused (the live source's
        :meth:`~.source.Source.refusal` under this config's ``takeover``), or None to let it take over.
        """
        try:
            stream_id = await self._authorise(who)
            holder = self.live.get(stream_id)
            if holder is not None:
                why = busy(stream_id) if busy is not None else (
                    None if self.config.takeover == "replace" else
                    f"stream {stream_id!r} already has a publisher (takeover: refuse)")
                if why is not None:
                    raise Refused(why, 409, "stream_busy")
            if holder is None and len(self.live) >= self.config.max_streams:
                raise Refused(f"stream limit reached ({self.config.max_streams} live streams)", 503, "stream_limit")
        except Refused as exc:
            self.refused[exc.kind] = self.refused.get(exc.kind, 0) + 1
            raise
        if holder is not None:
            self.takeovers += 1
        self.live[stream_id] = who
        self.admitted += 1
        return stream_id

    def release(self, stream_id: str, who: Publisher | None = None) -> None:
        """The stream ended (or ``who`` no longer holds it)."""
        if who is None or self.live.get(stream_id) == who:
            self.live.pop(stream_id, None)

    async def _authorise(self, who: Publisher) -> str:
        if not who.key:
            raise Refused("no stream key", 401)
        stream_id = self.static.get(who.key)
        if stream_id is None and self.file is not None:
            stream_id = self.file.load().get(who.key)
        if stream_id is None and self.config.on_publish:
            stream_id = await self._callback(who)
        if stream_id is None:
            raise Refused("unknown stream key", 403)
        return stream_id

    async def _callback(self, who: Publisher) -> str | None:
        import aiohttp

        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.on_publish_timeout_s))
        form = {"key": who.key, "name": who.key, "addr": who.client, "protocol": who.protocol, "app": who.app,
                "call": "publish"}
        try:
            async with self._http.post(self.config.on_publish, data=form) as response:
                if not 200 <= response.status < 300:
                    raise Refused(f"on_publish answered {response.status}", 403)
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("on_publish %s unreachable (%s): refusing", self.config.on_publish, type(exc).__name__)
            raise Refused("on_publish unreachable", 503, "callback_down") from exc
        stream_id = who.key
        if body.strip().startswith(b"{"):
            import json

            try:
                answer = json.loads(body)
            except ValueError:
                answer = {}
            if isinstance(answer, dict) and isinstance(answer.get("stream_id"), str):
                stream_id = answer["stream_id"]
        if not STREAM_ID.match(stream_id):
            raise Refused("on_publish named a bad stream_id (1-64 of A-Z a-z 0-9 _ . -)", 403)
        return stream_id

    def describe(self) -> dict[str, Any]:
        return {"live": len(self.live), "max_streams": self.config.max_streams, "admitted": self.admitted,
                "refused": dict(self.refused), "takeover": self.config.takeover, "takeovers": self.takeovers,
                "key_file_reloads": self.file.reloads if self.file else None}


class BandwidthGuard:
    """Per-stream bandwidth limit: a token bucket of ``burst_s`` seconds at ``kbps``; empty = over the limit."""

    def __init__(self, kbps: int, burst_s: float = 4.0) -> None:
        self.rate = kbps * 125.0  # bytes per second
        self.capacity = self.rate * burst_s
        self.tokens = self.capacity
        self.stamp: float | None = None

    def spend(self, size: int, now: float) -> bool:
        """False once the stream has sent more than its bucket allows."""
        if self.stamp is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= size
        return self.tokens >= 0
