"""Per-stream fan-out: each H.264 access unit is prepared once (RTP payloads) and handed to every viewer feed.

The GOP cache keeps the frames since the last keyframe so a joining viewer starts at once instead of waiting for
the publisher's next keyframe; it is bounded in frames and bytes (an over-long GOP empties it until the next
keyframe, counted).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from .h264 import is_keyframe, parameter_sets, profile_level_id, rtp_payloads, with_parameter_sets

if TYPE_CHECKING:
    from .feed import ViewerFeed

VIDEO_CLOCK = 90_000


@dataclass(slots=True, eq=False)
class EncodedFrame:
    """One access unit ready for any number of RTP senders (read-only once built)."""

    payloads: list[bytes]
    pts90: int | None
    keyframe: bool
    frame_id: int
    pts: int | None
    t_capture: float
    size: int
    rendition: str = "src"
    t_received: float = field(default_factory=time.time)


def to_90k(pts: int | None, time_base: Fraction | None) -> int | None:
    if pts is None or time_base is None:
        return None
    return int(pts * time_base * VIDEO_CLOCK)


def prepare(data: bytes, *, keyframe: bool | None, config: bytes | None, frame_id: int, pts: int | None,
            time_base: Fraction | None, t_capture: float, rendition: str = "src") -> EncodedFrame:
    """Build an :class:`EncodedFrame` from an Annex-B access unit (parameter sets added to keyframes)."""
    key = is_keyframe(data) if keyframe is None or keyframe else False
    if key:
        data = with_parameter_sets(data, config)
    return EncodedFrame(payloads=rtp_payloads(data), pts90=to_90k(pts, time_base), keyframe=key,
                        frame_id=frame_id, pts=pts, t_capture=t_capture, size=len(data), rendition=rendition)


class StreamFanout:
    """One rendition of one stream: the GOP cache and the viewer feeds attached to it."""

    def __init__(self, stream_id: str, rendition: str = "src", *, gop_frames: int = 300,
                 gop_bytes: int = 16 << 20) -> None:
        self.stream_id = stream_id
        self.rendition = rendition
        self.gop_frames = gop_frames
        self.gop_bytes = gop_bytes
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

    def push_packet(self, data: bytes, *, keyframe: bool | None = None, config: bytes | None = None,
                    frame_id: int = -1, pts: int | None = None, time_base: Fraction | None = None,
                    t_capture: float | None = None, width: int | None = None, height: int | None = None) -> None:
        """Prepare one access unit and deliver it to every attached feed."""
        if config:
            self.config = config
        elif self.config is None or keyframe:
            found = parameter_sets(data) if keyframe is not False else None
            if found:
                self.config = found
        if self.profile is None and self.config:
            self.profile = profile_level_id(self.config)
        self.width, self.height = width or self.width, height or self.height
        frame = prepare(data, keyframe=keyframe, config=self.config, frame_id=frame_id, pts=pts,
                        time_base=time_base, t_capture=t_capture if t_capture is not None else time.time(),
                        rendition=self.rendition)
        self.push(frame)

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
            "profile_level_id": self.profile,
        }
