"""End to end in real headless Chromium: the viewer page gets video, analytics and draws overlays."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from flowgraph.nodes.webrtc.browser import Chromium

from .conftest import graph

TRACK7 = (0xEF, 0x47, 0x6F)  # the page's colour for track id 7

# On the next displayed frame (after the page's own frame callback has drawn its overlay for it): where the test
# pattern's red square is in that video frame (ground truth: the source draws it there and the analytics say so),
# and where the overlay canvas drew track 7's box, both in video pixels. The box's bottom edge is used (its label
# sits above it); the stroke's half width is taken off.
SAMPLE = """new Promise(resolve => {
  const video = document.getElementById('video'), canvas = document.getElementById('overlay');
  video.requestVideoFrameCallback(() => {
    const vw = video.videoWidth, vh = video.videoHeight;
    const scratch = document.createElement('canvas');
    scratch.width = vw; scratch.height = vh;
    const sctx = scratch.getContext('2d', {willReadFrequently: true});
    sctx.drawImage(video, 0, 0, vw, vh);
    const v = sctx.getImageData(0, 0, vw, vh).data;
    let sx1 = 1e9, sy1 = 1e9, sx2 = -1, sy2 = -1;
    for (let y = 0; y < vh; y++) for (let x = 0; x < vw; x++) {
      const i = (y * vw + x) * 4;
      if (v[i] > 170 && v[i + 1] < 110 && v[i + 2] < 110) {
        sx1 = Math.min(sx1, x); sx2 = Math.max(sx2, x + 1); sy1 = Math.min(sy1, y); sy2 = Math.max(sy2, y + 1);
      }
    }
    const W = canvas.width, H = canvas.height, o = canvas.getContext('2d').getImageData(0, 0, W, H).data;
    const hit = (x, y) => { const i = (y * W + x) * 4;
      return o[i + 3] > 200 && Math.abs(o[i] - 0xef) + Math.abs(o[i + 1] - 0x47) + Math.abs(o[i + 2] - 0x6f) < 40; };
    let maxY = -1;
    for (let y = H - 1; y >= 0 && maxY < 0; y--) for (let x = 0; x < W; x++) if (hit(x, y)) { maxY = y; break; }
    const dpr = window.devicePixelRatio || 1, cw = canvas.clientWidth, ch = canvas.clientHeight;
    const lw = Math.max(2, Math.min(cw / vw, ch / vh) * vw / 400);
    let bx1 = 1e9, bx2 = -1;
    for (let y = Math.max(0, Math.floor(maxY - lw * dpr) + 1); y <= maxY; y++)
      for (let x = 0; x < W; x++) if (hit(x, y)) { bx1 = Math.min(bx1, x); bx2 = Math.max(bx2, x + 1); }
    const scale = Math.min(cw / vw, ch / vh), rx = (cw - vw * scale) / 2, ry = (ch - vh * scale) / 2;
    const toX = px => (px / dpr - rx) / scale, toY = py => (py / dpr - ry) / scale, half = lw / 2 / scale;
    resolve({square: sx2 < 0 ? null : [sx1, sy1, sx2, sy2],
             box: maxY < 0 ? null : [toX(bx1) + half, toX(bx2) - half, toY(maxY + 1) - half]});
  });
})"""


async def box_errors(page: Any, samples: int = 20) -> list[float]:
    """Video-pixel distance between the drawn box (left, right, bottom edges) and the red square on screen."""
    errors = []
    for _ in range(samples):
        got = await page.eval(SAMPLE)
        if got["square"] and got["box"]:
            sx1, _, sx2, sy2 = got["square"]
            bx1, bx2, by2 = got["box"]
            errors.append(max(abs(bx1 - sx1), abs(bx2 - sx2), abs(by2 - sy2)))
        await page.eval("new Promise(r => setTimeout(r, 100))")
    return errors


def assert_in_step(errors: list[float]) -> None:
    """The square moves 4 px a frame: in step = the box on the square's edges within 3 frames of motion, on
    the (sorted) median sample and on 4 samples of 5; at least 10 of the 20 samples had both on screen."""
    assert len(errors) >= 10, errors
    ordered = sorted(errors)
    assert ordered[len(ordered) // 2] <= 6.0 and ordered[(len(ordered) * 4) // 5 - 1] <= 12.0, ordered


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
        assert_in_step(await box_errors(page))
        assert fg["lat"] and 0 < sorted(fg["lat"])[len(fg["lat"]) // 2] < 1000
        await page.wait_for("document.querySelectorAll('.toast').length > 0", timeout=5)
        # a screenshot can fall between two overlay draws (seen once in CI: 12 pixels): the box must show in one of five
        for _ in range(5):
            shot = await page.screenshot(tmp_path / "desktop.png")
            if colour_pixels(shot, TRACK7) > 200:
                break
            await asyncio.sleep(0.2)
        assert colour_pixels(shot, TRACK7) > 200, "no overlay box pixels in five screenshots"
        # with boxes switched off the box colour disappears (the pixels came from the overlay, not the video)
        await page.eval("document.getElementById('show-boxes').click()")
        await page.eval("new Promise(r => setTimeout(r, 300))")
        assert colour_pixels(await page.screenshot(tmp_path / "off.png"), TRACK7) < 50

        phone = await browser.open(f"{rt.server.url}/?stream=cam", width=390, height=844, mobile=True, scale=2)
        await phone.wait_for("window.fg && window.fg.frames > 20 && window.fg.drawn > 0", timeout=20)
        layout = await phone.eval("(() => { const s = document.getElementById('stage').getBoundingClientRect(); "
                                  "return {w: s.width, doc: document.documentElement.scrollWidth}; })()")
        assert layout["w"] <= 390 and layout["doc"] <= 390, "page wider than a phone screen"
        # the box follows the square (a pixel count of one screenshot was a coin toss: the square wraps around)
        assert_in_step(await box_errors(phone))
        await phone.screenshot(tmp_path / "phone.png")
        stats = await rt.runners["out"].node.viewer_stats()
        assert stats["streams"]["cam"]["viewers"] == 2
        assert all(v["analytics"]["sent"] > 0 for v in stats["viewers"])
        assert any(v["playout_delay"] == [0, 100] for v in stats["viewers"]), "playout-delay not negotiated"
