"""Per-stream fan-out: each H.264 access unit is prepared once (RTP payloads) and handed to every viewer feed.

The GOP cache keeps the frames since the last keyframe so a joining viewer starts at once instead of waiting for
the publisher's next keyframe; it is bounded in frames and bytes (an over-long GOP empties it until the next
keyframe, counted).

A gap in ``Packet.seq`` (packets dropped on the node's input edge, upstream, or on the way to a viewer worker)
means the frames that follow reference pictures the viewers never got: the fan-out then holds the stream — the GOP
cache is emptied, every feed waits for a keyframe — and asks for a keyframe (``on_lost``). Viewers see the last good
picture until the keyframe arrives, never a smeared one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from flowgraph.messages import Packet
from flowgraph.nodes.media.h264 import decodable_nals, own_parameter_sets, profile_level_id

from .aiortc_adapter import rtp_payloads

if TYPE_CHECKING:
    from .feed import ViewerFeed

VIDEO_CLOCK = 90_000


@dataclass(slots=True, eq=False)
class EncodedFrame:
    """One access unit ready for any number of RTP senders (read-only once built): the packet as it arrived and
    its RTP payloads."""

    packet: Packet
    payloads: list[bytes]
    pts90: int | None
    size: int
    rendition: str = "src"
    t_received: float = field(default_factory=time.time)

    @property
    def keyframe(self) -> bool:
        return self.packet.keyframe

    @property
    def frame_id(self) -> int:
        return self.packet.frame_id

    @property
    def pts(self) -> int | None:
        return self.packet.pts

    @property
    def t_capture(self) -> float:
        return self.packet.t_capture


def to_90k(pts: int | None, time_base: Fraction | None) -> int | None:
    if pts is None or time_base is None:
        return None
    return int(pts * time_base * VIDEO_CLOCK)


def prepare(packet: Packet, config: bytes | None, rendition: str = "src") -> EncodedFrame:
    """Build an :class:`EncodedFrame` from a packet whose H.264 facts are known (``h264.with_facts``); a keyframe
    without its own SPS/PPS gets ``config`` in front."""
    payloads = rtp_payloads(decodable_nals(packet, config))
    return EncodedFrame(packet=packet, payloads=payloads, pts90=to_90k(packet.pts, packet.time_base),
                        size=sum(len(p) for p in payloads), rendition=rendition)


class StreamFanout:
    """One rendition of one stream: the GOP cache, the viewer feeds attached to it, and its ``seq`` watch."""

    def __init__(self, stream_id: str, rendition: str = "src", *, gop_frames: int = 300,
                 gop_bytes: int = 16 << 20, on_lost: Callable[[str], object] | None = None) -> None:
        self.stream_id = stream_id
        self.rendition = rendition
        self.gop_frames = gop_frames
        self.gop_bytes = gop_bytes
        self.on_lost = on_lost
        self.feeds: set[ViewerFeed] = set()
        self.gop: list[EncodedFrame] = []
        self._gop_size = 0
        self.config: bytes | None = None
        self.width: int | None = None
        self.height: int | None = None
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self.gop_overflows = 0
        self.last_frame_time = 0.0
        self.last_keyframe_time = 0.0
        self.profile: str | None = None
        self.last_seq: int | None = None
        #: Gaps seen (in ``seq``, or reported by the IPC) and the packets missing in them.
        self.gaps = 0
        self.packets_lost = 0
        #: Packets without any NAL unit (not Annex-B): never sent, and treated as lost.
        self.unusable = 0
        #: True from a gap until the next keyframe: nothing but a keyframe is delivered.
        self.holding = False
        self.frames_held = 0

    def push_packet(self, packet: Packet, *, lost_before: bool = False) -> None:
        """Prepare one access unit (its H.264 facts known) and deliver it to every attached feed.

        ``lost_before``: packets were lost right before this one where ``seq`` cannot show it (e.g. dropped on the
        way to a viewer worker while the producer sets no ``seq``)."""
        missing = self._missing(packet, lost_before)
        if not packet.nal_units:  # not Annex-B (no start code) or empty: undecodable, so it is lost too
            self.unusable += 1
            missing += 1
        if missing:
            self.gaps += 1
            self.packets_lost += missing
            if not packet.keyframe or not packet.nal_units:  # a keyframe restarts the stream: nothing lost matters
                self.hold()
                if self.on_lost is not None:
                    self.on_lost(self.rendition)
        if not packet.nal_units:
            return
        if packet.config:
            self.config = packet.config
        elif packet.keyframe and packet.parameter_sets:
            self.config = own_parameter_sets(packet) or self.config
        if self.profile is None and self.config:
            self.profile = profile_level_id(self.config)
        self.width, self.height = packet.width or self.width, packet.height or self.height
        if self.holding:
            if not packet.keyframe:
                self.frames_held += 1
                return
            self.holding = False
        self.push(prepare(packet, self.config, self.rendition))

    def _missing(self, packet: Packet, lost_before: bool) -> int:
        """How many packets were lost right before this one."""
        missing = 1 if lost_before else 0
        if packet.seq is not None:
            last, self.last_seq = self.last_seq, packet.seq
            if last is not None and packet.seq != last + 1:
                # a restarted producer counts from 0 again: at least one packet's references are unknown
                missing = max(missing, packet.seq - last - 1 if packet.seq > last else 1)
        return missing

    def hold(self) -> None:
        """Deliver nothing until the next keyframe: the cache and every feed restart there."""
        self.holding = True
        self.gop = []
        self._gop_size = 0
        for feed in self.feeds:
            feed.wait_for_keyframe()

    def push(self, frame: EncodedFrame) -> None:
        self.frames += 1
        self.bytes += frame.size
        now = time.monotonic()
        self.last_frame_time = now
        if frame.keyframe:
            self.keyframes += 1
            self.last_keyframe_time = now
            self.gop = [frame]
            self._gop_size = frame.size
        elif self.gop:
            if len(self.gop) >= self.gop_frames or self._gop_size + frame.size > self.gop_bytes:
                self.gop = []
                self._gop_size = 0
                self.gop_overflows += 1
            else:
                self.gop.append(frame)
                self._gop_size += frame.size
        for feed in list(self.feeds):
            feed.put(frame)

    def attach(self, feed: ViewerFeed, *, gop: bool = True) -> int:
        """Attach a feed; with ``gop`` it first gets the cached frames (a compressed burst). Returns their count."""
        self.feeds.add(feed)
        if gop and self.gop:
            feed.put_burst(self.gop)
            return len(self.gop)
        return 0

    def detach(self, feed: ViewerFeed) -> None:
        self.feeds.discard(feed)

    def stats(self) -> dict[str, Any]:
        return {
            "rendition": self.rendition, "viewers": len(self.feeds), "frames": self.frames,
            "keyframes": self.keyframes, "bytes": self.bytes, "gop_cached": len(self.gop),
            "gop_overflows": self.gop_overflows, "width": self.width, "height": self.height,
            "profile_level_id": self.profile, "gaps": self.gaps, "packets_lost": self.packets_lost,
            "holding": self.holding, "frames_held": self.frames_held, "unusable": self.unusable,
        }
