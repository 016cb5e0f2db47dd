"""The viewer-worker pipe carries a Packet whole: every field, both ways, through one encode/decode pair."""

from __future__ import annotations

import asyncio
import dataclasses
from fractions import Fraction

import pytest

from flowgraph.messages import Packet
from flowgraph.nodes.media.h264 import with_facts
from flowgraph.nodes.webrtc import ipc

from .conftest import encode_packets


def sample() -> Packet:
    data, _, _ = next(encode_packets(1))
    return with_facts(Packet(stream_id="cam", frame_id=41, pts=123, time_base=Fraction(1, 90_000), t_capture=1.5,
                             data=data, dts=120, duration=3000, width=320, height=180, seq=41,
                             config=b"\x00\x00\x00\x01\x67\x42\x00\x00\x00\x01\x68\xce"))


async def round_trip(message: bytes) -> tuple[dict[str, object], bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(message)
    reader.feed_eof()
    return await ipc.read(reader)


async def test_every_packet_field_survives_the_pipe() -> None:
    packet = sample()
    assert packet.nal_units and packet.keyframe and packet.parameter_sets
    header, body = await round_trip(ipc.encode_packet(ipc.PacketDelivery(packet, "360p", lost_before=True)))
    delivery = ipc.decode_packet(header, body)
    assert delivery.rendition == "360p" and delivery.lost_before
    for field in dataclasses.fields(Packet):
        assert getattr(delivery.packet, field.name) == getattr(packet, field.name), field.name
    assert all(len(key) > 1 for key in header), "named fields, not one-letter keys"


async def test_a_packet_without_config_or_seq_crosses_too() -> None:
    packet = Packet(stream_id="x", data=b"\x00\x00\x01\x41\x9a", seq=None, config=None, time_base=None)
    delivery = ipc.decode_packet(*await round_trip(ipc.encode_packet(ipc.PacketDelivery(packet))))
    assert delivery.packet.config is None and delivery.packet.seq is None and delivery.packet.data == packet.data
    assert not delivery.lost_before and delivery.rendition == "src"


def test_a_field_the_pipe_cannot_carry_fails_loudly() -> None:
    packet = sample()
    packet.pts = object()  # type: ignore[assignment]
    with pytest.raises(TypeError, match=r"Packet\.pts"):
        ipc.encode_packet(ipc.PacketDelivery(packet))
