"""One viewer's video feed: a bounded frame queue, RTP timestamps, and the hooks into aiortc's sender.

The sender pulls ready-made RTP payloads from this feed (no per-viewer packetising, no encoder; the hook is
:func:`.aiortc_adapter.hook_sender`). RTP timestamps advance by the source's pts differences; a joining
viewer's GOP burst is compressed to 1 ms apart so Chromium decodes it at once and reaches live quickly, without
playout-delay (which would make it show the old frames one per refresh). PLI/FIR and REMB, which aiortc ignores in
passthrough, are routed to callbacks.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from flowgraph.metrics import Samples

from .aiortc_adapter import hook_sender, last_rtp_timestamp
from .fanout import EncodedFrame
from .hdrext import PlayoutDelayMap
from .stats import BitrateMeter

_BURST_STEP = 90  # 1 ms at 90 kHz between compressed GOP-cache frames
_NOMINAL_STEP = 3000  # 1/30 s, when pts is missing or jumps
_MAX_STEP = 2 * 90_000


class ViewerFeed:
    """Frames for one viewer. ``put`` never blocks: past ``limit`` queued frames the feed skips to the next
    keyframe (counted) and asks for one."""

    def __init__(self, limit: int = 400, *, on_keyframe_needed: Callable[[str], None] | None = None,
                 header_map: PlayoutDelayMap | None = None) -> None:
        self.limit = limit
        self._queue: deque[tuple[EncodedFrame, bool]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._on_keyframe_needed = on_keyframe_needed
        self.header_map = header_map
        self.waiting_keyframe = True
        self.closed = False
        # RTP timing
        self._ts = 0
        self._pts90: int | None = None
        # figures
        self.frames_sent = 0
        self.bytes_sent = 0
        self.frames_dropped = 0
        self.overflows = 0
        self.burst_frames = 0
        self.first_frame_time: float | None = None
        self.first_live_time: float | None = None
        self.last_frame: EncodedFrame | None = None
        self.meter = BitrateMeter()
        #: Seconds from the packet's ingest (``t_capture``: its last byte read from the publisher's socket) to
        #: handing it to the RTP sender, for live (not GOP-burst) frames: the video path's in-server latency.
        self.in_server = Samples(256)
        self.created = time.monotonic()
        #: RTP timestamp origin the sender chose (learnt after its first frame), for the page's pts mapping.
        self.rtp_origin: int | None = None
        #: Called with (rtp_timestamp, frame) for live frames whose rtp→pts mapping changed, and every second.
        self.on_sync: Callable[[int, EncodedFrame], None] | None = None
        self._sync_offset: int | None = None
        self._sync_time = 0.0

    # -- producer side (fan-out) -----------------------------------------------------------------------------
    def put(self, frame: EncodedFrame) -> None:
        if self.closed:
            return
        if self.waiting_keyframe:
            if not frame.keyframe:
                self.frames_dropped += 1
                return
            self.waiting_keyframe = False
        if len(self._queue) >= self.limit:
            # far behind: everything queued is stale; restart at the next keyframe
            self.frames_dropped += len(self._queue) + (0 if frame.keyframe else 1)
            self._queue.clear()
            self.overflows += 1
            if not frame.keyframe:
                self.waiting_keyframe = True
                self._need_keyframe("overflow")
                return
        self._queue.append((frame, False))
        self._wake()

    def put_burst(self, frames: list[EncodedFrame]) -> None:
        """Queue cached frames (starting at a keyframe) to be sent with compressed timestamps."""
        if self.closed or not frames or not frames[0].keyframe:
            return
        self._queue.clear()
        self._queue.extend((f, True) for f in frames[-self.limit:])
        self.burst_frames += len(frames)
        self.waiting_keyframe = False
        self._wake()

    def wait_for_keyframe(self) -> None:
        """Drop frames until the next keyframe (after a switch or a decoder error on the viewer)."""
        self.waiting_keyframe = True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _need_keyframe(self, why: str) -> None:
        if self._on_keyframe_needed is not None:
            self._on_keyframe_needed(why)

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        self._wake()

    @property
    def depth(self) -> int:
        return len(self._queue)

    # -- consumer side (RTP sender) --------------------------------------------------------------------------
    async def next_frame(self) -> tuple[EncodedFrame, int, bool]:
        """The next frame, its RTP timestamp (90 kHz, before the sender's random origin) and whether it is a
        burst frame. Raises ``ConnectionError`` once closed (which ends aiortc's RTP loop quietly)."""
        while not self._queue:
            if self.closed:
                raise ConnectionError("feed closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.closed:
            raise ConnectionError("feed closed")
        frame, burst = self._queue.popleft()
        if self._pts90 is None:
            step = 0
        elif burst:
            step = _BURST_STEP
        elif frame.pts90 is not None and 0 < frame.pts90 - self._pts90 <= _MAX_STEP:
            step = frame.pts90 - self._pts90
        else:
            step = _NOMINAL_STEP
        self._ts = (self._ts + step) & 0xFFFFFFFF
        self._pts90 = frame.pts90 if frame.pts90 is not None else (self._pts90 or 0) + step
        now = time.monotonic()
        if self.first_frame_time is None:
            self.first_frame_time = now
        if not burst:
            self.in_server.add(time.time() - frame.t_capture)
            if self.first_live_time is None:
                self.first_live_time = now
        self.frames_sent += 1
        self.bytes_sent += frame.size
        self.meter.add(frame.size, now)
        self.last_frame = frame
        return frame, self._ts, burst

    def attach_sender(self, sender: Any, *, on_pli: Callable[[], None], on_rtcp: Callable[[Any], None]) -> None:
        """Hook an ``RTCRtpSender``: frames come from this feed; PLI/FIR and RTCP reach the callbacks."""
        header_map = self.header_map
        previous: list[int] = []

        async def next_payloads() -> tuple[list[bytes], int]:
            if self.rtp_origin is None and previous:
                # the sender keeps the last RTP timestamp it sent = its random origin + our previous timestamp
                last = last_rtp_timestamp(sender)
                if last is not None:
                    self.rtp_origin = (last - previous[0]) & 0xFFFFFFFF
            frame, ts, burst = await self.next_frame()
            previous[:] = [ts]
            if header_map is not None:
                header_map.active = not burst
            if not burst and self.rtp_origin is not None and self.on_sync is not None and frame.pts90 is not None:
                self._maybe_sync((self.rtp_origin + ts) & 0xFFFFFFFF, frame)
            return frame.payloads, ts

        hook_sender(sender, next_frame=next_payloads, on_keyframe_request=on_pli, on_rtcp=on_rtcp)

    def _maybe_sync(self, rtp_ts: int, frame: EncodedFrame) -> None:
        offset = ((frame.pts90 or 0) - rtp_ts) & 0xFFFFFFFF
        now = time.monotonic()
        if offset != self._sync_offset or now - self._sync_time >= 1.0:
            self._sync_offset = offset
            self._sync_time = now
            assert self.on_sync is not None
            self.on_sync(rtp_ts, frame)

    def stats(self) -> dict[str, Any]:
        first = None if self.first_frame_time is None else round((self.first_frame_time - self.created) * 1000, 1)
        live = None if self.first_live_time is None else round((self.first_live_time - self.created) * 1000, 1)
        return {
            "frames_sent": self.frames_sent, "bytes_sent": self.bytes_sent, "frames_dropped": self.frames_dropped,
            "overflows": self.overflows, "burst_frames": self.burst_frames, "queue": len(self._queue),
            "first_frame_ms": first, "first_live_frame_ms": live, "waiting_keyframe": self.waiting_keyframe,
        }
