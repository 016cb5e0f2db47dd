"""Port declarations (``Input``/``Output`` class attributes) and the bound output a running node sends on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from .messages import Message, StreamEnd

if TYPE_CHECKING:
    from .channel import Channel
    from .node import Node

M = TypeVar("M", bound=Message)


class Input(Generic[M]):
    """A typed input port. ``required=False`` lets the graph leave it unconnected."""

    def __init__(self, type: type[M] = Message, doc: str = "", *, required: bool = True) -> None:  # type: ignore[assignment]
        self.type = type
        self.doc = doc
        self.required = required
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Input({self.type.__name__}, name={self.name!r})"


class Output(Generic[M]):
    """A typed output port; on a running node instance the attribute is a :class:`BoundOutput`."""

    def __init__(self, type: type[M] = Message, doc: str = "", *, follows: str | None = None) -> None:  # type: ignore[assignment]
        self.type = type
        self.doc = doc
        #: Name of an input whose upstream type this output carries (pass-through nodes): the compiler then
        #: types the output as what actually arrives, so ``tick -> passthrough -> x`` still type-checks as Data.
        self.follows = follows
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Output[M]: ...
    @overload
    def __get__(self, obj: Node, objtype: type | None = None) -> BoundOutput[M]: ...
    def __get__(self, obj: Node | None, objtype: type | None = None) -> Output[M] | BoundOutput[M]:
        if obj is None:
            return self
        return obj._outputs[self.name]

    def __repr__(self) -> str:
        return f"Output({self.type.__name__}, name={self.name!r})"


class BoundOutput(Generic[M]):
    """Where a running node's messages go: channels (queued) and fused consumers (called inline).

    The same object goes to every consumer: fan-out never copies the payload.
    """

    __slots__ = ("_channels", "_fused", "node", "port", "sent")

    def __init__(self, node: str, port: str) -> None:
        self.node = node
        self.port = port
        self._channels: list[Channel] = []
        self._fused: list[Callable[[Any], Awaitable[None]]] = []
        self.sent = 0

    @property
    def channels(self) -> tuple[Channel, ...]:
        return tuple(self._channels)

    @property
    def connected(self) -> bool:
        return bool(self._channels or self._fused)

    def connect(self, channel: Channel) -> None:
        self._channels.append(channel)

    def disconnect(self, channel: Channel) -> None:
        """Stop sending to ``channel`` (live re-wiring); a channel not connected here is ignored."""
        if channel in self._channels:
            self._channels.remove(channel)

    def fuse(self, deliver: Callable[[Any], Awaitable[None]]) -> None:
        self._fused.append(deliver)

    async def send(self, msg: M | StreamEnd) -> None:
        """Deliver ``msg`` downstream; waits only where a ``block`` edge is full (backpressure). A
        :class:`StreamEnd` goes on any output whatever its type."""
        self.sent += 1
        for channel in self._channels:
            if not channel.offer(msg):
                await channel.put(msg)
        for deliver in self._fused:
            await deliver(msg)

    def close(self) -> None:
        """Signal end-of-stream to every consumer."""
        for channel in self._channels:
            channel.close()
