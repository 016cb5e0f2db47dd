"""RTMP ingest with the real ffmpeg CLI publishing from a subprocess (killed and restarted mid-stream)."""

from __future__ import annotations

import itertools
import logging
import time
from fractions import Fraction

import pytest

from flowgraph.nodes.media.h264 import NAL_IDR, NAL_SPS, nal_type, split_nals
from flowgraph.testing import collected, running

from .helpers import Processes, ingest_graph, wait_for


def rtmp_graph(port: int, key: str = "s3cret", **params: object) -> str:
    return ingest_graph({"url": f"rtmp://127.0.0.1:{port}/live/{key}", "stream_id": "cam1", **params},
                        on_error="skip_message")


async def test_published_stream_arrives_with_metadata(procs: Processes, free_port: int) -> None:
    async with running(rtmp_graph(free_port)) as rt:
        procs.publish_rtmp(f"rtmp://127.0.0.1:{free_port}/live/s3cret", seconds=10, audio=True)
        assert await wait_for(lambda: len(collected(rt, "frames")) >= 30, 20)
        info = rt.scope.streams.get("cam1")["ingest"]
    packets = collected(rt, "packets")
    first = packets[0]
    assert first.keyframe and NAL_SPS in [nal_type(n) for n in split_nals(first.data)]
    assert first.config and first.time_base == Fraction(1, 1000) and first.stream_id == "cam1"
    assert [p.frame_id for p in packets] == list(range(len(packets)))
    assert all(b.dts >= a.dts for a, b in itertools.pairwise(packets))
    assert all(abs(p.t_capture - time.time()) < 30 for p in packets)
    assert info["state"] == "live" and info["width"] == 320 and info["height"] == 240
    assert "Lavf" in info["publisher"] and info["fps"] == 30.0 and info["publishers"] == 1
    assert "s3cret" not in str(info)  # the key never shows in the streams API
    frames = collected(rt, "frames")
    assert frames[0].image.shape == (240, 320, 3) and frames[0].frame_id == 0


@pytest.mark.parametrize("path,why", [("live/wrongkey", "wrong stream key"), ("other/s3cret", "unknown app 'other'")])
async def test_wrong_key_or_app_is_rejected_and_logged(procs: Processes, free_port: int, path: str, why: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "flowgraph.media.rtmp")
    async with running(rtmp_graph(free_port)) as rt:
        publisher = procs.publish_rtmp(f"rtmp://127.0.0.1:{free_port}/{path}", seconds=5)
        assert await wait_for(lambda: publisher.poll() is not None, 15)
        counters = rt.snapshot()["nodes"]["src"]["counters"]
    assert publisher.returncode != 0
    assert counters["rejected"] == 1 and counters["packets"] == 0 and not collected(rt, "packets")
    assert any(why in r.getMessage() and "rejected" in r.getMessage() for r in caplog.records)


async def test_publisher_killed_and_restarted_mid_stream(procs: Processes, free_port: int) -> None:
    url = f"rtmp://127.0.0.1:{free_port}/live/s3cret"
    async with running(rtmp_graph(free_port)) as rt:
        first = procs.publish_rtmp(url, seconds=30)
        assert await wait_for(lambda: len(collected(rt, "frames")) >= 20, 20)
        procs.kill(first)  # SIGKILL: no FCUnpublish, the socket just dies
        assert await wait_for(lambda: rt.scope.streams.get("cam1")["ingest"]["state"] == "waiting", 5)
        before = len(collected(rt, "packets"))
        states = {name: r.stats.state for name, r in rt.runners.items()}
        procs.publish_rtmp(url, seconds=30)
        assert await wait_for(lambda: len(collected(rt, "frames")) >= before + 20, 20)
        counters = rt.snapshot()["nodes"]["src"]["counters"]
        decode = rt.snapshot()["nodes"]["dec"]["counters"]
    assert set(states.values()) == {"running"}  # nothing downstream ended while no one published
    assert counters["publishers"] == 2 and counters["reconnects"] == 1
    packets = collected(rt, "packets")
    assert [p.frame_id for p in packets] == list(range(len(packets)))
    assert all(b.pts > a.pts for a, b in itertools.pairwise(p for p in packets if p.pts == p.dts))
    resumed = packets[before]
    assert resumed.keyframe and NAL_IDR in [nal_type(n) for n in split_nals(resumed.data)]
    assert decode["corrupt"] == 0 and decode["lost"] == 0


async def test_non_h264_publisher_is_refused_with_a_clear_error(procs: Processes, free_port: int,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "flowgraph.media.rtmp")
    async with running(rtmp_graph(free_port)) as rt:
        publisher = procs.publish_rtmp(f"rtmp://127.0.0.1:{free_port}/live/s3cret", seconds=5,
                                       codec=["-c:v", "flv1", "-b:v", "300k"])
        assert await wait_for(lambda: publisher.poll() is not None, 15)
        counters = rt.snapshot()["nodes"]["src"]["counters"]
    assert counters["rejected"] == 1 and counters["packets"] == 0
    assert any("Sorenson H.263" in r.getMessage() and "only H.264" in r.getMessage() for r in caplog.records)


async def test_two_streams_share_one_port(procs: Processes, free_port: int) -> None:
    text = f"""
name: two
nodes:
  a: {{node: ingest, params: {{url: "rtmp://127.0.0.1:{free_port}/live/keya", stream_id: a}}}}
  b: {{node: ingest, params: {{url: "rtmp://127.0.0.1:{free_port}/live/keyb", stream_id: b}}}}
  sink: {{node: collect, inputs: {{inp: [a/packets, b/packets]}}}}
"""
    async with running(text) as rt:
        procs.publish_rtmp(f"rtmp://127.0.0.1:{free_port}/live/keya", seconds=10)
        procs.publish_rtmp(f"rtmp://127.0.0.1:{free_port}/live/keyb", seconds=10, rate=15)
        assert await wait_for(lambda: {p.stream_id for p in collected(rt, "sink")} == {"a", "b"}, 20)
        assert await wait_for(lambda: len(collected(rt, "sink")) >= 40, 20)
    by_stream = {s: [p for p in collected(rt, "sink") if p.stream_id == s] for s in "ab"}
    assert all(p.frame_id == i for s in "ab" for i, p in enumerate(by_stream[s]))
    assert by_stream["a"][0].keyframe and by_stream["b"][0].keyframe


async def test_stop_with_a_publisher_connected_is_prompt(procs: Processes, free_port: int) -> None:
    # the publisher would go on for 120 s and the read timeout is 60 s: a stop that waited for either would take
    # far longer than the generous 10 s allowed here (a loaded 2-core box)
    async with running(rtmp_graph(free_port, timeout_s=60)) as rt:
        publisher = procs.publish_rtmp(f"rtmp://127.0.0.1:{free_port}/live/s3cret", seconds=120)
        assert await wait_for(lambda: len(collected(rt, "packets")) >= 5, 30)
        started = time.monotonic()
    assert time.monotonic() - started < 10.0 and rt.exit_code == 0
    assert await wait_for(lambda: publisher.poll() is not None, 30)  # the publisher saw the server go away
