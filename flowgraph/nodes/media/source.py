"""What every ingest source is: a producer of H.264 :class:`Packet` messages for one stream.

Two kinds exist. *Blocking* sources (PyAV demuxers, the synthetic encoder) implement ``packets()`` as a plain
generator; the ingest node pulls it in its worker thread. *Async* sources (the RTMP server, WHIP) implement
``packets()`` as an async generator on the event loop. Both watch :attr:`Source.stop_event` so that a graph stop is
prompt, and both report their state for ``/api/streams``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from flowgraph.messages import Packet

from .packetizer import IngestCounters, PacketMaker

log = logging.getLogger("flowgraph.media.ingest")

#: A publisher that has delivered no media for this long is presumed gone — typically the dead connection its own
#: encoder is reconnecting from — so under ``takeover: refuse`` a newcomer may still replace it (nginx-rtmp's
#: ``drop_idle_publisher``, checked when the newcomer arrives). The stream's idle timeout ends it later anyway.
STALE_PUBLISHER_S = 2.0


class Source:
    """Base of ingest sources. Subclasses set :attr:`state` / :attr:`publisher` as things happen."""

    #: True when ``packets`` is an async generator (runs on the event loop).
    is_async = False

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self.counters = IngestCounters()
        self.maker = PacketMaker(stream_id, self.counters)
        #: Set (from any thread) when the graph stops; sources end their loop and unblock their reads.
        self.stop_event = threading.Event()
        self.state = "starting"
        self.publisher: str | None = None
        self.fps: float | None = None
        self.codec_in = "h264"
        #: Called (on the event loop) when ``state``/``publisher`` change, so the streams API is current.
        self.on_change: Callable[[], None] = lambda: None
        #: The session publishing now (an RTMP connection, a WHIP peer connection); None between publishers.
        self._session: Any = None
        #: ``time.monotonic()`` of the current publisher's latest media, or of its arrival.
        self.last_media = 0.0

    # -- publishers (push sources: RTMP, WHIP; on the event loop) --------------------------------------------
    def refusal(self, takeover: str, newcomer: object = None) -> str | None:
        """Why a new publisher may not take this stream now, or None when it may.

        ``takeover: replace`` always lets it; ``refuse`` refuses it while the current publisher is sending — one
        that has sent nothing for :data:`STALE_PUBLISHER_S` is presumed gone and is replaced.
        """
        holder = self._session
        if holder is None or holder is newcomer or takeover == "replace":
            return None
        if time.monotonic() - self.last_media >= STALE_PUBLISHER_S:
            return None
        return f"stream {self.stream_id!r} already has a publisher (takeover: refuse)"

    def _take_publisher(self, session: object, peer: str) -> object | None:
        """Make ``session`` this stream's publisher; returns the session it replaced (the caller closes it)."""
        old, self._session = self._session, session
        if old is not None and old is not session:
            self.counters.takeovers += 1
            log.warning("stream %s: publisher %s replaces %s", self.stream_id, peer, self.publisher)
        else:
            old = None
        self.counters.publishers += 1
        if self.counters.publishers > 1:
            self.counters.reconnects += 1
        self.publisher = peer
        self.last_media = time.monotonic()  # the newcomer counts as sending from now on
        return old

    def _drop_publisher(self, session: object) -> bool:
        """``session`` left; True when it was the publisher (the stream now waits for the next one)."""
        if self._session is not session:
            return False
        self._session = None
        self.state = "waiting"
        self.publisher = None
        self.on_change()
        return True

    def packets(self) -> Iterator[Packet] | AsyncIterator[Packet]:
        raise NotImplementedError

    def request_keyframe(self) -> bool:
        """Ask the producer for an IDR; False when this source cannot (files, passthrough from a pull)."""
        return False

    def set_bitrate(self, kbps: int) -> bool:
        """Change the produced bitrate when this source encodes; False otherwise."""
        return False

    def stop(self) -> None:
        self.stop_event.set()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def describe(self) -> dict[str, Any]:
        """What ``/api/streams`` shows for this stream under the ``ingest`` role."""
        info = self.maker.params.info
        return {
            "source": type(self).__name__,
            "state": self.state,
            "publisher": self.publisher,
            "codec_in": self.codec_in,
            "width": info.width if info else None,
            "height": info.height if info else None,
            "fps": self.fps,
            **self.counters.as_dict(),
        }
