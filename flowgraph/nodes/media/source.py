"""What every ingest source is: a producer of H.264 :class:`Packet` messages for one stream.

Two kinds exist. *Blocking* sources (PyAV demuxers, the synthetic encoder) implement ``packets()`` as a plain
generator; the ingest node pulls it in its worker thread. *Async* sources (the RTMP server, WHIP) implement
``packets()`` as an async generator on the event loop. Both watch :attr:`Source.stop_event` so that a graph stop is
prompt, and both report their state for ``/api/streams``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from flowgraph.messages import Packet

from .packetizer import IngestCounters, PacketMaker


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
