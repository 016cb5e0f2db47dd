"""Pull sources with real files and a real live HTTP-FLV server (the ffmpeg CLI): containers, pacing, looping,
damaged files, non-H.264 input, reconnects."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from flowgraph.messages import Packet
from flowgraph.nodes.media.h264 import NAL_IDR, NAL_PPS, NAL_SPS, nal_type, parse_sps, split_nals
from flowgraph.testing import collected, run_to_end, running

from .helpers import FFMPEG, SIZE, Processes, ingest_graph, probe_frames, wait_for


def _kinds(packet: Packet) -> list[int]:
    return [nal_type(n) for n in split_nals(packet.data)]


@pytest.mark.parametrize("kind", ["mp4", "mkv", "flv", "avi", "ts"])
async def test_every_container_passes_h264_through(media: dict[str, Path], kind: str) -> None:
    rt = await run_to_end(ingest_graph({"url": str(media[kind]), "realtime": False}))
    assert rt.exit_code == 0
    packets: list[Packet] = collected(rt, "packets")
    assert len(packets) == int(probe_frames(media[kind])["nb_read_frames"]) == 60  # audio tracks ignored
    first = packets[0]
    assert first.keyframe and {NAL_SPS, NAL_PPS, NAL_IDR} <= set(_kinds(first))
    assert all(p.data[:4] == b"\x00\x00\x00\x01" or p.data[:3] == b"\x00\x00\x01" for p in packets)
    assert all(p.config == first.config for p in packets) and first.config
    assert all(NAL_SPS in _kinds(p) for p in packets if p.keyframe)  # every keyframe self-contained
    dts = [p.dts for p in packets]
    assert dts == sorted(dts)
    frames = collected(rt, "frames")
    assert len(frames) == 60 and frames[0].image.shape == (240, 320, 3)


async def test_b_frames_keep_pts_and_dts_apart(media: dict[str, Path]) -> None:
    rt = await run_to_end(ingest_graph({"url": f"file://{media['mp4']}", "realtime": False}))
    packets = collected(rt, "packets")
    assert any(p.pts != p.dts for p in packets)  # the mp4 was encoded with -bf 2
    assert sorted(f.pts for f in collected(rt, "frames")) == sorted(p.pts for p in packets)


async def test_realtime_paces_at_native_rate(media: dict[str, Path]) -> None:
    started = time.monotonic()
    rt = await run_to_end(ingest_graph({"url": str(media["mkv"]), "realtime": True}))
    packets = collected(rt, "packets")
    span = packets[-1].t_capture - packets[0].t_capture
    # 59 frame intervals at 30 fps = 1.97 s: never faster; slower only by load (up to twice, a loaded box)
    assert 1.8 <= span <= 4.0 and time.monotonic() - started >= 1.8


async def test_loop_continues_the_timeline(media: dict[str, Path]) -> None:
    async with running(ingest_graph({"url": str(media["mkv"]), "realtime": False, "loop": True})) as rt:
        assert await wait_for(lambda: len(collected(rt, "packets")) >= 150, 20)
    packets = collected(rt, "packets")[:150]
    assert [p.frame_id for p in packets] == list(range(150))
    pts = [p.pts for p in packets]
    assert all(b > a for a, b in itertools.pairwise(pts))  # no jump back at the loop point
    assert packets[60].keyframe and packets[120].keyframe


@pytest.mark.parametrize("kind", ["truncated_mp4", "truncated_flv"])
async def test_truncated_files_give_what_they_have(media: dict[str, Path], kind: str) -> None:
    rt = await run_to_end(ingest_graph({"url": str(media[kind]), "realtime": False}))
    assert rt.exit_code == 0
    packets, frames = collected(rt, "packets"), collected(rt, "frames")
    assert 10 < len(packets) < 60 and len(frames) >= len(packets) - 3


async def test_truncated_file_without_index_is_a_clear_error(media: dict[str, Path]) -> None:
    rt = await run_to_end(ingest_graph({"url": str(media["truncated_moov_at_end"])}))
    assert rt.exit_code == 1
    assert "cannot open" in str(rt.failure) and "truncated_noindex.mp4" in str(rt.failure)


async def test_corrupt_stream_is_survived_and_counted(media: dict[str, Path]) -> None:
    rt = await run_to_end(ingest_graph({"url": str(media["corrupt_ts"]), "realtime": False}))
    assert rt.exit_code == 0
    decode = rt.snapshot()["nodes"]["dec"]["counters"]
    frames = collected(rt, "frames")
    assert decode["corrupt"] > 0 and len(frames) < 120  # the damage was noticed, damaged pictures withheld ...
    last = collected(rt, "packets")[-1].frame_id
    assert frames[-1].frame_id == last >= 110 and len(frames) >= 60  # ... and decoding resumed at the next keyframe


@pytest.mark.parametrize("kind,codec", [("vp8", "vp8"), ("hevc", "hevc")])
async def test_non_h264_input_is_transcoded(media: dict[str, Path], kind: str, codec: str) -> None:
    rt = await run_to_end(ingest_graph({"url": str(media[kind]), "realtime": False, "gop": 10}))
    assert rt.exit_code == 0
    packets = collected(rt, "packets")
    assert len(packets) == 30
    sps = next(n for n in split_nals(packets[0].data) if nal_type(n) == NAL_SPS)
    assert (parse_sps(sps).width, parse_sps(sps).height) == (320, 240)
    assert [p.frame_id for p in packets if p.keyframe] == [0, 10, 20]
    assert len(collected(rt, "frames")) == 30
    assert rt.scope.streams.get("default")["ingest"]["codec_in"] == codec


async def test_transcode_never_refuses_non_h264(media: dict[str, Path]) -> None:
    rt = await run_to_end(ingest_graph({"url": str(media["vp8"]), "transcode": "never"}))
    assert rt.exit_code == 1 and "'vp8' is not H.264" in str(rt.failure)


@pytest.mark.parametrize("url,message", [("/nonexistent/clip.mp4", "file not found: /nonexistent/clip.mp4"),
                                         ("srt://127.0.0.1:9/x", "no 'srt' protocol"),
                                         ("gopher://x/y", "unsupported url scheme 'gopher'")])
async def test_bad_sources_fail_with_a_clear_message(url: str, message: str) -> None:
    try:
        rt = await run_to_end(ingest_graph({"url": url}))
    except ValueError as exc:  # a scheme no source handles is refused at setup, before anything runs
        assert message in str(exc)
        return
    assert rt.exit_code == 1 and message in str(rt.failure)


async def test_missing_file_stops_the_graph_even_under_restart() -> None:
    """A file that is not there cannot appear by retrying: the graph stops at once with the file's name, where
    ``on_error: restart`` used to back off and retry forever."""
    rt = await run_to_end(ingest_graph({"url": "/nonexistent/clip.mp4"}, on_error="restart"), timeout=20)
    assert rt.exit_code == 1 and "file not found: /nonexistent/clip.mp4" in str(rt.failure)
    assert rt.runners["src"].stats.restarts == 0 and rt.runners["src"].stats.state == "failed"


def _http_flv_server(procs: Processes, port: int) -> None:
    """ffmpeg serving a live FLV stream over HTTP (it waits for one client, then encodes in real time)."""
    procs.start([*FFMPEG, "-re", "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=30", "-c:v", "libx264",
                 "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15", "-pix_fmt", "yuv420p", "-f", "flv",
                 "-listen", "1", f"http://127.0.0.1:{port}/live.flv"])


async def test_live_http_pull_reconnects_when_the_server_restarts(procs: Processes, free_port: int) -> None:
    _http_flv_server(procs, free_port)
    params = {"url": f"http://127.0.0.1:{free_port}/live.flv", "timeout_s": 2.0}
    async with running(ingest_graph(params, on_error="skip_message")) as rt:
        assert await wait_for(lambda: len(collected(rt, "frames")) >= 20, 20)
        procs.kill(procs.procs[0])
        before = len(collected(rt, "packets"))
        _http_flv_server(procs, free_port)
        assert await wait_for(lambda: len(collected(rt, "frames")) >= before + 20, 20)
        counters = rt.snapshot()["nodes"]["src"]["counters"]
        state = rt.runners["src"].stats.state
    assert counters["reconnects"] >= 1 and state == "running"
    packets = collected(rt, "packets")
    assert all(b.dts > a.dts for a, b in itertools.pairwise(packets))  # one continuous timeline


async def test_missing_camera_keeps_retrying_and_stops_promptly() -> None:
    async with running(ingest_graph({"url": "v4l2:///dev/video97"}, on_error="skip_message")) as rt:
        # the backoff doubles 0.5, 1, 2, 4 s: after the 4th retry fails the node waits 8 s before the next one
        assert await wait_for(lambda: rt.snapshot()["nodes"]["src"]["counters"].get("reconnects", 0) >= 4, 40)
        assert rt.snapshot()["nodes"]["src"]["counters"]["state"] == "reconnecting"
        started = time.monotonic()
    # a stop that sat out the 8 s backoff would take longer than this generous bound (a loaded 2-core box)
    assert time.monotonic() - started < 5.0 and rt.exit_code == 0
