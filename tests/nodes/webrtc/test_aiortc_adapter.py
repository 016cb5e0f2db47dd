"""Contract test of :mod:`flowgraph.nodes.webrtc.aiortc_adapter` against the installed aiortc and aioice.

Every private hook the adapter uses is driven through a real loopback call between two aiortc peers: a hooked
sender (frames from a function, PLI and RTCP to callbacks, playout-delay writer, RTP origin and RTT read back) and
a tapped receiver (encoded frames before the decoder, PLI sent from it). When an aiortc/aioice upgrade moves one of
these internals, the assertion that names it fails here, before any viewer notices.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from typing import Any

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtcpRrPacket

from flowgraph.messages import Packet
from flowgraph.nodes.media.h264 import NAL_IDR, decodable_nals, nal_types, with_facts
from flowgraph.nodes.webrtc import aiortc_adapter as adapter
from flowgraph.nodes.webrtc.hdrext import PLAYOUT_DELAY_URI, PlayoutDelayMap, register_playout_delay

from .conftest import encode_packets


def test_versions_it_was_not_written_for_are_refused_by_name() -> None:
    adapter.check_versions({"aiortc": "1.16.0", "aioice": "0.13.0"})
    with pytest.raises(adapter.AiortcVersionError, match=r"aiortc 1\.17\.0 \(written for 1\.16\.x\)"):
        adapter.check_versions({"aiortc": "1.17.0", "aioice": "0.13.0"})
    with pytest.raises(adapter.AiortcVersionError, match=r"aioice 1\.0\.0"):
        adapter.check_versions({"aiortc": "1.16.0", "aioice": "1.0.0"})
    adapter.check_versions()  # the installed packages are the ones it was written for


def test_rtp_packetiser_makes_single_nal_stap_a_and_fu_a_payloads() -> None:
    small = [b"\x67" + bytes(10), b"\x68" + bytes(4)]
    assert [p[0] & 0x1F for p in adapter.rtp_payloads(small)] == [24], "small NAL units aggregate into STAP-A"
    big = adapter.rtp_payloads([b"\x65" + bytes(5000)])
    assert len(big) > 3 and all(p[0] & 0x1F == 28 for p in big), "a large NAL unit is cut into FU-A"
    assert big[0][1] & 0x80 and big[-1][1] & 0x40, "FU-A start and end bits"
    assert adapter.rtp_payloads([b"\x41" + bytes(600)])[0][0] & 0x1F == 1, "one mid-size NAL unit goes alone"


def test_the_sender_loop_still_calls_the_hooked_methods() -> None:
    # the hooks replace methods on the instance; they only work while aiortc's loops call them through self
    run_rtp = inspect.getsource(RTCRtpSender._run_rtp)
    assert "await self._next_encoded_frame(codec)" in run_rtp
    assert inspect.signature(RTCRtpSender._next_encoded_frame).parameters.keys() == {"self", "codec"}
    assert "self._send_keyframe()" in inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert list(inspect.signature(aioice.ice.get_host_addresses).parameters) == ["use_ipv4", "use_ipv6"]


def test_the_connect_task_is_still_started_unawaited_and_contained() -> None:
    # contain_connect_failures wraps the name-mangled method that both description setters start as a task
    for setter in (RTCPeerConnection.setRemoteDescription, RTCPeerConnection.setLocalDescription):
        assert "asyncio.ensure_future(self.__connect())" in inspect.getsource(setter)
    assert inspect.iscoroutinefunction(RTCPeerConnection._RTCPeerConnection__connect)
    adapter.contain_connect_failures()
    adapter.contain_connect_failures()  # idempotent: wrapped once
    wrapped = RTCPeerConnection._RTCPeerConnection__connect
    assert wrapped.__qualname__.startswith("contain_connect_failures")
    assert "original(pc)" in inspect.getsource(wrapped) and "original" in wrapped.__code__.co_freevars
    inner = wrapped.__closure__[wrapped.__code__.co_freevars.index("original")].cell_contents
    assert not inner.__qualname__.startswith("contain_connect_failures")


class _NoTrack(MediaStreamTrack):
    kind = "video"

    async def recv(self) -> Any:
        raise MediaStreamError("frames come from the hook")


async def test_every_hook_works_on_a_real_loopback_call() -> None:
    register_playout_delay()
    adapter.allow_loopback_candidates()
    assert "127.0.0.1" in aioice.ice.get_host_addresses(True, False)

    units = [with_facts(Packet(data=data)) for data, _, _ in encode_packets(30, gop=30)]
    sent_stamps: list[int] = []
    keyframe_requests: list[float] = []
    rtcp: list[Any] = []
    delivered: list[tuple[Any, Any]] = []
    frames = itertools.cycle(units)
    stamp = itertools.count(0, 3000)

    origins: set[int] = set()

    async def next_frame() -> tuple[list[bytes], int]:
        # as the viewer feed does: once the previous frame is out, the sender's last RTP timestamp is its random
        # origin plus our previous timestamp
        last = adapter.last_rtp_timestamp(sender)
        if sent_stamps and last is not None:
            origins.add((last - sent_stamps[-1]) & 0xFFFFFFFF)
        await asyncio.sleep(1 / 30)
        unit, ts = next(frames), next(stamp)
        sent_stamps.append(ts)
        return adapter.rtp_payloads(decodable_nals(unit, None)), ts

    server = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    viewer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        incoming = viewer.addTransceiver("video", direction="recvonly")
        adapter.tap_receiver(incoming.receiver, lambda codec, frame: delivered.append((codec, frame)))
        await viewer.setLocalDescription(await viewer.createOffer())

        outgoing = server.addTransceiver(_NoTrack(), direction="sendonly")
        outgoing.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                      if c.mimeType.lower() in ("video/h264", "video/rtx")])
        sender = outgoing.sender
        header_map = PlayoutDelayMap(0, 100)
        adapter.set_header_extensions_map(sender, header_map)
        adapter.hook_sender(sender, next_frame=next_frame, on_rtcp=rtcp.append,
                            on_keyframe_request=lambda: keyframe_requests.append(time.monotonic()))
        assert isinstance(adapter.sender_ssrc(sender), int)
        await server.setRemoteDescription(viewer.localDescription)
        assert adapter.offer_direction(outgoing) == "sendonly", "a recvonly offer reads as ours to send"
        await server.setLocalDescription(await server.createAnswer())
        answer = server.localDescription.sdp
        assert PLAYOUT_DELAY_URI in answer, "the playout-delay extension was not negotiated"
        assert " 127.0.0.1 " in answer, "no loopback host candidate"
        await viewer.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

        def settled() -> bool:
            return len(delivered) >= 20 and adapter.round_trip_time(sender) is not None \
                and any(isinstance(p, RtcpRrPacket) for p in rtcp)

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not settled():  # noqa: ASYNC110  (polls aiortc's own state)
            await asyncio.sleep(0.1)
        assert len(delivered) >= 20, "the tapped receiver got no encoded frames from the hooked sender"
        codec, frame = delivered[0]
        assert codec.name == "H264" and NAL_IDR in nal_types(bytes(frame.data)), "not Annex-B H.264 from the tap"
        assert header_map.playout_id is not None, "the header-extension writer was never configured"
        assert any(isinstance(p, RtcpRrPacket) for p in rtcp), "no receiver report reached on_rtcp"
        rtt = adapter.round_trip_time(sender)
        assert rtt is not None and 0 <= rtt < 1, rtt
        assert len(origins) == 1, f"the sender's last RTP timestamp does not track ours plus one origin: {origins}"

        ssrc = next(iter(incoming.receiver.getSynchronizationSources())).source
        before = len(keyframe_requests)
        await adapter.send_pli(incoming.receiver, ssrc)
        for _ in range(50):
            if len(keyframe_requests) > before:
                break
            await asyncio.sleep(0.05)
        assert len(keyframe_requests) > before, "a PLI from the receiver never reached on_keyframe_request"
    finally:
        await viewer.close()
        await server.close()


def test_only_the_adapter_reaches_into_aiortc_internals() -> None:
    """No flowgraph module but the adapter names a private aiortc/aioice attribute or patches their modules."""
    import ast
    import re
    from pathlib import Path

    import aiortc

    private: set[str] = set()
    for lib in (Path(aiortc.__file__).parent, Path(aioice.__file__).parent):
        for source in lib.rglob("*.py"):
            text = source.read_text()
            private |= set(re.findall(r"def (_[a-zA-Z]\w*)", text))
            private |= set(re.findall(r"self\.(_[a-zA-Z]\w*)\s*[:=]", text))
    root = Path(adapter.__file__).parents[2]
    found = []
    for module in root.rglob("*.py"):
        if module == Path(adapter.__file__):
            continue
        tree = ast.parse(module.read_text())
        own = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
               and n.value.id == "self"}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in private - own and not (
                    isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"{module.relative_to(root)}:{node.lineno} .{node.attr}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and re.fullmatch(r"_RTC\w+__\w+", node.value):
                found.append(f"{module.relative_to(root)}:{node.lineno} {node.value}")
            elif isinstance(node, ast.Assign) and any(ast.unparse(t).startswith(("aiortc.", "aioice."))
                                                      for t in node.targets):
                found.append(f"{module.relative_to(root)}:{node.lineno} patches {ast.unparse(node.targets[0])}")
    assert not found, f"aiortc internals used outside {adapter.__name__}: {found}"
