"""The decoder: damaged and missing packets, late joins, resizing, pixel order — never a crash."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from flowgraph.messages import Packet
from flowgraph.nodes.media.decoder import StreamDecoder
from flowgraph.nodes.media.testsrc import TestSource, TestSrcConfig
from flowgraph.testing import collected, run_to_end

from .helpers import ingest_graph


@pytest.fixture(scope="module")
def packets() -> list[Packet]:
    """60 frames of 320x240, keyframes at 0, 20, 40."""
    source = TestSource("s", TestSrcConfig(width=320, height=240, fps=30, gop=20, people=0, count=60,
                                           realtime=False, stamp=False))
    return list(source.packets())


def decode_all(decoder: StreamDecoder, packets: list[Packet]) -> list[int]:
    ids = [f.frame_id for p in packets for f in decoder.decode(p)]
    return ids + [f.frame_id for f in decoder.flush()]


def damaged(packet: Packet, how: str) -> Packet:
    data = bytearray(packet.data)
    if how == "flip":
        for i in range(len(data) // 3, len(data) - 4, 7):
            data[i] ^= 0x5A
    elif how == "truncate":
        data = data[: len(data) // 3]
    else:
        data = bytearray(np.random.default_rng(3).integers(0, 256, len(data), dtype=np.uint8).tobytes())
    return dataclasses.replace(packet, data=bytes(data))


def test_clean_stream_decodes_every_frame(packets: list[Packet]) -> None:
    decoder = StreamDecoder()
    assert decode_all(decoder, packets) == list(range(60))
    assert decoder.counters() == {"packets": 60, "frames": 60, "corrupt": 0, "skipped": 0, "lost": 0}


@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_damaged_packet_is_counted_and_pictures_resume_at_the_next_keyframe(packets: list[Packet],
                                                                             how: str) -> None:
    stream = list(packets)
    stream[25] = damaged(stream[25], how)
    decoder = StreamDecoder(thread_type="SLICE")
    ids = decode_all(decoder, stream)
    assert decoder.corrupt >= 1 or decoder.skipped >= 1
    assert ids[:25] == list(range(25))
    assert ids[-20:] == list(range(40, 60))  # from the next keyframe on, everything again
    assert not set(ids) & set(range(27, 40))  # nothing decoded from damaged references


def test_undetectable_bit_flips_never_crash_and_heal_at_the_next_keyframe(packets: list[Packet]) -> None:
    """Flipped bits inside CABAC data are not always detected (FFmpeg may report nothing): then the pictures are
    wrong until the next keyframe, which is all any decoder can promise. What must hold: no exception, and exact
    pictures again from the next keyframe on."""
    reference = StreamDecoder(thread_type="NONE")
    clean = {f.frame_id: f.image for p in packets for f in reference.decode(p)}
    stream = list(packets)
    stream[25] = damaged(stream[25], "flip")
    decoder = StreamDecoder(thread_type="NONE")
    frames = {f.frame_id: f.image for p in stream for f in decoder.decode(p)}
    assert set(frames) <= set(range(60)) and all(np.array_equal(frames[i], clean[i]) for i in range(40, 60))
    assert all(np.array_equal(frames[i], clean[i]) for i in range(25))


def test_late_join_waits_for_a_keyframe(packets: list[Packet]) -> None:
    decoder = StreamDecoder()
    assert decode_all(decoder, packets[5:]) == list(range(20, 60))
    assert decoder.skipped == 15


def test_lost_packets_are_detected_from_the_sequence_numbers(packets: list[Packet]) -> None:
    decoder = StreamDecoder()
    ids = decode_all(decoder, packets[:30] + packets[32:])
    assert decoder.lost == 2
    assert ids == list(range(30)) + list(range(40, 60))


def test_keyframe_without_parameter_sets_uses_the_config(packets: list[Packet]) -> None:
    from flowgraph.nodes.media.h264 import NAL_PPS, NAL_SPS, join_nals, nal_type, split_nals

    bare = join_nals([n for n in split_nals(packets[0].data) if nal_type(n) not in (NAL_SPS, NAL_PPS)])
    decoder = StreamDecoder()
    ids = decode_all(decoder, [dataclasses.replace(packets[0], data=bare), *packets[1:20]])
    assert ids == list(range(20))


def test_resize_and_pixel_order(packets: list[Packet]) -> None:
    rgb = StreamDecoder(width=160).decode(packets[0])
    bgr = StreamDecoder(width=160, format="bgr24", keep_source=False).decode(packets[0])
    assert rgb[0].image.shape == (120, 160, 3) and rgb[0].source is not None
    assert bgr[0].source is None and bgr[0].format == "bgr24"
    difference = np.abs(rgb[0].image.astype(int) - bgr[0].image[..., ::-1].astype(int))
    assert difference.max() <= 4  # swscale rounds the two orders slightly differently
    tall = StreamDecoder(height=60).decode(packets[0])
    assert tall[0].image.shape == (60, 80, 3)


def test_decode_keeps_the_packet_metadata(packets: list[Packet]) -> None:
    frames = StreamDecoder(thread_type="SLICE").decode(packets[0])
    assert len(frames) == 1
    frame, packet = frames[0], packets[0]
    assert (frame.stream_id, frame.frame_id, frame.pts, frame.t_capture) == (
        packet.stream_id, packet.frame_id, packet.pts, packet.t_capture)


async def test_decode_node_counts_per_stream_and_never_fails() -> None:
    rt = await run_to_end(ingest_graph({"url": "testsrc://", "width": 160, "height": 120, "people": 0,
                                        "count": 30, "realtime": False}, decode={"width": 80}))
    frames = collected(rt, "frames")
    assert len(frames) == 30 and frames[0].image.shape == (60, 80, 3)
    counters = rt.snapshot()["nodes"]["dec"]["counters"]
    assert counters["frames"] == 30 and counters["corrupt"] == 0
    await asyncio.sleep(0.05)  # the registry is updated on the loop
    report = rt.scope.streams.get("default")["decode"]
    assert report["frames"] == 30 and report["size"] == "160x120" and report["node"] == "dec"
