"""H.264 Annex-B helpers: NAL unit types, parameter sets, and RTP payloads built once per access unit.

Everything here is pure Python on ``bytes`` so a packet is split and packetised once per stream, not once per
viewer (aiortc's own ``H264Encoder.pack`` would redo it for every sender).
"""

from __future__ import annotations

from collections.abc import Iterator

NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9


def split_nals(buf: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex-B buffer, without their start codes."""
    i = buf.find(b"\x00\x00\x01")
    while i != -1:
        start = i + 3
        nxt = buf.find(b"\x00\x00\x01", start)
        if nxt == -1:
            yield buf[start:]
            return
        end = nxt - 1 if buf[nxt - 1] == 0 else nxt
        # trailing zero bytes before a 4-byte start code belong to no NAL
        while end > start and buf[end - 1] == 0:
            end -= 1
        yield buf[start:end]
        i = nxt


def nal_types(buf: bytes) -> list[int]:
    """NAL unit types present in an Annex-B buffer, in order."""
    return [nal[0] & 0x1F for nal in split_nals(buf) if nal]


def is_keyframe(buf: bytes) -> bool:
    return NAL_IDR in nal_types(buf)


def parameter_sets(buf: bytes) -> bytes | None:
    """SPS and PPS of ``buf`` as Annex-B, or None when it carries neither."""
    found = [nal for nal in split_nals(buf) if nal and nal[0] & 0x1F in (NAL_SPS, NAL_PPS)]
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in found) if found else None


def with_parameter_sets(buf: bytes, config: bytes | None) -> bytes:
    """A keyframe that a fresh decoder can start from: prepend ``config`` when SPS/PPS are missing."""
    if not config:
        return buf
    types = nal_types(buf)
    if NAL_SPS in types and NAL_PPS in types:
        return buf
    return config + buf


def profile_level_id(config: bytes | None) -> str | None:
    """``profile-level-id`` (6 hex digits) from the SPS in ``config``, for logs and stats."""
    if not config:
        return None
    for nal in split_nals(config):
        if nal and nal[0] & 0x1F == NAL_SPS and len(nal) >= 4:
            return nal[1:4].hex()
    return None


def rtp_payloads(buf: bytes) -> list[bytes]:
    """RTP payloads (packetization-mode 1: single NAL, STAP-A, FU-A) for one access unit.

    Access-unit delimiters are dropped: WebRTC receivers do not need them and they cost a packet each.
    """
    from aiortc.codecs.h264 import H264Encoder

    nals = [nal for nal in split_nals(buf) if nal and nal[0] & 0x1F != NAL_AUD]
    return H264Encoder._packetize(nals)
