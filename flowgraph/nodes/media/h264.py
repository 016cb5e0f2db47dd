"""H.264 bitstream helpers, the one toolkit of flowgraph: Annex-B NAL units, AVCC conversion, SPS dimensions,
the parameter-set cache of ingest, and the facts a :class:`~flowgraph.messages.Packet` carries.

Pure Python and dependency-free: every source (RTMP's FLV tags, WHIP's RTP frames, PyAV demuxers) hands its access
units through :class:`ParamSets` so that every keyframe leaving ingest is self-contained (SPS/PPS in front of the
IDR) and every packet carries the parameter sets in force (``Packet.config``) for late joiners. The NAL-unit spans,
the keyframe flag and whether SPS/PPS are present are found once, where the packet is made, and travel on the
packet (:func:`facts`), so no consumer parses the same bytes again.

Input without a start code is not Annex-B: :func:`split_nals` finds no NAL unit in it (it is never taken as one
bare NAL unit — a length-prefixed AVCC buffer would otherwise pass as NAL type 0 garbage). Sources count such
access units as corrupt.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from flowgraph.messages import Packet

START_CODE = b"\x00\x00\x00\x01"

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

#: ``(offset, length)`` of each NAL unit in an Annex-B buffer, start codes excluded.
Spans = tuple[tuple[int, int], ...]


def is_annexb(data: bytes) -> bool:
    """Whether ``data`` starts with an Annex-B start code."""
    return data[:3] == b"\x00\x00\x01" or data[:4] == START_CODE


def nal_spans(data: bytes) -> Spans:
    """Where the NAL units of an Annex-B buffer lie (trailing zero bytes stripped); empty without a start code."""
    spans: list[tuple[int, int]] = []
    find = data.find
    start = find(b"\x00\x00\x01")
    if start < 0:
        return ()
    start += 3
    while True:
        nxt = find(b"\x00\x00\x01", start)
        if nxt < 0:
            if start < len(data):
                spans.append((start, len(data) - start))
            return tuple(spans)
        end = nxt
        while end > start and data[end - 1] == 0:  # the zero of a 4-byte start code, or trailing_zero_8bits
            end -= 1
        if end > start:
            spans.append((start, end - start))
        start = nxt + 3


def split_nals(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B buffer, without start codes; none when ``data`` has no start code."""
    return [data[offset:offset + length] for offset, length in nal_spans(data)]


def nal_types(data: bytes) -> list[int]:
    """NAL unit types present in an Annex-B buffer, in order."""
    return [data[offset] & 0x1F for offset, _ in nal_spans(data)]


def join_nals(nals: list[bytes]) -> bytes:
    """An Annex-B buffer from NAL units (4-byte start codes)."""
    return b"".join(START_CODE + nal for nal in nals)


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F if nal else 0


def avcc_to_nals(data: bytes, length_size: int = 4) -> list[bytes]:
    """Split a length-prefixed (AVCC/FLV/MP4) access unit into NAL units; raises ValueError when malformed."""
    nals: list[bytes] = []
    pos, size = 0, len(data)
    while pos + length_size <= size:
        n = int.from_bytes(data[pos:pos + length_size], "big")
        pos += length_size
        if n == 0:
            continue
        if pos + n > size:
            raise ValueError(f"AVCC NAL length {n} runs past the end of a {size}-byte packet")
        nals.append(data[pos:pos + n])
        pos += n
    return nals


@dataclass
class AvcConfig:
    """An AVCDecoderConfigurationRecord (``avcC``, FLV sequence header, MP4 extradata)."""

    sps: list[bytes]
    pps: list[bytes]
    length_size: int = 4

    def annexb(self) -> bytes:
        return join_nals(self.sps + self.pps)


def parse_avcc_config(record: bytes) -> AvcConfig:
    """Parse an AVCDecoderConfigurationRecord; raises ValueError when it is not one."""
    if len(record) < 7 or record[0] != 1:
        raise ValueError("not an AVCDecoderConfigurationRecord (version byte is not 1)")
    length_size = (record[4] & 0x03) + 1
    pos = 5
    sets: list[list[bytes]] = []
    for count_mask in (0x1F, 0xFF):
        if pos >= len(record):
            raise ValueError("truncated AVCDecoderConfigurationRecord")
        count = record[pos] & count_mask
        pos += 1
        found = []
        for _ in range(count):
            n = int.from_bytes(record[pos:pos + 2], "big")
            pos += 2
            if pos + n > len(record):
                raise ValueError("truncated parameter set in AVCDecoderConfigurationRecord")
            found.append(record[pos:pos + n])
            pos += n
        sets.append(found)
    return AvcConfig(sps=sets[0], pps=sets[1], length_size=length_size)


def avcc_record(sps: bytes, pps: bytes) -> bytes:
    """Build an AVCDecoderConfigurationRecord from one SPS and one PPS (4-byte lengths)."""
    return (bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps
            + b"\x01" + len(pps).to_bytes(2, "big") + pps)


class _Bits:
    """An RBSP bit reader (emulation-prevention bytes removed) with Exp-Golomb codes."""

    def __init__(self, nal: bytes) -> None:
        self.data = nal.replace(b"\x00\x00\x03", b"\x00\x00")
        self.pos = 0

    def bit(self) -> int:
        byte = self.data[self.pos >> 3]  # IndexError on truncated input, turned into ValueError by the caller
        value = (byte >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


@dataclass
class SpsInfo:
    profile_idc: int
    level_idc: int
    width: int
    height: int


def parse_sps(nal: bytes) -> SpsInfo:
    """Profile, level and cropped picture size from an SPS NAL unit (header byte included)."""
    try:
        return _parse_sps(nal)
    except IndexError as exc:
        raise ValueError("truncated SPS") from exc


def _parse_sps(nal: bytes) -> SpsInfo:
    if nal_type(nal) != NAL_SPS:
        raise ValueError(f"NAL type {nal_type(nal)} is not an SPS")
    r = _Bits(nal[1:])
    profile = r.bits(8)
    r.bits(8)  # constraint flags
    level = r.bits(8)
    r.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in _HIGH_PROFILES:
        chroma_format = r.ue()
        if chroma_format == 3:
            r.bit()  # separate_colour_plane_flag
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.bit()  # qpprime_y_zero_transform_bypass_flag
        if r.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if r.bit():
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.bit()
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.bit()
    if not frame_mbs_only:
        r.bit()  # mb_adaptive_frame_field_flag
    r.bit()  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_units * 16
    if r.bit():  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        sub_w, sub_h = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}.get(chroma_format, (2, 2))
        width -= sub_w * (left + right)
        height -= sub_h * (2 - frame_mbs_only) * (top + bottom)
    return SpsInfo(profile_idc=profile, level_idc=level, width=width, height=height)


def _skip_scaling_list(r: _Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + r.se() + 256) % 256
        last = nxt if nxt != 0 else last


class ParamSets:
    """The SPS/PPS in force for one stream, learnt from the stream itself or from container extradata."""

    def __init__(self) -> None:
        self.sps: bytes | None = None
        self.pps: bytes | None = None
        self.info: SpsInfo | None = None
        self._config: bytes | None = None

    @property
    def config(self) -> bytes | None:
        """SPS + PPS as Annex-B, or None until both are known."""
        return self._config

    def learn(self, nals: list[bytes]) -> bool:
        """Remember the parameter sets among ``nals``; True when they changed."""
        changed = False
        for nal in nals:
            kind = nal_type(nal)
            if kind == NAL_SPS and nal != self.sps:
                self.sps = nal
                changed = True
                try:
                    self.info = parse_sps(nal)
                except ValueError:
                    self.info = None
            elif kind == NAL_PPS and nal != self.pps:
                self.pps = nal
                changed = True
        if changed and self.sps is not None and self.pps is not None:
            self._config = join_nals([self.sps, self.pps])
        return changed

    def complete(self, nals: list[bytes]) -> tuple[list[bytes], bool]:
        """Learn from one access unit; return it with SPS/PPS put in front of an IDR lacking them, and whether
        it is a keyframe (contains an IDR slice)."""
        self.learn(nals)
        kinds = [nal_type(n) for n in nals]
        keyframe = NAL_IDR in kinds
        if keyframe and self.sps is not None and self.pps is not None and (
                NAL_SPS not in kinds or NAL_PPS not in kinds):
            head = [n for n in nals if nal_type(n) == NAL_AUD]
            rest = [n for n in nals if nal_type(n) not in (NAL_AUD, NAL_SPS, NAL_PPS)]
            nals = [*head, self.sps, self.pps, *rest]
        return nals, keyframe


# -- facts carried on a Packet -------------------------------------------------------------------------------------
def join_with_spans(nals: list[bytes]) -> tuple[bytes, Spans]:
    """:func:`join_nals` and where each NAL unit landed (after its 4-byte start code)."""
    spans: list[tuple[int, int]] = []
    offset = 0
    for nal in nals:
        offset += 4
        spans.append((offset, len(nal)))
        offset += len(nal)
    return join_nals(nals), tuple(spans)


def facts(data: bytes, spans: Spans) -> tuple[bool, bool]:
    """``(keyframe, parameter_sets)`` of an access unit: it has an IDR slice; it carries both SPS and PPS."""
    kinds = {data[offset] & 0x1F for offset, _ in spans}
    return NAL_IDR in kinds, NAL_SPS in kinds and NAL_PPS in kinds


def with_facts(packet: Packet) -> Packet:
    """``packet`` itself when its producer recorded its NAL units (every ingest source does); otherwise a copy with
    ``nal_units``, ``keyframe`` and ``parameter_sets`` found from its bytes (e.g. a hand-made test packet)."""
    if packet.nal_units is not None:
        return packet
    spans = nal_spans(packet.data)
    keyframe, parameter_sets = facts(packet.data, spans)
    return replace(packet, nal_units=spans, keyframe=keyframe, parameter_sets=parameter_sets)


def packet_nals(packet: Packet, *, skip: tuple[int, ...] = ()) -> list[bytes]:
    """The NAL units of a packet (from its recorded spans, parsed when it has none), leaving out types in ``skip``."""
    data = packet.data
    spans = packet.nal_units if packet.nal_units is not None else nal_spans(data)
    return [data[offset:offset + length] for offset, length in spans if data[offset] & 0x1F not in skip]


def own_parameter_sets(packet: Packet) -> bytes | None:
    """The SPS and PPS found in the packet's own bytes, as Annex-B; None when it carries neither."""
    found = [nal for nal in packet_nals(packet) if nal_type(nal) in (NAL_SPS, NAL_PPS)]
    return join_nals(found) if found else None


def decodable_nals(packet: Packet, config: bytes | None) -> list[bytes]:
    """The NAL units to send for a packet: access-unit delimiters left out (receivers need none, each costs an
    RTP packet), and ``config`` put in front of a keyframe that does not carry its own SPS/PPS."""
    nals = packet_nals(packet, skip=(NAL_AUD,))
    if packet.keyframe and not packet.parameter_sets and config:
        nals = split_nals(config) + nals
    return nals


def profile_level_id(config: bytes | None) -> str | None:
    """``profile-level-id`` (6 hex digits) from the SPS in ``config``, for logs and stats."""
    for nal in split_nals(config or b""):
        if nal_type(nal) == NAL_SPS and len(nal) >= 4:
            return nal[1:4].hex()
    return None
