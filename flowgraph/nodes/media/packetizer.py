"""Turns access units from any source into the graph's H.264 :class:`Packet` messages, and counts them."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from flowgraph.messages import Packet

from .h264 import ParamSets, Spans, avcc_to_nals, facts, join_with_spans, nal_spans, split_nals


@dataclass
class IngestCounters:
    """What an ingest source reports (node ``counters()`` and ``/api/streams``)."""

    packets: int = 0
    bytes: int = 0
    keyframes: int = 0
    reconnects: int = 0
    corrupt: int = 0
    dropped: int = 0
    rejected: int = 0
    publishers: int = 0
    #: A new publisher replaced a live (or silent) one; a new publisher refused because the stream was live.
    takeovers: int = 0
    refused_busy: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PacketMaker:
    """Builds :class:`Packet` messages of one stream: Annex-B, self-contained keyframes, ``config`` attached,
    ``frame_id`` counting up across publisher reconnects."""

    def __init__(self, stream_id: str, counters: IngestCounters | None = None) -> None:
        self.stream_id = stream_id
        self.params = ParamSets()
        self.counters = counters or IngestCounters()
        self.next_frame_id = 0
        self.seen_keyframe = False

    @property
    def config(self) -> bytes | None:
        return self.params.config

    def learn_config(self, annexb_or_nals: bytes | list[bytes]) -> None:
        """Take parameter sets from out-of-band config (container extradata, FLV sequence header)."""
        nals = split_nals(annexb_or_nals) if isinstance(annexb_or_nals, bytes) else annexb_or_nals
        self.params.learn(nals)

    def from_annexb(self, data: bytes, **meta: Any) -> Packet | None:
        """A packet from an Annex-B access unit; None when it holds no NAL unit (empty: dropped; no start code, so
        not Annex-B at all: corrupt)."""
        spans = nal_spans(data)
        if not spans and data:
            self.counters.corrupt += 1
            return None
        return self._make(data, spans, [data[offset:offset + length] for offset, length in spans], **meta)

    def from_avcc(self, data: bytes, length_size: int = 4, **meta: Any) -> Packet | None:
        nals = avcc_to_nals(data, length_size)
        return self._make(None, (), nals, **meta)

    def _make(self, data: bytes | None, spans: Spans, nals: list[bytes], *, pts: int | None,
              dts: int | None = None, time_base: Fraction | None = None, t_capture: float | None = None,
              duration: int | None = None, keyframe: bool | None = None) -> Packet | None:
        """One packet with its H.264 facts (NAL spans, keyframe, parameter sets present), or None for an access unit
        without any NAL unit (counted as dropped)."""
        if not nals:
            self.counters.dropped += 1
            return None
        completed, _ = self.params.complete(nals)
        if completed is not nals or data is None:
            data, spans = join_with_spans(completed)
        is_key, has_sets = facts(data, spans)
        if keyframe is not None:
            is_key = is_key or keyframe
        info = self.params.info
        packet = Packet(
            stream_id=self.stream_id, frame_id=self.next_frame_id, pts=pts, dts=dts if dts is not None else pts,
            time_base=time_base, t_capture=time.time() if t_capture is None else t_capture, data=data,
            keyframe=is_key, duration=duration, width=info.width if info else None,
            height=info.height if info else None, config=self.params.config, seq=self.next_frame_id,
            nal_units=spans, parameter_sets=has_sets,
        )
        self.next_frame_id += 1
        counters = self.counters
        counters.packets += 1
        counters.bytes += len(data)
        if is_key:
            counters.keyframes += 1
            self.seen_keyframe = True
        return packet
