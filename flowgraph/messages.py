"""Typed messages that travel on graph edges.

Every message carries the metadata that makes it traceable back to a frame (promise 3 of the design): the
``stream_id`` it belongs to, the ``frame_id`` and ``pts`` of the frame it describes, and ``t_capture``, the wall
clock time (``time.time()``) at which that frame entered the system. A node that derives a message from another
calls :meth:`Message.like` so the metadata follows the data.

Payloads are never copied by the framework: fan-out hands the same object to every consumer, so consumers must
treat received messages as read-only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Self


@dataclass(slots=True, kw_only=True, eq=False)
class Message:
    """Base of everything on an edge: stream, frame and timing metadata."""

    stream_id: str = "default"
    frame_id: int = -1
    pts: int | None = None
    time_base: Fraction | None = None
    t_capture: float = field(default_factory=time.time)
    #: A ``torch.cuda.Event`` recorded by the CUDA stage that produced the payload; consumers on another stream
    #: wait on it (``stream.wait_event``) instead of synchronising the device. ``None`` on CPU.
    cuda_event: Any = None

    def like(self, other: Message) -> Self:
        """Copy ``other``'s stream/frame/timing metadata onto this message and return it."""
        self.stream_id = other.stream_id
        self.frame_id = other.frame_id
        self.pts = other.pts
        self.time_base = other.time_base
        self.t_capture = other.t_capture
        return self

    @property
    def pts_seconds(self) -> float | None:
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)

    def age(self, now: float | None = None) -> float:
        """Seconds since the frame this message describes was captured."""
        return (time.time() if now is None else now) - self.t_capture

    def meta(self) -> dict[str, Any]:
        """JSON-ready metadata, for payloads that leave the process."""
        return {
            "stream_id": self.stream_id,
            "frame_id": self.frame_id,
            "pts": self.pts,
            "pts_seconds": self.pts_seconds,
            "t_capture": self.t_capture,
        }


@dataclass(slots=True, kw_only=True, eq=False)
class Data(Message):
    """A generic payload: ticks, test traffic, anything without a richer type."""

    value: Any = None


@dataclass(slots=True, kw_only=True, eq=False)
class Control(Message):
    """A command sent against the data flow, e.g. ``keyframe`` from a viewer tier to a source or encoder."""

    command: str = ""
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True, eq=False)
class StreamEnd(Message):
    """One stream ended (its publisher left or timed out); the graph and the other streams go on.

    Travels on any edge whatever its type. The runtime calls each node's ``end_stream(stream_id)`` (free that
    stream's decoder, tracker, windows, caches) and forwards the marker on every output. Channels never drop it.
    """

    reason: str = ""
    #: The node that ended the stream (set by it); the runtime knows how many inputs the marker reaches per node.
    origin: str = ""


@dataclass(slots=True, kw_only=True, eq=False)
class Packet(Message):
    """One compressed access unit. H.264 is Annex-B (start codes), ready for RTP packetisation."""

    data: bytes = b""
    #: The access unit holds an IDR slice (set where the packet was made, from its NAL units).
    keyframe: bool = False
    dts: int | None = None
    duration: int | None = None
    codec: str = "h264"
    width: int | None = None
    height: int | None = None
    #: Parameter sets (H.264 SPS/PPS as Annex-B) in force for this packet, so late joiners can start decoding.
    config: bytes | None = None
    #: The producer's packet counter for this stream (consecutive). A gap means packets were lost on the way
    #: (e.g. a ``drop_oldest`` edge): a decoder then waits for the next keyframe instead of decoding garbage.
    seq: int | None = None
    #: ``(offset, length)`` of each NAL unit in ``data`` (start codes excluded), found once where the packet was
    #: made; ``None`` when its producer did not look (consumers then parse ``data``: ``h264.with_facts``).
    nal_units: tuple[tuple[int, int], ...] | None = None
    #: ``data`` itself carries SPS and PPS (a keyframe a fresh decoder can start from without ``config``).
    parameter_sets: bool = False


@dataclass(slots=True, kw_only=True, eq=False)
class VideoFrame(Message):
    """A decoded picture.

    ``image`` is either a numpy array ``(H, W, 3)`` uint8 in ``format`` order on the CPU, or a torch tensor
    ``(3, H, W)`` uint8 on ``device``. ``source`` may keep the decoder's own frame (e.g. ``av.VideoFrame``) so a
    consumer that wants another pixel format can convert without a detour.
    """

    image: Any = None
    format: str = "rgb24"
    device: str = "cpu"
    source: Any = None

    @property
    def height(self) -> int:
        shape = self.image.shape
        return int(shape[0] if self.device == "cpu" and len(shape) == 3 and shape[2] in (1, 3, 4) else shape[-2])

    @property
    def width(self) -> int:
        shape = self.image.shape
        return int(shape[1] if self.device == "cpu" and len(shape) == 3 and shape[2] in (1, 3, 4) else shape[-1])

    def numpy(self) -> Any:
        """The picture as an ``(H, W, 3)`` numpy array (a view when it already is one)."""
        if self.device == "cpu" and not hasattr(self.image, "detach"):
            return self.image
        return self.image.detach().permute(1, 2, 0).contiguous().cpu().numpy()


@dataclass(slots=True, kw_only=True, eq=False)
class Analytics(Message):
    """One message of the platform's public analytics contract: ``{"type": type, "payload": payload}``."""

    type: str = "detection"
    payload: dict[str, Any] = field(default_factory=dict)
    #: True when a join deadline passed before every branch answered.
    partial: bool = False
    #: Position in the stream's analytics ring buffer (set by ``fuse``/``ws_out``); -1 when not buffered.
    #: WebSocket clients resume from it after a reconnect.
    seq: int = -1

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "payload": self.payload}


#: The framework's own message types by name (node families define theirs beside their nodes).
MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.__name__: cls
    for cls in (Message, Data, Control, Packet, VideoFrame, Analytics)
}


def compatible(produced: type[Message], accepted: type[Message]) -> bool:
    """An edge is well typed when the producer's type is the consumer's or a subclass of it."""
    return issubclass(produced, accepted)
