"""Runtime measurements: cheap recording on the hot path, summaries on demand.

Recording is an index bump into a fixed ring (:class:`Samples`); percentiles and rates are computed only when
somebody asks for a snapshot (``flowgraph top``, ``/api/metrics``, Prometheus scrape).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric


class Samples:
    """The most recent ``capacity`` values of one measurement (seconds), for p50/p99."""

    __slots__ = ("_buf", "_i", "_mask")

    def __init__(self, capacity: int = 1024) -> None:
        capacity = 1 << max(4, math.ceil(math.log2(capacity)))
        self._buf: list[float] = [0.0] * capacity
        self._mask = capacity - 1
        self._i = 0

    @property
    def count(self) -> int:
        """Values added since creation (the buffer keeps the last ``capacity``)."""
        return self._i

    def add(self, value: float) -> None:  # on every hop: two statements, nothing more
        i = self._i
        self._buf[i & self._mask] = value
        self._i = i + 1

    def values(self) -> list[float]:
        n = min(self._i, self._mask + 1)
        return self._buf[:n]

    def percentiles(self, *qs: float) -> list[float | None]:
        data = sorted(self.values())
        if not data:
            return [None for _ in qs]
        last = len(data) - 1
        return [data[min(last, round(q / 100 * last))] for q in qs]

    def summary_ms(self) -> dict[str, float | None]:
        p50, p99 = self.percentiles(50, 99)
        return {
            "p50": None if p50 is None else round(p50 * 1000, 3),
            "p99": None if p99 is None else round(p99 * 1000, 3),
        }


class BatchStats:
    """The batches a node with ``process_batch`` took: how many of each size (a histogram), and call times."""

    __slots__ = ("call_time", "calls", "last", "limit", "messages", "sizes")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sizes = [0] * (limit + 1)  # sizes[n]: calls that took n messages
        self.calls = 0
        self.messages = 0
        self.last = 0
        self.call_time = Samples()

    def add(self, size: int, seconds: float) -> None:
        self.sizes[size] += 1
        self.calls += 1
        self.messages += size
        self.last = size
        self.call_time.add(seconds)

    def summary(self) -> dict[str, Any]:
        return {"max_batch": self.limit, "calls": self.calls, "messages": self.messages,
                "mean": round(self.messages / self.calls, 3) if self.calls else None, "last": self.last,
                "sizes": {str(size): n for size, n in enumerate(self.sizes) if n},
                "call_ms": self.call_time.summary_ms()}


@dataclass
class NodeStats:
    """Counters one node's runner keeps."""

    processed: int = 0
    errors: int = 0
    restarts: int = 0
    state: str = "created"
    last_error: str | None = None
    #: Streams whose end-of-stream marker this node handled (their state freed).
    streams_ended: int = 0
    process_time: Samples = field(default_factory=Samples)
    #: Seconds from the frame's capture (``Message.t_capture``) to this node picking the message up.
    capture_age: Samples = field(default_factory=Samples)
    #: A node that takes batches (``max_batch`` > 1): their sizes and call times.
    batch: BatchStats | None = None


class RateMeter:
    """Per-second rates of growing counters over a sliding window of a few seconds.

    Any number of observers may ask at any frequency: samples are kept at most every ``step`` seconds and the rate
    is taken against the oldest sample in the window, so two clients polling alternately still see a steady rate.
    """

    def __init__(self, window: float = 3.0, step: float = 0.25) -> None:
        self.window = window
        self.step = step
        #: When every counter was zero (the run's start): the first answer is the rate since then.
        self.origin: float | None = None
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def rate(self, key: str, count: int, now: float) -> float:
        samples = self._samples.get(key)
        if samples is None:
            samples = self._samples[key] = deque([(self.origin, 0)] if self.origin is not None else [])
        if not samples or now - samples[-1][0] >= self.step:
            samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()
        oldest_time, oldest_count = samples[0]
        if now - oldest_time < self.step:
            return 0.0
        return round((count - oldest_count) / (now - oldest_time), 2)


def prometheus_lines(snapshot: dict[str, Any]) -> str:
    """Render a snapshot in the Prometheus text exposition format (version 0.0.4)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import Collector, CollectorRegistry

    graph = snapshot.get("graph", "graph")

    class _Snapshot(Collector):
        def collect(self) -> Iterator[Metric]:
            processed = CounterMetricFamily("flowgraph_node_processed", "Messages processed", labels=["graph", "node"])
            errors = CounterMetricFamily("flowgraph_node_errors", "Processing errors", labels=["graph", "node"])
            ptime = GaugeMetricFamily("flowgraph_node_process_seconds", "Process time quantiles",
                                      labels=["graph", "node", "quantile"])
            depth = GaugeMetricFamily("flowgraph_edge_depth", "Messages queued", labels=["graph", "edge"])
            drops = CounterMetricFamily("flowgraph_edge_drops", "Messages dropped", labels=["graph", "edge"])
            puts = CounterMetricFamily("flowgraph_edge_messages", "Messages enqueued", labels=["graph", "edge"])
            age = GaugeMetricFamily("flowgraph_edge_age_seconds", "Message age at dequeue quantiles",
                                    labels=["graph", "edge", "quantile"])
            for name, node in snapshot.get("nodes", {}).items():
                processed.add_metric([graph, name], node["processed"])
                errors.add_metric([graph, name], node["errors"])
                for q in ("p50", "p99"):
                    value = node["process_ms"][q]
                    if value is not None:
                        ptime.add_metric([graph, name, q[1:]], value / 1000)
            for edge in snapshot.get("edges", []):
                label = f"{edge['from']}->{edge['to']}"
                depth.add_metric([graph, label], edge["depth"])
                drops.add_metric([graph, label], edge["drops"])
                puts.add_metric([graph, label], edge["puts"])
                for q in ("p50", "p99"):
                    value = edge["age_ms"][q]
                    if value is not None:
                        age.add_metric([graph, label, q[1:]], value / 1000)
            yield from (processed, errors, ptime, depth, drops, puts, age)
            yield from _batch_metrics(graph, snapshot)
            yield from _ray_metrics(graph, snapshot)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot())
    return generate_latest(registry).decode()


def _batch_metrics(graph: str, snapshot: dict[str, Any]) -> Iterator[Metric]:
    """Nodes that take batches: a histogram of batch sizes (buckets at powers of two up to ``max_batch``)."""
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily("flowgraph_node_batch_size", "Messages per process_batch call",
                                   labels=["graph", "node"])
    for name, node in snapshot.get("nodes", {}).items():
        batch = node.get("batch")
        if not batch:
            continue
        sizes = {int(size): n for size, n in batch["sizes"].items()}
        bounds = sorted({*(1 << k for k in range(batch["max_batch"].bit_length())), batch["max_batch"]})
        buckets = [(str(bound), sum(n for size, n in sizes.items() if size <= bound)) for bound in bounds]
        buckets.append(("+Inf", batch["calls"]))
        family.add_metric([graph, name], buckets, batch["messages"])
    yield family


def _ray_metrics(graph: str, snapshot: dict[str, Any]) -> Iterator[Metric]:
    """Replicas of Ray-placed nodes: calls and liveness per replica with the Ray node it runs on, lost messages."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    calls = CounterMetricFamily("flowgraph_ray_replica_calls", "Messages handed to a Ray replica",
                                labels=["graph", "node", "replica", "ray_node", "ray_ip"])
    alive = GaugeMetricFamily("flowgraph_ray_replica_alive", "1 while the replica's actor runs",
                              labels=["graph", "node", "replica", "ray_node", "ray_ip"])
    lost = CounterMetricFamily("flowgraph_ray_lost", "Messages lost with an actor that died", labels=["graph", "node"])
    for name, node in snapshot.get("nodes", {}).items():
        island = (node.get("counters") or {}).get("island") or {}
        if island.get("isolation") != "ray":
            continue
        lost.add_metric([graph, name], island.get("lost", 0))
        for replica in island.get("replicas", []):
            labels = [graph, name, str(replica["replica"]), str(replica.get("ray_node")), str(replica.get("ray_ip"))]
            calls.add_metric(labels, replica.get("calls", 0))
            alive.add_metric(labels, 1 if replica.get("alive") else 0)
    yield from (calls, alive, lost)


def now() -> float:
    return time.monotonic()
