"""The ``record`` node: writes H.264 packets, untouched, to fragmented MP4 or Matroska.

Fragmented MP4 (``empty_moov`` + a fragment at every keyframe and at least every ``fragment_s``) and Matroska are
both readable up to the last complete fragment/cluster when the process dies without closing the file — a crash
loses at most about ``fragment_s`` of video. Recording starts at the first keyframe (the parameter sets come from
the stream itself: ``delay_moov`` writes the header once they are known), so a recorder wired to a live stream
mid-GOP waits for the next one. ``segment_s`` rotates files at the first keyframe after that many seconds.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from flowgraph.context import NodeContext
from flowgraph.messages import Packet, StreamEnd
from flowgraph.node import Node
from flowgraph.params import param
from flowgraph.ports import Input


class Record(Node):
    """Writes an H.264 packet stream to fragmented MP4 / Matroska files (crash-safe)."""

    packets = Input(Packet, "H.264 Annex-B access units")

    @dataclass
    class Params:
        path: str = param(doc="output file; {stream_id}, {index} and {time:%Y%m%d-%H%M%S} are filled in",
                          minLength=1)
        format: Literal["auto", "mp4", "mkv"] = param("auto", "container (auto = from the file extension)")
        fragment_s: float = param(1.0, "mp4: longest fragment (also cut at every keyframe)", exclusiveMinimum=0)
        segment_s: float = param(0.0, "start a new file at the first keyframe after this many seconds (0 = never)",
                                 minimum=0)

    def __init__(self, ctx: NodeContext, params: Record.Params | None = None) -> None:
        super().__init__(ctx, params)
        from .report import StreamReport

        self._writers: dict[str, _Writer] = {}  # the open files (resources: closed by stop)
        self.files: list[str] = []
        self.skipped = 0
        self.errors = 0
        self._report = StreamReport(self.ctx.streams, "record")

    def process(self, packet: Packet) -> None:
        writer = self._writers.get(packet.stream_id)
        if writer is not None and packet.keyframe and writer.expired(self.params.segment_s):
            writer.close()
            writer = None
        if writer is None:
            if not packet.keyframe:
                self.skipped += 1
                return
            writer = self._writers[packet.stream_id] = _Writer(self._path(packet), self._format(), packet,
                                                               self.params.fragment_s)
            self.files.append(writer.path)
        writer.write(packet)
        self._report.maybe(packet.stream_id, lambda: {"node": self.name, "path": writer.path,
                                                      "packets": writer.packets, "bytes": writer.bytes})

    def _path(self, packet: Packet) -> str:
        path = self.params.path.format(stream_id=packet.stream_id, index=len(self.files),
                                       time=_dt.datetime.now())
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return path

    def _format(self) -> str:
        fmt = self.params.format
        if fmt == "auto":
            fmt = "mkv" if self.params.path.lower().endswith((".mkv", ".mka", ".webm")) else "mp4"
        return fmt

    async def end_stream(self, end: StreamEnd) -> None:
        """The stream ended: its file is finished and closed (in the worker thread, after its last write)."""
        writer = self._writers.pop(end.stream_id, None)
        if writer is not None:
            await self.offload(writer.close)

    async def flush(self) -> None:
        for stream_id, writer in list(self._writers.items()):
            fields = {"node": self.name, "path": writer.path, "packets": writer.packets, "bytes": writer.bytes,
                      "state": "closed"}
            self._report.maybe(stream_id, fields, force=True)
        await self.offload(self._close_all)

    async def stop(self) -> None:
        await self.offload(self._close_all)

    def _close_all(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def counters(self) -> dict[str, Any]:
        writers = list(self._writers.values())
        return {"files": len(self.files), "skipped": self.skipped,
                "packets": sum(w.packets for w in writers), "bytes": sum(w.bytes for w in writers),
                "recording": [w.path for w in writers]}


class _Writer:
    """One open output file."""

    def __init__(self, path: str, fmt: str, first: Packet, fragment_s: float) -> None:
        import av

        self.path = path
        if fmt == "mp4":
            options = {"movflags": "frag_keyframe+empty_moov+delay_moov+default_base_moof",
                       "frag_duration": str(int(fragment_s * 1_000_000))}
            self.container: Any = av.open(path, "w", format="mp4", options=options)
        else:
            self.container = av.open(path, "w", format="matroska", options={"live": "1"})
        self.time_base = first.time_base or Fraction(1, 90_000)
        self.stream = self.container.add_mux_stream("h264", width=first.width or 0, height=first.height or 0)
        self.stream.time_base = self.time_base
        self.opened = _dt.datetime.now().timestamp()
        self._origin = first.dts if first.dts is not None else (first.pts or 0)
        self._last_dts: int | None = None
        self.packets = 0
        self.bytes = 0

    def expired(self, segment_s: float) -> bool:
        return segment_s > 0 and _dt.datetime.now().timestamp() - self.opened >= segment_s

    def write(self, packet: Packet) -> None:
        import av

        data = packet.data
        if packet.keyframe and self.packets == 0 and packet.config and packet.config not in data:
            data = packet.config + data
        out = av.Packet(data)
        tb = packet.time_base or self.time_base
        pts = packet.pts if packet.pts is not None else (self._last_dts or 0) + 1
        dts = packet.dts if packet.dts is not None else pts
        if tb != self.time_base:
            pts, dts = int(pts * tb / self.time_base), int(dts * tb / self.time_base)
        pts, dts = pts - self._origin, dts - self._origin
        if self._last_dts is not None and dts <= self._last_dts:  # the muxer needs increasing timestamps
            shift = self._last_dts + 1 - dts
            dts += shift
            pts += shift
        pts = max(pts, dts)
        self._last_dts = dts
        out.pts, out.dts = pts, dts
        out.time_base = self.time_base
        out.is_keyframe = packet.keyframe
        out.stream = self.stream
        self.container.mux(out)
        self.packets += 1
        self.bytes += len(data)

    def close(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            finally:
                self.container = None
