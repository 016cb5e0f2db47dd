"""The baseline the WebRTC benchmarks compare against: the smallest RTMP → aiortc server one would write.

``--mode passthrough``: one PyAV RTMP listener (low-delay flags), packets converted to Annex-B, handed to every
viewer's track as ``av.Packet`` (no GOP cache, no playout-delay, no keyframe requests: a viewer waits for the
publisher's next keyframe). ``--mode encode``: the naive design, decoded frames handed to every viewer's track and
encoded by aiortc once per viewer.

It speaks flowgraph's viewer contract (``POST /api/stream/connect``) and serves flowgraph's viewer page, so the
same headless-Chromium probe measures both.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

WEB = Path(__file__).resolve().parents[2] / "flowgraph" / "nodes" / "webrtc" / "web"


class QueueTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=120)

    async def recv(self) -> Any:
        return await self.queue.get()


class Server:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.tracks: set[QueueTrack] = set()
        self.pcs: set[RTCPeerConnection] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    def deliver(self, item: Any) -> None:
        for track in list(self.tracks):
            if track.queue.full():
                track.queue.get_nowait()
            track.queue.put_nowait(item)

    def reader(self, url: str) -> None:
        """Blocking: accept RTMP publishers one after another, forward packets (or frames) to the loop."""
        assert self.loop is not None
        while True:
            container = av.open(url, options={"listen": "1", "fflags": "nobuffer", "flags": "low_delay",
                                              "probesize": "32", "analyzeduration": "0"})
            stream = container.streams.video[0]
            bsf = av.BitStreamFilterContext("h264_mp4toannexb", stream)
            codec = av.CodecContext.create("h264", "r") if self.mode == "encode" else None
            if codec is not None and stream.codec_context.extradata:
                codec.extradata = stream.codec_context.extradata
            try:
                for packet in container.demux(stream):
                    if packet.size == 0:
                        continue
                    if codec is not None:
                        for frame in codec.decode(packet):
                            self.loop.call_soon_threadsafe(self.deliver, frame)
                        continue
                    for out in bsf.filter(packet):
                        # with the low-delay flags FLV packets come without pts: stamp arrival time (90 kHz)
                        out.pts = int(time.monotonic() * 90_000)
                        out.time_base = Fraction(1, 90_000)
                        self.loop.call_soon_threadsafe(self.deliver, out)
            except av.error.FFmpegError:
                pass
            container.close()

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response({"streams": ["bench"], "ice_servers": [], "default_stream": "bench"})

    async def streams(self, request: web.Request) -> web.Response:
        return web.json_response({"streams": ["bench"], "viewers": {"bench": len(self.pcs)}})

    async def connect(self, request: web.Request) -> web.Response:
        body = await request.json()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.add(pc)
        track = QueueTrack()
        transceiver = pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                         if c.mimeType.lower() in ("video/h264", "video/rtx")])

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected":
                self.tracks.add(track)
            elif pc.connectionState in ("failed", "closed"):
                self.tracks.discard(track)
                self.pcs.discard(pc)
                await pc.close()

        offer = body["offer"]
        # like flowgraph, skip unresolvable mDNS candidates (aiortc would stall ~1 s resolving them)
        offer = "".join(line for line in offer.splitlines(keepends=True)
                        if not (line.startswith("a=candidate:") and ".local " in line))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"answer": pc.localDescription.sdp, "type": "answer"})

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB / "index.html")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, required=True)
    parser.add_argument("--rtmp", type=int, required=True)
    parser.add_argument("--mode", choices=["passthrough", "encode"], default="passthrough")
    args = parser.parse_args()
    import aioice.ice

    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [*original(use_ipv4, use_ipv6), "127.0.0.1"]
    server = Server(args.mode)
    server.loop = asyncio.get_running_loop()
    app = web.Application()
    app.router.add_get("/", server.page)
    app.router.add_get("/api/webrtc/config", server.config)
    app.router.add_get("/api/webrtc/streams", server.streams)
    app.router.add_post("/api/stream/connect", server.connect)
    app.router.add_static("/webrtc", WEB)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.http).start()
    threading.Thread(target=server.reader, args=(f"rtmp://127.0.0.1:{args.rtmp}/live/bench",),
                     daemon=True).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
