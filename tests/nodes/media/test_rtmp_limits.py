"""RTMP before the stream key is checked: one deadline for the whole connect → publish exchange, caps on chunk
streams and buffered bytes, AMF0 nesting, no log flood. Real sockets, raw bytes."""

from __future__ import annotations

import logging
import time

import pytest

from flowgraph.nodes.media import rtmp_server
from flowgraph.nodes.media.rtmp_proto import COMMAND_AMF0, encode_chunks
from flowgraph.testing import running

from .helpers import ingest_graph, wait_for
from .rtmp_client import RawPublisher

KEY = "a-long-stream-key"


def graph(port: int, **params: object) -> str:
    return ingest_graph({"url": f"rtmp://127.0.0.1:{port}/live/{KEY}", "stream_id": "cam", **params},
                        on_error="skip_message")


async def test_trickling_bytes_do_not_keep_a_pre_publish_connection(free_port: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """On main the timeout was per read: a byte every few seconds kept the connection for ever."""
    monkeypatch.setattr(rtmp_server, "PRE_PUBLISH_S", 2.0)
    async with running(graph(free_port)) as rt:
        client = await RawPublisher.open(free_port)
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 8 and not closed:
            client.writer.write(b"\x03")  # never a whole chunk
            await client.writer.drain()
            closed = await client.closed(0.5)
        assert closed and time.monotonic() - started < 6
        assert rt.snapshot()["nodes"]["src"]["counters"]["rejected"] == 1


@pytest.mark.parametrize("payload", [
    # 65 chunk streams, each holding a partial message
    b"".join(bytes([0x00, i]) + (0).to_bytes(3, "big") + (1000).to_bytes(3, "big") + bytes([COMMAND_AMF0])
             + (0).to_bytes(4, "little") + b"x" * 128 for i in range(70)),
    # one command claiming 1 MiB before any key was checked
    bytes([0x03]) + (0).to_bytes(3, "big") + (1 << 20).to_bytes(3, "big") + bytes([COMMAND_AMF0]) + bytes(4),
    # AMF0 nested 3,000 deep (on main: a RecursionError, ≈ 146 KB of traceback per 12 KB sent)
    encode_chunks(3, COMMAND_AMF0, 0, b"\x02\x00\x07connect" + b"\x0a\x00\x00\x00\x01" * 3000 + b"\x05", 128),
])
async def test_hostile_bytes_before_publish_close_the_connection_quietly(
        free_port: int, payload: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(graph(free_port)) as rt:
        client = await RawPublisher.open(free_port)
        client.writer.write(payload)
        await client.writer.drain()
        assert await client.closed(10)
        # the log says what happened in one line, no traceback
        shown = [r for r in caplog.records if r.levelno >= logging.INFO]
        text = "\n".join(r.getMessage() for r in shown)
        assert "protocol error" in text and len(text) < 4000
        assert all(r.exc_info is None for r in shown), "a traceback was logged"
        # a valid publisher is still served
        good = await RawPublisher.open(free_port)
        assert await good.publish("live", KEY) == "NetStream.Publish.Start"
        assert await wait_for(lambda: rt.snapshot()["nodes"]["src"]["counters"]["publishers"] == 1, 10)
        good.close()
