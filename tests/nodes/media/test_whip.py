"""WHIP ingest with a real aiortc publisher on loopback: token, SDP exchange, passthrough, VP8 fallback, PLI."""

from __future__ import annotations

import itertools
import time
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription, VideoStreamTrack

from flowgraph.nodes.media.h264 import NAL_SPS, nal_type, split_nals
from flowgraph.testing import collected, running

from .helpers import ingest_graph, wait_for

pytestmark = pytest.mark.usefixtures("loopback_ice")
GRAPH = ingest_graph({"url": "whip://", "stream_id": "cam", "token": "s3cret"}, on_error="skip_message")


class Pattern(VideoStreamTrack):
    """A 320x240 picture that changes every frame."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        image = np.full((240, 320, 3), (self.n * 5) % 256, dtype=np.uint8)
        image[:, (self.n * 4) % 320] = 255
        self.n += 1
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class Publisher:
    """An aiortc WHIP client."""

    def __init__(self, url: str, token: str, codec: str = "h264") -> None:
        self.url, self.token, self.codec = url, token, codec
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.location: str | None = None
        self.status = 0

    async def publish(self, content_type: str = "application/sdp") -> str:
        transceiver = self.pc.addTransceiver(Pattern(), direction="sendonly")
        codecs = RTCRtpSender.getCapabilities("video").codecs
        transceiver.setCodecPreferences([c for c in codecs if self.codec in c.mimeType.lower()])
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession() as http, http.post(
                self.url, data=self.pc.localDescription.sdp,
                headers={"Content-Type": content_type, "Authorization": f"Bearer {self.token}"}) as response:
            self.status = response.status
            body = await response.text()
            if response.status == 201:
                self.location = response.headers["Location"]
                assert response.content_type == "application/sdp"
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
            return body

    async def close(self) -> None:
        await self.pc.close()


async def test_whip_publish_passthrough_and_delete() -> None:
    async with running(GRAPH) as rt:
        base = rt.server.url
        publisher = Publisher(base + "/whip/cam", "s3cret")
        started = time.monotonic()
        answer = await publisher.publish()
        try:
            assert publisher.status == 201 and "m=video" in answer and "H264/90000" in answer
            assert publisher.location is not None and publisher.location.startswith("/whip/cam/")
            assert await wait_for(lambda: len(collected(rt, "frames")) >= 15, 15)
            first_frame_s = time.monotonic() - started
            async with aiohttp.ClientSession() as http:
                unknown = await http.delete(base + "/whip/cam/nope", headers={"Authorization": "Bearer s3cret"})
                ended = await http.delete(base + publisher.location, headers={"Authorization": "Bearer s3cret"})
            assert unknown.status == 404 and ended.status == 200
            assert await wait_for(lambda: rt.scope.streams.get("cam")["ingest"]["state"] == "waiting", 5)
            info = rt.scope.streams.get("cam")["ingest"]
        finally:
            await publisher.close()
    packets = collected(rt, "packets")
    assert packets[0].keyframe and NAL_SPS in [nal_type(n) for n in split_nals(packets[0].data)]
    assert info["codec_in"] == "h264" and info["width"] == 320 and info["publishers"] == 1
    assert collected(rt, "frames")[0].image.shape == (240, 320, 3)
    assert first_frame_s < 10


async def test_next_publisher_resumes_the_same_stream() -> None:
    async with running(GRAPH) as rt:
        first = Publisher(rt.server.url + "/whip/cam", "s3cret")
        await first.publish()
        try:
            assert await wait_for(lambda: len(collected(rt, "frames")) >= 10, 15)
        finally:
            await first.close()  # gone without a DELETE: the connection just closes
        assert await wait_for(lambda: rt.scope.streams.get("cam")["ingest"]["state"] == "waiting", 10)
        before = len(collected(rt, "packets"))
        second = Publisher(rt.server.url + "/whip/cam", "s3cret")
        await second.publish()
        try:
            assert await wait_for(lambda: len(collected(rt, "frames")) >= before + 10, 15)
        finally:
            await second.close()
        counters = rt.snapshot()["nodes"]["src"]["counters"]
        states = {name: r.stats.state for name, r in rt.runners.items()}
    assert counters["publishers"] == 2 and counters["reconnects"] == 1 and set(states.values()) == {"running"}
    packets = collected(rt, "packets")
    assert all(b.pts > a.pts for a, b in itertools.pairwise(packets))  # one timeline across publishers
    assert rt.snapshot()["nodes"]["dec"]["counters"]["corrupt"] == 0


async def test_whip_rejects_bad_token_and_content_type() -> None:
    async with running(GRAPH) as rt:
        url = rt.server.url + "/whip/cam"
        wrong = Publisher(url, "nope")
        await wrong.publish()
        await wrong.close()
        bad_type = Publisher(url, "s3cret")
        await bad_type.publish(content_type="text/plain")
        await bad_type.close()
        counters = rt.snapshot()["nodes"]["src"]["counters"]
    assert wrong.status == 401 and bad_type.status == 415
    assert counters["rejected"] == 1 and counters["packets"] == 0


async def test_vp8_publisher_is_transcoded_to_h264() -> None:
    async with running(GRAPH) as rt:
        publisher = Publisher(rt.server.url + "/whip/cam", "s3cret", codec="vp8")
        answer = await publisher.publish()
        try:
            assert "VP8/90000" in answer
            assert await wait_for(lambda: len(collected(rt, "frames")) >= 10, 20)
        finally:
            await publisher.close()
    packets = collected(rt, "packets")
    assert packets[0].keyframe and packets[0].width == 320 and packets[0].codec == "h264"
    assert rt.scope.streams.get("cam")["ingest"]["codec_in"] == "vp8"


async def test_keyframe_request_becomes_a_pli_to_the_publisher() -> None:
    from flowgraph.messages import Control

    async with running(GRAPH) as rt:
        publisher = Publisher(rt.server.url + "/whip/cam", "s3cret")
        await publisher.publish()
        try:
            assert await wait_for(lambda: len(collected(rt, "packets")) >= 10, 15)
            keys_before = sum(p.keyframe for p in collected(rt, "packets"))
            node: Any = rt.runners["src"].node
            await node.on_control(Control(command="keyframe", stream_id="cam"))
            assert await wait_for(lambda: sum(p.keyframe for p in collected(rt, "packets")) > keys_before, 5)
        finally:
            await publisher.close()
    assert rt.snapshot()["nodes"]["src"]["counters"]["keyframes_forced"] == 1


async def test_multi_stream_whip_admits_each_key_as_its_stream_and_ends_it() -> None:
    from flowgraph.messages import StreamEnd

    graph = ingest_graph({"url": "whip://", "keys": "k1=alpha,k2=beta", "max_streams": 2, "takeover": "replace"},
                         on_error="skip_message")
    async with running(graph) as rt:
        base = rt.server.url
        alpha, beta = Publisher(base + "/whip", "k1"), Publisher(base + "/whip", "k2")
        stranger, third = Publisher(base + "/whip", "nope"), Publisher(base + "/whip/k1", "")
        try:
            await alpha.publish()
            await beta.publish()
            await stranger.publish()
            assert await wait_for(lambda: {f.stream_id for f in collected(rt, "frames")} == {"alpha", "beta"}, 20)
            assert alpha.location is not None and alpha.location.startswith("/whip/alpha/")
            await third.publish()  # key in the path, no bearer: admitted as a takeover of alpha (the stream goes on)
            async with aiohttp.ClientSession() as http:
                assert beta.location is not None
                ended = await http.delete(base + beta.location)
            assert ended.status == 200
            assert await wait_for(lambda: any(isinstance(m, StreamEnd) for m in collected(rt, "frames")), 10)
            counters = rt.snapshot()["nodes"]["src"]["counters"]
            ends = [m.stream_id for m in collected(rt, "frames") if isinstance(m, StreamEnd)]
        finally:
            for publisher in (alpha, beta, stranger, third):
                await publisher.close()
    assert (alpha.status, beta.status, stranger.status, third.status) == (201, 201, 403, 201)
    assert ends == ["beta"]
    assert counters["admission"]["refused"] == {"unauthorised": 1} and counters["streams_live"] == 1
