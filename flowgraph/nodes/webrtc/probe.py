"""Latency probe: glass-to-glass latency and connect time measured in a real headless Chromium viewer.

The source must carry the frame stamp (``testsrc://`` ingest, or any publisher that draws
:mod:`flowgraph.nodes.synth.stamp`); the viewer page reads it from every displayed frame and compares the capture
time with the frame's expected display time (``requestVideoFrameCallback``). Publisher, server and browser must share
a clock (same host), or the figures include the clock offset.

    python -m flowgraph.nodes.webrtc.probe http://127.0.0.1:8080/ --seconds 10 --connects 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from typing import Any

from .browser import Chromium, Page


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _with_query(url: str, extra: str) -> str:
    return url + ("&" if "?" in url else "?") + extra


async def _wait_first_frame(page: Page, timeout: float) -> None:
    await page.wait_for("window.fg && window.fg.firstFrameMs !== null", timeout=timeout, interval=0.02)


async def latency(browser: Chromium, url: str, *, seconds: float = 10.0, warmup: float = 2.0,
                  timeout: float = 30.0) -> dict[str, Any]:
    """Glass-to-glass latency percentiles (ms) over ``seconds`` after ``warmup``, from one viewer."""
    page = await browser.open(_with_query(url, "stats=0"))
    try:
        await _wait_first_frame(page, timeout)
        await asyncio.sleep(warmup)
        await page.eval("fg.stampLatencies.length = 0")
        await asyncio.sleep(seconds)
        samples = await page.eval("fg.stampLatencies")
    finally:
        await page.close()
    total = [s[1] for s in samples]
    after_receive = [s[2] for s in samples if s[2] is not None]
    decoded = [s[3] for s in samples if len(s) > 3 and s[3] is not None]
    ids = [s[0] for s in samples]
    return {"frames": len(samples), "p50_ms": _pct(total, 0.5), "p90_ms": _pct(total, 0.9),
            "p99_ms": _pct(total, 0.99), "max_ms": _pct(total, 1.0),
            "receive_to_display_p50_ms": _pct(after_receive, 0.5),
            # capture → decoded (ready to show): not rounded up to the display's next refresh like the figures above
            "decoded_p50_ms": _pct(decoded, 0.5) if decoded else None,
            "decoded_p99_ms": _pct(decoded, 0.99) if decoded else None,
            "skipped_frames": (max(ids) - min(ids) + 1 - len(set(ids))) if ids else None}


async def connect(browser: Chromium, url: str, *, timeout: float = 15.0, live_wait: float = 3.0) -> dict[str, Any]:
    """One fresh viewer: ms from creating the offer to the first picture and to live (within 80 ms)."""
    page = await browser.open(_with_query(url, "stats=0"))
    try:
        await _wait_first_frame(page, timeout)
        try:
            await page.wait_for("fg.liveMs !== null", timeout=live_wait, interval=0.02)
        except TimeoutError:
            pass
        result = await page.eval("({first: fg.firstFrameMs, live: fg.liveMs})")
    finally:
        await page.close()
    return {"first_picture_ms": result["first"], "live_ms": result["live"]}


async def connects(browser: Chromium, url: str, count: int, *, pause: float = 0.4) -> dict[str, Any]:
    """``count`` sequential connects (pauses of ``pause`` s, at varying GOP positions); medians and maxima."""
    firsts: list[float] = []
    lives: list[float] = []
    never_live = 0
    failed = 0
    for i in range(count):
        try:
            result = await connect(browser, url)
        except TimeoutError:
            failed += 1
            continue
        firsts.append(result["first_picture_ms"])
        if result["live_ms"] is None:
            never_live += 1
        else:
            lives.append(result["live_ms"])
        await asyncio.sleep(pause + 0.137 * (i % 7))  # spread joins over the GOP
    return {"connects": count, "first_picture_p50_ms": _pct(firsts, 0.5), "first_picture_max_ms": _pct(firsts, 1.0),
            "live_p50_ms": _pct(lives, 0.5) if lives else None, "live_max_ms": _pct(lives, 1.0) if lives else None,
            "never_live": never_live, "failed": failed,
            "first_picture_mean_ms": round(statistics.fmean(firsts), 1) if firsts else None}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="viewer page, e.g. http://127.0.0.1:8080/?stream=cam")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency measuring time")
    parser.add_argument("--connects", type=int, default=5, help="fresh viewers timed for connect")
    args = parser.parse_args()
    async with Chromium() as browser:
        report = {"latency": await latency(browser, args.url, seconds=args.seconds),
                  "connect": await connects(browser, args.url, args.connects),
                  "connect_full_gathering": await connects(browser, _with_query(args.url, "gather=full"),
                                                           args.connects)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
