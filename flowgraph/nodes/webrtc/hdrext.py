"""The playout-delay RTP header extension (low latency in Chromium), written by aiortc senders.

aiortc negotiates and writes only the header extensions it knows. Chromium offers
``http://www.webrtc.org/experiments/rtp-hdrext/playout-delay`` and honours it: with min 0 / max 100 ms its jitter
buffer shrinks to about a frame. Two things are needed: the URI in aiortc's list of video extensions (so the
answer keeps the id the browser offered), and a header-extension writer on each sender that adds the 3-byte
element. Only senders given :class:`PlayoutDelayMap` write it, so other aiortc users in the process are unaffected.
Both hooks into aiortc live in :mod:`.aiortc_adapter`.
"""

from __future__ import annotations

import struct

from aiortc import rtp
from aiortc.rtcrtpparameters import RTCRtpParameters

from . import aiortc_adapter

PLAYOUT_DELAY_URI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
_MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
_ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
#: Our local id for the offer/answer lists; the browser's id wins in an answer (ids ≤ 14: one-byte headers).
_LOCAL_ID = 6


def register_playout_delay() -> None:
    """Add the playout-delay URI to aiortc's negotiable video extensions (idempotent)."""
    aiortc_adapter.register_header_extension("video", PLAYOUT_DELAY_URI, _LOCAL_ID)


def playout_delay_bytes(min_ms: int, max_ms: int) -> bytes:
    """The extension's 3 bytes: 12-bit minimum and maximum delay in 10 ms units."""
    lo = max(0, min(4095, round(min_ms / 10)))
    hi = max(lo, min(4095, round(max_ms / 10)))
    return bytes(((lo >> 4) & 0xFF, ((lo & 0xF) << 4) | (hi >> 8), hi & 0xFF))


class PlayoutDelayMap(rtp.HeaderExtensionsMap):
    """A sender's header-extension writer that also writes playout-delay while :attr:`active`.

    The fast path writes the two extensions aiortc sets on video packets (mid, abs-send-time) plus ours; any other
    extension falls back to aiortc's writer and is re-packed.
    """

    def __init__(self, min_ms: int = 0, max_ms: int = 100) -> None:
        super().__init__()
        self.value = playout_delay_bytes(min_ms, max_ms)
        self.active = True
        self.playout_id: int | None = None
        self._mid_id: int | None = None
        self._abs_id: int | None = None

    def configure(self, parameters: RTCRtpParameters) -> None:
        super().configure(parameters)
        for ext in parameters.headerExtensions:
            if ext.uri == PLAYOUT_DELAY_URI:
                self.playout_id = ext.id
            elif ext.uri == _MID_URI:
                self._mid_id = ext.id
            elif ext.uri == _ABS_SEND_TIME_URI:
                self._abs_id = ext.id

    def set(self, values: rtp.HeaderExtensions) -> tuple[int, bytes]:
        extra = self.playout_id is not None and self.active
        if values.audio_level is not None or values.rtp_stream_id is not None \
                or values.repaired_rtp_stream_id is not None or values.transmission_offset is not None \
                or values.transport_sequence_number is not None:
            profile, packed = super().set(values)
            if not extra:
                return profile, packed
            elements = list(rtp.unpack_header_extensions(profile, packed))
        else:
            elements = []
            if values.mid is not None and self._mid_id:
                elements.append((self._mid_id, values.mid.encode("utf8")))
            if values.abs_send_time is not None and self._abs_id:
                elements.append((self._abs_id, struct.pack("!L", values.abs_send_time)[1:]))
        if extra:
            assert self.playout_id is not None
            elements.append((self.playout_id, self.value))
        return rtp.pack_header_extensions(elements)
