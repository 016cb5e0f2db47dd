"""Viewer feed, fan-out and GOP cache, H.264 helpers, playout-delay writer — without a network."""

from __future__ import annotations

import asyncio
import itertools
from fractions import Fraction

from aiortc import rtp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

from flowgraph.messages import Packet
from flowgraph.nodes.media.h264 import NAL_IDR, NAL_PPS, NAL_SPS, decodable_nals, nal_type, with_facts
from flowgraph.nodes.webrtc.fanout import StreamFanout
from flowgraph.nodes.webrtc.feed import ViewerFeed
from flowgraph.nodes.webrtc.hdrext import PLAYOUT_DELAY_URI, PlayoutDelayMap, playout_delay_bytes

from .conftest import encode_packets

TB = Fraction(1, 30)


def packet(data: bytes, pts: int, seq: int | None = None) -> Packet:
    """A packet as a producer without H.264 facts makes it; the fan-out gets it with facts, as the hub hands it."""
    return with_facts(Packet(stream_id="cam", data=data, pts=pts, time_base=TB, frame_id=pts, seq=seq))


def fanout_with(packets: list[tuple[bytes, bool, int]], **kwargs: int) -> StreamFanout:
    fan = StreamFanout("cam", **kwargs)
    for data, _, pts in packets:
        fan.push_packet(packet(data, pts))
    return fan


def test_facts_of_a_bare_packet_and_keyframes_completed_from_config() -> None:
    packets = list(encode_packets(3, gop=30))
    key = packet(packets[0][0], 0)
    assert key.keyframe and key.parameter_sets and key.nal_units
    p_frame = packet(packets[1][0], 1)
    assert not p_frame.keyframe and not p_frame.parameter_sets
    config = b"\x00\x00\x00\x01\x67\x42\xe0\x1f\x00\x00\x00\x01\x68\xce"
    bare = packet(b"\x00\x00\x00\x01" + bytes([0x65, 1, 2, 3]), 2)
    assert bare.keyframe and not bare.parameter_sets
    assert [nal_type(n) for n in decodable_nals(bare, config)] == [NAL_SPS, NAL_PPS, NAL_IDR]
    assert [nal_type(n) for n in decodable_nals(key, config)].count(NAL_SPS) == 1, "no second SPS"


async def test_gop_cache_burst_has_compressed_then_real_timestamps() -> None:
    packets = list(encode_packets(40, gop=30))  # keyframes at 0 and 30
    fan = fanout_with(packets[:35])
    assert len(fan.gop) == 5 and fan.gop[0].keyframe
    feed = ViewerFeed()
    assert fan.attach(feed) == 5
    for data, _, pts in packets[35:37]:
        fan.push_packet(packet(data, pts))
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
    for data, _, pts in packets[5:]:  # joins mid-GOP, nobody reads
        fan.push_packet(packet(data, pts))
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


async def test_a_seq_gap_holds_every_viewer_until_the_next_keyframe_and_asks_for_one() -> None:
    packets = list(encode_packets(70, gop=30))  # keyframes at 0, 30, 60
    lost: list[str] = []
    fan = StreamFanout("cam", on_lost=lost.append)
    feed = ViewerFeed()
    fan.attach(feed, gop=False)
    for seq, (data, _, pts) in enumerate(packets[:40]):
        if seq not in (12, 13):  # two packets dropped on the way
            fan.push_packet(packet(data, pts, seq=seq))
    assert lost == ["src"] and fan.gaps == 1 and fan.packets_lost == 2
    assert not fan.holding and fan.gop[0].frame_id == 30, "the cache restarts at the keyframe after the gap"
    assert fan.frames_held == 30 - 14
    sent = [feed._queue[i][0].frame_id for i in range(feed.depth)]
    assert sent == list(range(12)) + list(range(30, 40)), "no frame between the gap and the next keyframe"
    assert feed.frames_dropped == 0, "the feed never saw a frame it could not decode"


def test_a_gap_right_before_a_keyframe_holds_nothing() -> None:
    packets = list(encode_packets(35, gop=30))
    lost: list[str] = []
    fan = StreamFanout("cam", on_lost=lost.append)
    for seq, (data, _, pts) in enumerate(packets):
        if seq != 29:
            fan.push_packet(packet(data, pts, seq=seq))
    assert fan.gaps == 1 and not lost and not fan.holding and fan.frames == 34


def test_a_loss_the_ipc_reports_and_an_unusable_packet_hold_too() -> None:
    packets = list(encode_packets(8, gop=30))
    lost: list[str] = []
    fan = StreamFanout("cam", on_lost=lost.append)
    fan.push_packet(packet(packets[0][0], 0))
    fan.push_packet(packet(packets[1][0], 1), lost_before=True)  # no seq: the worker pipe said so
    assert fan.holding and lost == ["src"] and fan.frames == 1
    fan = StreamFanout("cam", on_lost=lost.append)
    fan.push_packet(packet(packets[0][0], 0, seq=0))
    fan.push_packet(packet(b"\x41\x9a\x00\x10", 1, seq=1))  # no start code: not Annex-B
    fan.push_packet(packet(packets[2][0], 2, seq=2))
    assert fan.unusable == 1 and fan.holding and fan.frames == 1 and fan.gaps == 1
