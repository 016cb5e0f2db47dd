"""The ``decode`` node: H.264 packets to pictures, in the node's worker thread (PyAV releases the GIL).

Threading defaults to SLICE, not FFmpeg's AUTO: frame threading holds one picture per thread (measured: 2 frames,
≈ 66 ms at 30 fps, on this 2-core machine) — latency a live CV branch should not pay. ``thread_type: AUTO`` buys
≈ 1.5× throughput for files and batch work.

On the CPU a frame is converted (and resized, when asked) by one swscale pass straight into the array that is
handed on: ``VideoFrame.image`` is a view of that buffer, ``VideoFrame.source`` keeps the decoder's own YUV frame
for consumers that want planes. Placed on CUDA, the decoder asks FFmpeg for NVDEC (``hwaccel``) and the picture
becomes a ``(3, H, W)`` uint8 torch tensor on the node's device, uploaded from pinned memory — that path cannot be
exercised on this machine (no GPU) and is kept as written.

A corrupt packet (decoder error, or a frame FFmpeg marks corrupt) never fails the node: it is counted, and
pictures are withheld until the next keyframe so nobody analyses smeared references. A decoder that joins
mid-stream likewise waits for a keyframe, and so does one that sees a gap in ``Packet.seq`` (packets dropped on a
``drop_oldest`` edge: counted as ``lost``). Wire ``packets`` with ``policy: block`` when every frame matters (files
decoded as fast as possible); live edges may drop, and then cost pictures until the next keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, Literal

from flowgraph.context import NodeContext
from flowgraph.messages import Packet, StreamEnd, VideoFrame
from flowgraph.node import Node
from flowgraph.params import param
from flowgraph.ports import Input, Output

#: Packets in flight between the loop and the worker thread (decoding one while the previous one's pictures go out).
PIPELINE_DEPTH = 2


class Decode(Node):
    """Decodes H.264 packets into RGB pictures (numpy on CPU, torch on CUDA)."""

    packets = Input(Packet, "H.264 Annex-B access units")
    frames = Output(VideoFrame, "decoded pictures with the packet's stream_id/frame_id/pts/t_capture")
    gpu = True
    forwards_stream_end = True  # the marker follows the stream's last pictures through the decode pipeline

    @dataclass
    class Params:
        width: int = param(0, "resize to this width (0 = source width; keeps aspect when only height is set)",
                           minimum=0, maximum=7680)
        height: int = param(0, "resize to this height (0 = source height; keeps aspect when only width is set)",
                            minimum=0, maximum=4320)
        format: Literal["rgb24", "bgr24"] = param("rgb24", "pixel order of VideoFrame.image")
        thread_type: Literal["AUTO", "SLICE", "FRAME", "NONE"] = param(
            "SLICE", "FFmpeg decoder threading: SLICE adds no delay (live); AUTO/FRAME decode faster but hold "
                     "a frame per thread (2 frames ≈ 66 ms at 30 fps on 2 cores): use them for files/throughput")
        threads: int = param(0, "decoder threads (0 = FFmpeg's choice)", minimum=0, maximum=64)
        keep_source: bool = param(True, "keep the decoder's YUV frame in VideoFrame.source")
        hwaccel: Literal["auto", "none"] = param("auto", "auto = NVDEC when the node is placed on CUDA")

    def __init__(self, ctx: NodeContext, params: Decode.Params | None = None) -> None:
        super().__init__(ctx, params)
        from .decoder import StreamDecoder
        from .report import StreamReport

        self._decoder_cls = StreamDecoder
        self._decoders: dict[str, StreamDecoder] = {}
        self._report = StreamReport(self.ctx.streams, "decode")
        self._pending: asyncio.Queue[asyncio.Future[list[VideoFrame]] | None] = asyncio.Queue(PIPELINE_DEPTH)
        self._sender: asyncio.Task[None] | None = None
        self.errors = 0

    async def start(self) -> None:
        self._pending = asyncio.Queue(PIPELINE_DEPTH)
        self._sender = asyncio.create_task(self._send_decoded(), name=f"decode-send:{self.name}")

    async def process(self, packet: Packet) -> None:
        # Pipelined: the worker thread starts on this packet while the loop still hands out the previous one's
        # pictures; the sender task keeps order. Nothing waits for a later packet, so no latency is added.
        decoded = asyncio.ensure_future(self.offload(self._decode, packet))
        await self._pending.put(decoded)  # bounded: backpressure once PIPELINE_DEPTH packets are in flight

    async def _send_decoded(self) -> None:
        while True:
            decoded = await self._pending.get()
            if decoded is None:
                return
            try:
                frames = await decoded
            except Exception:  # _decode handles media errors; anything else is a bug worth a log, not a stall
                self.errors += 1
                self.log.exception("decode failed")
                continue
            for frame in frames:
                await self.frames.send(frame)

    def _decode(self, packet: Packet) -> list[VideoFrame]:
        """In the worker thread: one packet through its stream's decoder."""
        decoder = self._decoders.get(packet.stream_id)
        if decoder is None:
            p = self.params
            decoder = self._decoders[packet.stream_id] = self._decoder_cls(
                width=p.width, height=p.height, format=p.format, thread_type=p.thread_type, threads=p.threads,
                keep_source=p.keep_source, device=self.device if p.hwaccel == "auto" else "cpu")
        frames = decoder.decode(packet)
        self._report.maybe(packet.stream_id, lambda: {"node": self.name, **decoder.report()})
        return frames

    async def end_stream(self, end: StreamEnd) -> None:
        """In order behind the stream's queued packets: its decoder's last pictures, the marker, decoder freed."""
        await self._pending.put(asyncio.ensure_future(self.offload(self._end, end)))

    def _end(self, end: StreamEnd) -> list[Any]:
        decoder = self._decoders.pop(end.stream_id, None)
        return [end] if decoder is None else [*decoder.flush(), end]

    async def flush(self) -> None:
        await self._pending.put(None)
        if self._sender is not None:
            await self._sender
        for stream_id, decoder in self._decoders.items():
            for frame in await self.offload(decoder.flush):
                await self.frames.send(frame)
            self._report.maybe(stream_id, {"node": self.name, **decoder.report()}, force=True)

    async def stop(self) -> None:
        sender = self._sender
        if sender is not None and not sender.done():
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    def counters(self) -> dict[str, Any]:
        totals: dict[str, Any] = {"errors": self.errors}
        for decoder in list(self._decoders.values()):
            for key, value in decoder.counters().items():
                totals[key] = totals.get(key, 0) + value
        return totals
