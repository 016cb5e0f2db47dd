"""End to end in real headless Chromium: the viewer page gets video, analytics and draws overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from flowgraph.nodes.webrtc.browser import Chromium

from .conftest import graph

TRACK7 = (0xEF, 0x47, 0x6F)  # the page's colour for track id 7


def colour_pixels(path: Path, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(image - np.array(rgb)).sum(axis=2) < tolerance).sum())


async def test_page_plays_video_with_overlays_desktop_and_phone(tmp_path: Path) -> None:
    async with graph("{streams: [cam]}", width=640, height=360) as rt, Chromium() as browser:
        page = await browser.open(f"{rt.server.url}/", width=1280, height=800)
        await page.wait_for("window.fg && window.fg.frames > 45 && window.fg.syncs > 0", timeout=20)
        fg = await page.eval("({frames: fg.frames, first: fg.firstFrameMs, analytics: fg.analytics, "
                             "types: fg.messages.map(m => m.type), drawn: fg.drawn, state: fg.state, "
                             "lat: fg.latencies.slice(-30), errors: fg.errors})")
        assert fg["state"] == "connected" and not fg["errors"]
        assert fg["first"] is not None and fg["first"] < 5000
        assert fg["analytics"] > 5 and "detection" in fg["types"]
        assert fg["drawn"] > 0, "overlay never drew a box for a displayed frame"
        assert fg["lat"] and 0 < sorted(fg["lat"])[len(fg["lat"]) // 2] < 1000
        await page.wait_for("document.querySelectorAll('.toast').length > 0", timeout=5)
        shot = await page.screenshot(tmp_path / "desktop.png")
        assert colour_pixels(shot, TRACK7) > 200, "no overlay box pixels in the screenshot"
        # with boxes switched off the box colour disappears (the pixels came from the overlay, not the video)
        await page.eval("document.getElementById('show-boxes').click()")
        await page.eval("new Promise(r => setTimeout(r, 300))")
        assert colour_pixels(await page.screenshot(tmp_path / "off.png"), TRACK7) < 50

        phone = await browser.open(f"{rt.server.url}/?stream=cam", width=390, height=844, mobile=True, scale=2)
        await phone.wait_for("window.fg && window.fg.frames > 20 && window.fg.drawn > 0", timeout=20)
        layout = await phone.eval("(() => { const s = document.getElementById('stage').getBoundingClientRect(); "
                                  "return {w: s.width, doc: document.documentElement.scrollWidth}; })()")
        assert layout["w"] <= 390 and layout["doc"] <= 390, "page wider than a phone screen"
        shot = await phone.screenshot(tmp_path / "phone.png")
        assert colour_pixels(shot, TRACK7) > 100
        stats = await rt.runners["out"].node.viewer_stats()
        assert stats["streams"]["cam"]["viewers"] == 2
        assert all(v["analytics"]["sent"] > 0 for v in stats["viewers"])
        assert any(v["playout_delay"] == [0, 100] for v in stats["viewers"]), "playout-delay not negotiated"
