"""Adaptive bitrate: the Morphine document's controller choosing among the renditions of an encode-once ladder.

The document's rule: next target = clamp(target × latency factor × available / target, 500 kbit/s, 10 Mbit/s),
with latency factor 0.8 when the viewer's average latency exceeds the latency target and 1.2 otherwise. The
available bandwidth comes from the viewer's REMB, or, without REMB, from the loss it reports. The target then
picks the best rendition that fits; going up needs ``up_after`` agreeing updates in a row (no flapping), going
down is immediate.

In passthrough there is one rendition: nothing can adapt, and the stats say so.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AbrPolicy:
    target_latency_ms: float = 150.0
    min_bps: float = 500_000.0
    max_bps: float = 10_000_000.0
    slower: float = 0.8
    faster: float = 1.2
    up_after: int = 3


class AbrController:
    """One viewer's bitrate target and rendition choice."""

    def __init__(self, policy: AbrPolicy | None = None, initial_bps: float = 2_500_000.0) -> None:
        self.policy = policy or AbrPolicy()
        self.target_bps = self._clamp(initial_bps)
        self._up_votes = 0
        self.switches = 0

    def _clamp(self, bps: float) -> float:
        return max(self.policy.min_bps, min(self.policy.max_bps, bps))

    def update(self, *, available_bps: float | None, latency_ms: float | None, loss: float = 0.0) -> float:
        """Fold one observation in; returns the new target bitrate (bit/s)."""
        p = self.policy
        factor = p.slower if latency_ms is not None and latency_ms > p.target_latency_ms else p.faster
        if available_bps is None:
            # no REMB: treat heavy loss as a bandwidth limit, otherwise the link is not the constraint
            available_bps = self.target_bps * (1.0 - loss) if loss > 0.02 else self.target_bps
        bandwidth = available_bps / self.target_bps if self.target_bps else 1.0
        self.target_bps = self._clamp(self.target_bps * factor * bandwidth)
        return self.target_bps

    def choose(self, renditions: dict[str, float], current: str | None) -> str:
        """The rendition for the current target among ``{name: measured bit/s}`` (best that fits, else lowest)."""
        if not renditions:
            raise ValueError("no renditions to choose from")
        ordered = sorted(renditions.items(), key=lambda kv: kv[1])
        fitting = [name for name, bps in ordered if bps <= self.target_bps]
        best = fitting[-1] if fitting else ordered[0][0]
        if current is None or current not in renditions:
            return best
        if renditions[best] > renditions[current]:
            self._up_votes += 1
            if self._up_votes < self.policy.up_after:
                return current
        self._up_votes = 0
        if best != current:
            self.switches += 1
        return best
