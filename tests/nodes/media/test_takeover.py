"""A second publisher on a live stream key: refused by default (``takeover: refuse``), or it replaces the first
(``takeover: replace``); under ``refuse`` a publisher that has sent nothing for STALE_PUBLISHER_S is presumed gone
and may be replaced (a reconnect from a dead connection). Real ffmpeg publishers over RTMP, real aiortc publishers
over WHIP (ffmpeg 5.1 has no WHIP muxer)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from flowgraph.messages import StreamEnd
from flowgraph.nodes.media.ingest import Ingest
from flowgraph.nodes.media.source import STALE_PUBLISHER_S
from flowgraph.testing import collected, running

from .helpers import Processes, ingest_graph, wait_for
from .test_whip import Publisher


def packets_of(rt: Any, stream_id: str) -> int:
    return sum(1 for m in collected(rt, "packets") if m.stream_id == stream_id and not isinstance(m, StreamEnd))


def counters(rt: Any) -> dict[str, Any]:
    return dict(rt.snapshot()["nodes"]["src"]["counters"])


def test_the_default_is_refuse() -> None:
    assert Ingest.Params().takeover == "refuse"


@pytest.mark.parametrize("takeover", [None, "replace"])
async def test_second_ffmpeg_on_a_single_stream_rtmp_key(procs: Processes, free_port: int,
                                                         takeover: str | None) -> None:
    url = f"rtmp://127.0.0.1:{free_port}/live/k3y"
    params: dict[str, object] = {"url": url, "stream_id": "cam"}
    if takeover:
        params["takeover"] = takeover
    async with running(ingest_graph(params, on_error="skip_message")) as rt:
        first = procs.publish_rtmp(url, seconds=60)
        assert await wait_for(lambda: packets_of(rt, "cam") >= 30, 30)
        second = procs.publish_rtmp(url, seconds=60)
        if takeover == "replace":  # the newcomer replaces the first, which the server disconnects
            assert await wait_for(lambda: first.poll() is not None, 30)
            count = packets_of(rt, "cam")
            assert await wait_for(lambda: packets_of(rt, "cam") > count + 30, 30)
            assert second.poll() is None
        else:  # refused while the first is sending; the first goes on
            assert await wait_for(lambda: second.poll() is not None, 30)
            count = packets_of(rt, "cam")
            assert await wait_for(lambda: packets_of(rt, "cam") > count + 30, 30)
            assert first.poll() is None
        figures = counters(rt)
    if takeover == "replace":
        assert figures["takeovers"] == 1 and figures["refused_busy"] == 0 and figures["publishers"] == 2
    else:
        assert second.returncode != 0
        assert figures["takeovers"] == 0 and figures["refused_busy"] == 1 and figures["publishers"] == 1


async def test_a_silent_holder_is_replaced_even_under_refuse(procs: Processes, free_port: int) -> None:
    # a publisher whose connection is open but sends nothing (SIGSTOPped ffmpeg: a dead network path) does not
    # keep its key from its own reconnect; the idle timeout is long here, so only the takeover can admit it
    url = f"rtmp://127.0.0.1:{free_port}/live"
    async with running(ingest_graph({"url": url, "keys": "a", "timeout_s": 120}, on_error="skip_message")) as rt:
        first = procs.publish_rtmp(f"{url}/a", seconds=60)
        assert await wait_for(lambda: packets_of(rt, "a") >= 30, 30)
        first.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(STALE_PUBLISHER_S + 1.0)
            count = packets_of(rt, "a")
            second = procs.publish_rtmp(f"{url}/a", seconds=60)
            assert await wait_for(lambda: packets_of(rt, "a") > count + 30, 40), "the reconnect was not admitted"
            figures = counters(rt)
        finally:
            first.send_signal(signal.SIGCONT)
        assert await wait_for(lambda: first.poll() is not None, 30)  # the old connection was closed
        # the newcomer still publishes (checked while the graph runs: its end closes the newcomer's socket too)
        assert second.poll() is None
        ends = [m for m in collected(rt, "packets") if isinstance(m, StreamEnd)]
    assert figures["admission"]["refused"] == {} and figures["admission"]["takeovers"] == 1
    assert ends == []  # the stream went on across the takeover


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("takeover", [None, "replace"])
async def test_second_whip_publisher(loopback_ice: None, multi: bool, takeover: str | None) -> None:
    params: dict[str, object] = {"url": "whip://"}
    params.update({"keys": "s3cret=cam"} if multi else {"stream_id": "cam", "token": "s3cret"})
    if takeover:
        params["takeover"] = takeover
    async with running(ingest_graph(params, on_error="skip_message")) as rt:
        first, second = (Publisher(rt.server.url + "/whip/cam" if not multi else rt.server.url + "/whip", "s3cret")
                         for _ in range(2))
        try:
            await first.publish()
            assert await wait_for(lambda: packets_of(rt, "cam") >= 15, 30)
            await second.publish()
            count = packets_of(rt, "cam")
            assert await wait_for(lambda: packets_of(rt, "cam") > count + 15, 30)  # the stream goes on either way
            figures = counters(rt)
        finally:
            await first.close()
            await second.close()
    assert first.status == 201
    if takeover == "replace":
        assert second.status == 201
    else:
        assert second.status == 409
    busy = figures["admission"]["refused"].get("stream_busy", 0) if multi else figures["refused_busy"]
    replaced = figures["admission"]["takeovers"] if multi else figures["takeovers"]
    assert (busy, replaced) == ((0, 1) if takeover == "replace" else (1, 0))
