"""The real media path: graphs/live.yaml with an ffmpeg RTMP publisher, and testsrc's frame stamp read back
by the page in Chromium (the latency probe's measurement)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from flowgraph.nodes.webrtc.browser import Chromium
from flowgraph.testing import compile_text, running

LIVE = Path(__file__).parents[3] / "graphs" / "live.yaml"


async def test_live_yaml_rtmp_publisher_to_browser(free_port: int) -> None:
    rtmp_port = free_port
    plan = compile_text(LIVE.read_text().replace("1935", str(rtmp_port)), env={"STREAM_KEYS": "k1=live"})
    async with running(plan, port=0) as rt, Chromium() as browser:
        publisher = await asyncio.create_subprocess_exec(
            "ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "60", "-t", "20",
            "-f", "flv", f"rtmp://127.0.0.1:{rtmp_port}/live/k1", stdin=subprocess.DEVNULL)
        try:
            page = await browser.open(f"{rt.server.url}/")
            await page.wait_for("window.fg && window.fg.frames > 20", timeout=20)
            state = await page.eval("({state: fg.state, stream: fg.stream, w: fg.pc ? 1 : 0})")
            assert state["state"] == "connected" and state["stream"] == "live"
        finally:
            publisher.terminate()
            await asyncio.wait_for(publisher.wait(), 10)


async def test_testsrc_stamp_is_read_in_the_browser() -> None:
    text = """
name: stamped
nodes:
  src:
    node: ingest
    params: {url: "testsrc://", width: 640, height: 360, fps: 30, people: 1, gop: 30, stream_id: cam,
             preset: ultrafast}
    inputs: {control: {from: out/control, feedback: true}}
  out:
    node: webrtc_out
    inputs: {video: src/packets}
"""
    async with running(text, port=0) as rt, Chromium() as browser:
        page = await browser.open(f"{rt.server.url}/?stats=0")
        await page.wait_for("window.fg && window.fg.stampLatencies.length > 30", timeout=20)
        samples = await page.eval("fg.stampLatencies.map(s => s[1])")
        ids = await page.eval("fg.stampLatencies.map(s => s[0])")
        # display time (requestVideoFrameCallback's expectedDisplayTime, a vsync estimate) minus the capture time read
        # from the picture: a misread stamp gives seconds or nonsense; a correct one may land a few ms below zero when
        # the estimate precedes the real display (seen once: -6.9 ms, one sample of 31, fresh-clone CI run)
        assert all(-25 < s < 2000 for s in samples), [s for s in samples if not -25 < s < 2000]
        assert sorted(samples)[len(samples) // 2] > 0, "the median latency must be positive"
        assert ids == sorted(ids) and len(set(ids)) > 20, "frame ids from the stamp must increase"
