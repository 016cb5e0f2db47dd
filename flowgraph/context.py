"""What a node gets from the graph it runs in: a small, explicit, typed surface.

A :class:`NodeContext` carries this node's identity (name, device, connected inputs) and a :class:`GraphScope`,
which is everything the nodes of one graph share *in one process*:

* ``streams`` — the stream registry behind ``GET /api/streams``;
* ``server`` — the graph's HTTP server (created on first use; add routes in ``setup``);
* ``clock`` — wall and monotonic time;
* ``metrics()`` — the graph's live figures (what ``/api/metrics`` serves);
* ``shared(key, factory)`` — the one way a node family shares a hub (a router, a ring registry, a server pool):
  ``key`` is a typed, named :class:`Key`, and the first caller's ``factory`` builds the value::

      RINGS: Key[RingRegistry] = Key("analytics.rings")
      registry = ctx.shared(RINGS, RingRegistry)     # typed: RingRegistry

A node placed in another process gets a ``NodeContext`` built there with a scope of its own; what must reach
back to the parent graph (the stream registry, metrics) is passed in as a proxy with the same methods. Nothing
here is looked up by a bare string, so every dependency is visible to imports and to mypy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from .streams import StreamRegistry

if TYPE_CHECKING:
    from .server import GraphServer

T = TypeVar("T")


@dataclass(frozen=True)
class Key(Generic[T]):
    """The typed name of a hub that one node family shares inside a graph (``"family.what"`` by convention).

    Keys compare by name, so a key rebuilt in another process (or unpickled) finds the same slot."""

    name: str

    def __repr__(self) -> str:
        return f"Key({self.name!r})"


class Hubs(Protocol):
    """Anything that hands out shared hubs: a :class:`NodeContext` or a :class:`GraphScope`."""

    def shared(self, key: Key[T], factory: Callable[[], T]) -> T: ...


class Clock(Protocol):
    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The process clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK = SystemClock()


class GraphScope:
    """What the nodes of one graph share in one process."""

    def __init__(self, name: str = "graph", *, streams: StreamRegistry | None = None,
                 server_factory: Callable[[], GraphServer] | None = None,
                 metrics: Callable[[], dict[str, Any]] | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.name = name
        self.streams = streams if streams is not None else StreamRegistry()
        self.clock = clock
        self._server_factory = server_factory
        self._metrics = metrics
        self._hubs: dict[Key[Any], object] = {}

    @property
    def has_server(self) -> bool:
        return self._server_factory is not None

    def server(self, who: str) -> GraphServer:
        if self._server_factory is None:
            raise RuntimeError(f"node {who!r}: no HTTP server is available outside a running graph")
        return self._server_factory()

    def metrics(self) -> dict[str, Any]:
        """The graph's live figures (per node and edge); empty outside a running graph."""
        return self._metrics() if self._metrics is not None else {}

    def shared(self, key: Key[T], factory: Callable[[], T]) -> T:
        """The hub under ``key``, built by ``factory`` on first use."""
        if key in self._hubs:
            return cast(T, self._hubs[key])
        value = factory()
        self._hubs[key] = value
        return value

    def peek(self, key: Key[T]) -> T | None:
        """The hub under ``key`` if some node built it (for tests and tools)."""
        return cast("T | None", self._hubs.get(key))

    def discard(self, key: Key[T]) -> None:
        self._hubs.pop(key, None)


@dataclass
class NodeContext:
    """What the runtime gives one node: identity, placement, connected inputs, and its graph's scope."""

    name: str
    device: str = "cpu"
    scope: GraphScope = field(default_factory=GraphScope)
    #: Input ports that have an edge in this graph (all declared inputs when built outside a graph).
    inputs: frozenset[str] | None = None
    #: Runs a blocking call in the node's worker thread (set by the runtime).
    offloader: Callable[..., Any] | None = None
    #: Stage-owned CUDA stream when ``device`` is ``cuda:N``.
    cuda_stream: Any = None

    @property
    def graph(self) -> str:
        return self.scope.name

    @property
    def server(self) -> GraphServer:
        return self.scope.server(self.name)

    @property
    def streams(self) -> StreamRegistry:
        return self.scope.streams

    @property
    def clock(self) -> Clock:
        return self.scope.clock

    def metrics(self) -> dict[str, Any]:
        return self.scope.metrics()

    def shared(self, key: Key[T], factory: Callable[[], T]) -> T:
        return self.scope.shared(key, factory)
