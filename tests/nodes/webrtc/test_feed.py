"""Viewer feed, fan-out and GOP cache, H.264 helpers, playout-delay writer — without a network."""

from __future__ import annotations

import asyncio
import itertools
from fractions import Fraction

from aiortc import rtp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

from flowgraph.nodes.webrtc.fanout import StreamFanout
from flowgraph.nodes.webrtc.feed import ViewerFeed
from flowgraph.nodes.webrtc.h264 import NAL_PPS, NAL_SPS, is_keyframe, nal_types, parameter_sets, with_parameter_sets
from flowgraph.nodes.webrtc.hdrext import PLAYOUT_DELAY_URI, PlayoutDelayMap, playout_delay_bytes

from .conftest import encode_packets

TB = Fraction(1, 30)


def fanout_with(packets: list[tuple[bytes, bool, int]], **kwargs: int) -> StreamFanout:
    fan = StreamFanout("cam", **kwargs)
    for data, key, pts in packets:
        fan.push_packet(data, keyframe=key, pts=pts, time_base=TB, frame_id=pts)
    return fan


def test_h264_helpers_find_keyframes_and_parameter_sets() -> None:
    packets = list(encode_packets(3, gop=30))
    key, _, _ = packets[0]
    assert is_keyframe(key) and not is_keyframe(packets[1][0])
    config = parameter_sets(key)
    assert config is not None and nal_types(config) == [NAL_SPS, NAL_PPS]
    bare = b"".join(b"\x00\x00\x00\x01" + n for n in [bytes([0x65, 1, 2, 3])])
    assert nal_types(with_parameter_sets(bare, config))[:2] == [NAL_SPS, NAL_PPS]
    assert with_parameter_sets(key, config) == key


async def test_gop_cache_burst_has_compressed_then_real_timestamps() -> None:
    packets = list(encode_packets(40, gop=30))  # keyframes at 0 and 30
    fan = fanout_with(packets[:35])
    assert len(fan.gop) == 5 and fan.gop[0].keyframe
    feed = ViewerFeed()
    assert fan.attach(feed) == 5
    for data, key, pts in packets[35:37]:
        fan.push_packet(data, keyframe=key, pts=pts, time_base=TB, frame_id=pts)
    got = [await feed.next_frame() for _ in range(7)]
    frames = [f for f, _, _ in got]
    stamps = [ts for _, ts, _ in got]
    bursts = [b for _, _, b in got]
    assert frames[0].keyframe and [f.frame_id for f in frames] == list(range(30, 37))
    assert bursts == [True] * 5 + [False] * 2
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    assert steps[:4] == [90] * 4, "cached frames are 1 ms apart"
    assert steps[4:] == [3000, 3000], "live frames keep the source's 1/30 s spacing"
    assert feed.stats()["burst_frames"] == 5


async def test_feed_waits_for_keyframe_and_overflow_skips_to_next_keyframe() -> None:
    packets = list(encode_packets(70, gop=30))
    wanted: list[str] = []
    feed = ViewerFeed(limit=10, on_keyframe_needed=wanted.append)
    fan = StreamFanout("cam")
    fan.attach(feed, gop=False)
    for data, key, pts in packets[5:]:  # joins mid-GOP, nobody reads
        fan.push_packet(data, keyframe=key, pts=pts, time_base=TB, frame_id=pts)
    assert feed.frames_dropped > 0 and feed.overflows >= 1
    assert wanted == ["overflow"] * len(wanted) and wanted
    assert feed.depth <= 10
    first, _, _ = await feed.next_frame()
    assert first.keyframe, "after an overflow the feed restarts at a keyframe"


async def test_closed_feed_ends_the_sender_loop() -> None:
    feed = ViewerFeed()
    waiter = asyncio.ensure_future(feed.next_frame())
    await asyncio.sleep(0)
    feed.close()
    try:
        await waiter
    except ConnectionError:
        pass
    else:
        raise AssertionError("a closed feed must raise ConnectionError")


def test_gop_cache_is_bounded() -> None:
    fan = fanout_with(list(encode_packets(40, gop=60)), gop_frames=10)
    assert fan.gop == [] and fan.gop_overflows == 1


def test_playout_delay_extension_is_written() -> None:
    assert playout_delay_bytes(0, 100) == bytes((0, 0, 10))
    header_map = PlayoutDelayMap(0, 100)
    params = RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        RTCRtpHeaderExtensionParameters(id=9, uri=PLAYOUT_DELAY_URI)])
    header_map.configure(params)
    packet = rtp.RtpPacket(payload_type=102, sequence_number=1, timestamp=3000)
    packet.extensions.mid = "0"
    elements = extensions_of(packet.serialize(header_map))
    assert elements[9] == bytes((0, 0, 10)) and elements[1] == b"0"
    header_map.active = False
    assert 9 not in extensions_of(packet.serialize(header_map))


def extensions_of(data: bytes) -> dict[int, bytes]:
    assert data[0] & 0x10, "no header extension"
    profile = int.from_bytes(data[12:14], "big")
    words = int.from_bytes(data[14:16], "big")
    return dict(rtp.unpack_header_extensions(profile, data[16:16 + 4 * words]))
