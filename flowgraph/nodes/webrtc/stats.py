"""Per-viewer network figures from RTCP (receiver reports, REMB), and a sliding bitrate meter."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

RTCP_PSFB_APP = 15


class RtcpStats:
    """What a viewer's RTCP says about its link: loss, jitter, REMB, and when it was last heard from."""

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.last_heard = time.monotonic()
        self.reports = 0
        self.fraction_lost = 0.0
        self.packets_lost = 0
        self.jitter_ms = 0.0
        self.remb_bps: int | None = None
        self.plis = 0
        self.nacks = 0

    def on_packet(self, packet: Any) -> None:
        from aiortc.rtp import RtcpPsfbPacket, RtcpRrPacket, RtcpRtpfbPacket, RtcpSrPacket, unpack_remb_fci

        self.last_heard = time.monotonic()
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc == self.ssrc:
                    self.reports += 1
                    self.fraction_lost = report.fraction_lost / 256.0
                    self.packets_lost = report.packets_lost
                    self.jitter_ms = report.jitter / 90.0
        elif isinstance(packet, RtcpPsfbPacket):
            if packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    return
                if self.ssrc in ssrcs:
                    self.remb_bps = bitrate
            else:
                self.plis += 1
        elif isinstance(packet, RtcpRtpfbPacket):
            self.nacks += len(getattr(packet, "lost", []))

    def summary(self) -> dict[str, Any]:
        return {
            "fraction_lost": round(self.fraction_lost, 4), "packets_lost": self.packets_lost,
            "jitter_ms": round(self.jitter_ms, 2),
            "remb_kbps": None if self.remb_bps is None else self.remb_bps // 1000,
            "plis": self.plis, "nacks": self.nacks, "rtcp_reports": self.reports,
            "last_rtcp_s_ago": round(time.monotonic() - self.last_heard, 2),
        }


class BitrateMeter:
    """Bits per second over the last ``window`` seconds, from byte counts added as they happen."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()
        self._total = 0

    def add(self, size: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._samples.append((now, size))
        self._total += size
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._samples and now - self._samples[0][0] > self.window:
            self._total -= self._samples.popleft()[1]

    def bps(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        if not self._samples:
            return 0.0
        span = max(now - self._samples[0][0], self.window / 4)
        return self._total * 8 / span
