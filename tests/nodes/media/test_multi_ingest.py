"""Multi-stream ingest: one node, every authorised RTMP publisher (real ffmpeg) a stream of its own."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from flowgraph.messages import StreamEnd
from flowgraph.testing import collected, running

from .helpers import Processes, ingest_graph, wait_for


def multi_graph(port: int, **params: object) -> str:
    return ingest_graph({"url": f"rtmp://127.0.0.1:{port}/live", **params}, on_error="skip_message")


def frames_of(rt: Any, stream_id: str) -> int:
    return sum(1 for m in collected(rt, "frames") if m.stream_id == stream_id and not isinstance(m, StreamEnd))


def ends(rt: Any, node: str = "frames") -> list[str]:
    return [m.stream_id for m in collected(rt, node) if isinstance(m, StreamEnd)]


async def test_three_publishers_become_three_streams_and_one_over_the_limit_is_refused(
        procs: Processes, free_port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "flowgraph.media")
    url = f"rtmp://127.0.0.1:{free_port}/live"
    async with running(multi_graph(free_port, keys="a,b,k3y=cam3,d", max_streams=3)) as rt:
        publishers = {key: procs.publish_rtmp(f"{url}/{key}", seconds=30) for key in ("a", "b", "k3y")}
        assert await wait_for(lambda: all(frames_of(rt, s) >= 15 for s in ("a", "b", "cam3")), 30)
        listed = rt.scope.streams.ids()
        assert await wait_for(lambda: rt.scope.streams.get("cam3")["ingest"]["bitrate_kbps"] > 0, 10)
        info = rt.scope.streams.get("cam3")["ingest"]
        fourth = procs.publish_rtmp(f"{url}/d", seconds=10)  # authorised, but over max_streams
        wrong = procs.publish_rtmp(f"{url}/nope", seconds=10)
        assert await wait_for(lambda: fourth.poll() is not None and wrong.poll() is not None, 20)
        counters = rt.snapshot()["nodes"]["src"]["counters"]
        procs.kill(publishers["a"])  # the socket dies: the stream ends after the idle timeout ...
        publishers["b"].terminate()  # ... or at once when ffmpeg unpublishes
        assert await wait_for(lambda: sorted(ends(rt)) == ["a", "b"], 30)
        still = frames_of(rt, "cam3")
        assert await wait_for(lambda: frames_of(rt, "cam3") > still + 10, 20)  # the graph and cam3 go on
        after = rt.scope.streams.ids()
        decoders = set(rt.runners["dec"].node._decoders)  # type: ignore[attr-defined]
    assert sorted(listed) == ["a", "b", "cam3"] and "k3y" not in str(listed)
    assert info["protocol"] == "rtmp" and info["publisher"].startswith("127.0.0.1:") and info["bitrate_kbps"] > 0
    assert fourth.returncode != 0 and wrong.returncode != 0
    assert counters["admission"]["refused"] == {"stream_limit": 1, "unauthorised": 1}
    assert counters["streams_live"] == 3
    assert after == ["cam3"] and decoders == {"cam3"}  # ended streams' records and decoders are freed
    assert {p.stream_id for p in collected(rt, "packets")} == {"a", "b", "cam3"}
    assert any("stream limit reached" in r.getMessage() for r in caplog.records)


async def test_keys_file_is_reloaded_when_it_changes(procs: Processes, free_port: int, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# broadcasters\nold=first\n")
    url = f"rtmp://127.0.0.1:{free_port}/live"
    async with running(multi_graph(free_port, keys_file=str(keys))) as rt:
        procs.publish_rtmp(f"{url}/old", seconds=20)
        assert await wait_for(lambda: frames_of(rt, "first") >= 5, 30)
        keys.write_text("new=second\n")  # 'old' revoked (its live publisher is not cut), 'new' added
        refused = procs.publish_rtmp(f"{url}/old", seconds=5)
        procs.publish_rtmp(f"{url}/new", seconds=20)
        assert await wait_for(lambda: frames_of(rt, "second") >= 5 and refused.poll() is not None, 30)
        counters = rt.snapshot()["nodes"]["src"]["counters"]
    assert refused.returncode != 0 and counters["admission"]["key_file_reloads"] == 2


async def test_on_publish_callback_admits_names_and_refuses(procs: Processes, free_port: int) -> None:
    asked: list[dict[str, str]] = []

    async def hook(request: web.Request) -> web.Response:
        form = dict(await request.post())
        asked.append({k: str(v) for k, v in form.items()})
        if form.get("key") == "letmein":
            return web.json_response({"stream_id": "studio-1"})
        return web.Response(status=403)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"rtmp://127.0.0.1:{free_port}/live"
    try:
        async with running(multi_graph(free_port, on_publish=f"http://127.0.0.1:{hook_port}/hook")) as rt:
            procs.publish_rtmp(f"{url}/letmein", seconds=20)
            refused = procs.publish_rtmp(f"{url}/guess", seconds=5)
            assert await wait_for(lambda: frames_of(rt, "studio-1") >= 5 and refused.poll() is not None, 30)
    finally:
        await runner.cleanup()
    assert refused.returncode != 0
    assert {a["key"] for a in asked} == {"letmein", "guess"}
    assert all(a["protocol"] == "rtmp" and a["addr"].startswith("127.0.0.1:") and a["app"] == "live" for a in asked)


@pytest.mark.parametrize("takeover", ["replace", "refuse"])
async def test_second_publisher_of_a_live_key(procs: Processes, free_port: int, takeover: str) -> None:
    url = f"rtmp://127.0.0.1:{free_port}/live/a"
    async with running(multi_graph(free_port, keys="a", takeover=takeover)) as rt:
        first = procs.publish_rtmp(url, seconds=30)
        assert await wait_for(lambda: frames_of(rt, "a") >= 10, 30)
        second = procs.publish_rtmp(url, seconds=30)
        if takeover == "replace":  # the newcomer takes the stream over; it never ends
            assert await wait_for(lambda: first.poll() is not None, 20)
            count = frames_of(rt, "a")
            assert await wait_for(lambda: frames_of(rt, "a") > count + 10, 20)
            assert second.poll() is None
        else:  # the newcomer is refused; the first goes on
            assert await wait_for(lambda: second.poll() is not None, 20)
            assert first.poll() is None and second.returncode != 0
        assert ends(rt) == []


@pytest.mark.parametrize("params,message", [
    ({"url": "rtmp://127.0.0.1:1935/live", "keys": "ok,bad=no/slash"}, r"keys:1: bad stream key entry 'ba\*\*\*="),
    ({"url": "file:///clip.mp4", "keys": "a"}, r"need an rtmp:// \(listen\) or whip:// url"),
    ({"url": "rtmp://127.0.0.1:1935/live", "on_publish": "ftp://x"}, r"on_publish must be an http\(s\) URL"),
])
def test_bad_multi_stream_params_fail_before_start(params: dict[str, object], message: str) -> None:
    from flowgraph.errors import FlowgraphError
    from flowgraph.testing import compile_text

    with pytest.raises(FlowgraphError, match=message) as caught:
        compile_text(ingest_graph(params), file="g.yaml")
    assert "g.yaml:" in str(caught.value)  # where in the file
