"""The done-when check of issue 19: ``STREAM_KEYS=a,b,c`` graphs/live.yaml takes three publishers at once and the
viewer page lists all three and switches between them (real ffmpeg publishers, headless Chromium)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import aiohttp

from flowgraph.nodes.webrtc.browser import Chromium
from flowgraph.testing import compile_text, running

LIVE = Path(__file__).parents[2] / "graphs" / "live.yaml"


async def test_three_publishers_listed_and_switched_on_the_viewer_page(free_port: int, tmp_path: Path) -> None:
    plan = compile_text(LIVE.read_text().replace("1935", str(free_port)), env={"STREAM_KEYS": "a,b,c"})
    publishers = []
    async with running(plan, port=0) as rt, Chromium() as browser:
        try:
            for key, pattern in (("a", "testsrc2"), ("b", "smptebars"), ("c", "rgbtestsrc")):
                publishers.append(await asyncio.create_subprocess_exec(
                    "ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i", f"{pattern}=size=320x180:rate=30",
                    "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30", "-t", "40",
                    "-pix_fmt", "yuv420p", "-f", "flv", f"rtmp://127.0.0.1:{free_port}/live/{key}",
                    stdin=subprocess.DEVNULL))
            page = await browser.open(f"{rt.server.url}/?stream=b")
            await page.wait_for("window.fg && fg.frames > 15 && (fg.liveStreams || []).length === 3", timeout=60)
            listed = await page.eval("[...document.querySelectorAll('#streams button')].map(b => b.dataset.stream)")
            watching = await page.eval("({stream: fg.stream, state: fg.state})")
            shot = os.environ.get("FLOWGRAPH_SCREENSHOT_DIR")
            if shot:
                await page.eval("new Promise(r => setTimeout(r, 2500))")  # let the list show bitrates
                await page.screenshot(Path(shot) / "live-three-streams.png")
            await page.eval("document.querySelector('#streams button[data-stream=\"c\"]').click()")
            await page.wait_for("window.fg && fg.stream === 'c' && fg.frames > 15", timeout=60)
            async with aiohttp.ClientSession() as http:
                # bitrate and fps are reported once a second per stream: wait for a report of each (generously)
                for _ in range(150):
                    body = await (await http.get(f"{rt.server.url}/api/streams")).json()
                    figures = [s["live"] for s in body["streams"]]
                    if len(figures) == 3 and all(f.get("bitrate_kbps") and f.get("fps") for f in figures):
                        break
                    await asyncio.sleep(0.2)
        finally:
            for proc in publishers:
                if proc.returncode is None:
                    proc.terminate()
                    await asyncio.wait_for(proc.wait(), 10)
    assert listed == ["a", "b", "c"]
    assert watching == {"stream": "b", "state": "connected"}
    live = {s["stream_id"]: s["live"] for s in body["streams"]}
    assert set(live) == {"a", "b", "c"}
    assert all(f["publisher"].startswith("127.0.0.1:") and f["protocol"] == "rtmp" for f in live.values())
    assert all(f["bitrate_kbps"] > 0 and f["fps"] > 0 for f in live.values())
    assert live["c"]["viewers"] == 1 and live["a"]["viewers"] == 0
