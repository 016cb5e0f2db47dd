"""H.264 bitstream helpers, checked against real libx264 output."""

from __future__ import annotations

import numpy as np
import pytest

from flowgraph.nodes.media.encoder import EncoderConfig, H264Encoder
from flowgraph.nodes.media.h264 import (
    NAL_IDR,
    NAL_PPS,
    NAL_SPS,
    START_CODE,
    ParamSets,
    avcc_record,
    avcc_to_nals,
    is_annexb,
    join_nals,
    nal_spans,
    nal_type,
    parse_avcc_config,
    parse_sps,
    split_nals,
    with_facts,
)


def encoded(width: int, height: int, frames: int = 3, **kw: object) -> list[tuple[bytes, int, bool]]:
    enc = H264Encoder(EncoderConfig(width=width, height=height, gop=30, **kw))  # type: ignore[arg-type]
    rng = np.random.default_rng(1)
    out = []
    for i in range(frames):
        out += enc.encode(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), i * 3000)
    return out


def test_split_handles_three_and_four_byte_start_codes_and_trailing_zeros() -> None:
    data = b"\x00\x00\x00\x01\x67abc\x00\x00\x01\x68de\x00\x00\x00\x00\x01\x65xyz"
    assert split_nals(data) == [b"\x67abc", b"\x68de", b"\x65xyz"]
    assert is_annexb(data) and not is_annexb(b"\x00\x00\x00\x05\x65")
    assert split_nals(join_nals([b"\x67a", b"\x65b"])) == [b"\x67a", b"\x65b"]


def test_avcc_round_trip_and_malformed_lengths() -> None:
    nals = [b"\x67" + bytes(20), b"\x68\x01", b"\x65" + bytes(300)]
    avcc = b"".join(len(n).to_bytes(4, "big") + n for n in nals)
    assert avcc_to_nals(avcc) == nals
    two_byte = b"".join(len(n).to_bytes(2, "big") + n for n in nals)
    assert avcc_to_nals(two_byte, 2) == nals
    with pytest.raises(ValueError, match="runs past"):
        avcc_to_nals(avcc[:-10])


def test_sps_size_of_libx264_streams_including_cropped_ones() -> None:
    for width, height in ((1280, 720), (642, 362), (320, 240), (1920, 1080)):
        data, _, key = encoded(width, height, frames=1)[0]
        assert key
        sps = next(n for n in split_nals(data) if nal_type(n) == NAL_SPS)
        info = parse_sps(sps)
        assert (info.width, info.height) == (width, height)
        assert info.profile_idc in (66, 77, 100)


def test_sps_parse_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_sps(b"\x65\x00")
    with pytest.raises(ValueError):
        parse_sps(b"\x67\x64")


def test_avcc_config_record_round_trip() -> None:
    data = encoded(320, 240, frames=1)[0][0]
    nals = split_nals(data)
    sps = next(n for n in nals if nal_type(n) == NAL_SPS)
    pps = next(n for n in nals if nal_type(n) == NAL_PPS)
    config = parse_avcc_config(avcc_record(sps, pps))
    assert config.sps == [sps] and config.pps == [pps] and config.length_size == 4
    assert config.annexb() == join_nals([sps, pps])
    with pytest.raises(ValueError):
        parse_avcc_config(b"\x00\x01\x02")


def test_param_sets_make_bare_idr_self_contained() -> None:
    frames = encoded(320, 240, frames=2)
    first = split_nals(frames[0][0])
    params = ParamSets()
    out, key = params.complete(first)
    assert key and out is first  # already carries SPS/PPS: untouched
    assert params.config is not None and params.info is not None and params.info.width == 320
    bare_idr = [n for n in first if nal_type(n) == NAL_IDR]
    fixed, key = params.complete(bare_idr)
    assert key and [nal_type(n) for n in fixed][:2] == [NAL_SPS, NAL_PPS]
    p_frame = split_nals(frames[1][0])
    out, key = params.complete(p_frame)
    assert not key and out is p_frame


def test_input_without_a_start_code_is_not_annexb_and_holds_no_nal_unit() -> None:
    # the two former toolkits disagreed here: one took the whole buffer as one NAL unit, the other found none.
    # None is right: a length-prefixed AVCC unit would otherwise pass as a NAL unit of type 0 (its length's 0x00)
    avcc = (5).to_bytes(4, "big") + b"\x65\x88\x84\x00\x10"
    bare_nal = b"\x65\x88\x84\x00\x10"
    for data in (avcc, bare_nal):
        assert split_nals(data) == [] and nal_spans(data) == () and not is_annexb(data)
    from flowgraph.nodes.media.packetizer import PacketMaker

    maker = PacketMaker("cam")
    assert maker.from_annexb(avcc, pts=0) is None and maker.from_annexb(bare_nal, pts=1) is None
    assert maker.counters.corrupt == 2 and maker.counters.packets == 0
    assert maker.from_annexb(b"", pts=2) is None and maker.counters.dropped == 1
    with_start_code = maker.from_annexb(START_CODE + bare_nal, pts=3)
    assert with_start_code is not None and with_start_code.keyframe
    assert with_start_code.nal_units == ((4, len(bare_nal)),)


def test_packets_carry_nal_spans_keyframe_and_parameter_set_facts() -> None:
    from flowgraph.nodes.media.packetizer import PacketMaker

    frames = encoded(320, 240, frames=2)
    maker = PacketMaker("cam")
    key = maker.from_annexb(frames[0][0], pts=0)
    assert key is not None and key.keyframe and key.parameter_sets and key.seq == 0
    assert key.nal_units is not None
    assert [key.data[o:o + n] for o, n in key.nal_units] == split_nals(key.data)
    p_frame = maker.from_annexb(frames[1][0], pts=1)
    assert p_frame is not None and not p_frame.keyframe and not p_frame.parameter_sets and p_frame.seq == 1
    # a bare IDR is completed with SPS/PPS, and its spans describe the rewritten bytes
    idr = [n for n in split_nals(frames[0][0]) if nal_type(n) == NAL_IDR]
    completed = maker.from_avcc(b"".join(len(n).to_bytes(4, "big") + n for n in idr), pts=2)
    assert completed is not None and completed.keyframe and completed.parameter_sets
    assert completed.nal_units is not None
    kinds = [nal_type(completed.data[o:o + n]) for o, n in completed.nal_units]
    assert kinds[:2] == [NAL_SPS, NAL_PPS] and set(kinds[2:]) == {NAL_IDR}  # one IDR slice per encoder thread
    assert with_facts(completed) is completed, "facts made at ingest are never recomputed"
