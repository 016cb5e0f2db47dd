"""Limits on what one peer can make the graph server do: connections, header time, signalling rate."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    """``server.limits`` in the graph YAML (every key optional)."""

    #: A connection must finish its request headers this soon; an idle keep-alive connection closes as soon.
    header_timeout_s: float = 10.0
    #: Open connections at once (WebSockets included); more are answered 503 and closed.
    max_connections: int = 2_000
    #: Signalling requests (viewer offers, WHEP, WHIP) a client address may make at once ...
    signalling_burst: int = 10
    #: ... refilled at this rate.
    signalling_per_s: float = 1.0
    #: Viewers a client address may have opened within ``viewer_window_s`` that are still open (offers that
    #: never finish ICE included), so a few offers cannot hold ``max_viewers`` until they time out.
    viewers_per_address: int = 4
    viewer_window_s: float = 20.0
    #: Per-address limits leave clients on this machine alone (local tools, tests). Behind a reverse proxy on
    #: the same host every client looks local: limit at the proxy, or set this false.
    exempt_loopback: bool = True

    def applies_to(self, address: str) -> bool:
        from .access import is_loopback

        return not (self.exempt_loopback and is_loopback(address))

    @classmethod
    def from_conf(cls, conf: dict[str, Any]) -> Limits:
        return cls(**{k: v for k, v in conf.items() if k in cls.__dataclass_fields__})


class RateLimiter:
    """A token bucket per client address; at most ``max_addresses`` buckets (least recently used evicted)."""

    def __init__(self, burst: int, per_s: float, max_addresses: int = 10_000) -> None:
        self.burst = float(burst)
        self.per_s = per_s
        self.max_addresses = max_addresses
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, address: str, now: float | None = None) -> float:
        """Spend one token for ``address``: 0.0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, stamp = self._buckets.pop(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.per_s)
        if tokens >= 1.0:
            tokens -= 1.0
            wait = 0.0
        else:
            wait = (1.0 - tokens) / self.per_s if self.per_s > 0 else float("inf")
        self._buckets[address] = (tokens, now)
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)
        return wait
