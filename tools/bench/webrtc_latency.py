"""Glass-to-glass latency and viewer connect time, flowgraph beside a minimal aiortc server and Janus.

One stamped 720p30 publisher (libx264 veryfast zero-latency, 1.6 Mbit/s, GOP 60) per case; latency = the frame's
expected display time in headless Chromium − the capture time drawn into the frame just before the encoder.
Connect = offer created → first picture, and → live (a frame within 80 ms of the publisher), for fresh viewers
joining at spread-out GOP positions, with flowgraph's page (posts its offer at the first host candidate) and with
complete ICE gathering first (``gather=full``). Everything runs on this host; numbers move with its load.

    python tools/bench/webrtc_latency.py [--seconds 10] [--connects 6] [--cases minimal,janus,sfu,flowgraph,transcode]

``sfu`` is flowgraph's own page and signalling with the media through ``sfu_out`` and two Janus instances.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import record, unavailable_row
from _webrtc_common import (
    flowgraph_server,
    janus_server,
    minimal_server,
    publishing,
    run_browser_cases,
    wait_stream,
)

from flowgraph.nodes.webrtc import probe
from flowgraph.nodes.webrtc.browser import Chromium

WEB = Path(__file__).resolve().parents[2] / "flowgraph" / "nodes" / "webrtc" / "web"


@contextlib.asynccontextmanager
async def janus_page_server() -> Any:
    """Serves janus_viewer.html and the stamp reader for the Janus case."""
    app = web.Application()

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(Path(__file__).with_name("janus_viewer.html"))

    app.router.add_get("/", page)
    app.router.add_static("/webrtc", WEB)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def run_case(name: str, browser: Chromium, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"case": name}
    if name == "janus":
        async with janus_server(tmp=tmp) as (api, rtp_url, _), janus_page_server() as pages, publishing(rtp_url):
            await asyncio.sleep(3)
            url = f"{pages}/?janus={api}"
            result["latency"] = await probe.latency(browser, url, seconds=args.seconds)
            result["connect"] = await probe.connects(browser, url, args.connects)
        return result
    if name == "sfu":   # flowgraph's page and signalling, media through sfu_out's two Janus instances
        server: Any = flowgraph_server("sfu", tmp=tmp)
    elif name.startswith("minimal"):
        server = minimal_server("passthrough", tmp=tmp)
    else:
        kind = "transcode" if name.startswith("transcode") else "passthrough"
        join = "keyframe" if name.endswith("keyframe") else "gop"
        server = flowgraph_server(kind, join=join, tmp=tmp)
    async with server as (base, rtmp_url, _), publishing(rtmp_url):
        if name.startswith("minimal") or name == "sfu":
            await asyncio.sleep(3)
        else:
            await wait_stream(base, "bench")
        url = f"{base}/"
        if not name.endswith("keyframe"):
            result["latency"] = await probe.latency(browser, url, seconds=args.seconds)
        result["connect"] = await probe.connects(browser, url, args.connects)
        result["connect_full"] = await probe.connects(browser, url + "?gather=full", args.connects)
    return result


def fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.0f}" if isinstance(value, float | int) else str(value)


def print_tables(results: list[dict[str, Any]]) -> None:
    print("\nglass-to-glass latency, 720p30 (ms; expected display time − capture stamp)")
    print(f"{'server':<24}{'frames':>8}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'recv→disp p50':>15}")
    for r in results:
        if "error" in r:
            print(unavailable_row(r["case"], r["error"]))
            continue
        lat = r.get("latency")
        if lat:
            print(f"{r['case']:<24}{lat['frames']:>8}{fmt(lat['p50_ms']):>8}{fmt(lat['p90_ms']):>8}"
                  f"{fmt(lat['p99_ms']):>8}{fmt(lat['max_ms']):>8}{fmt(lat['receive_to_display_p50_ms']):>15}")
    print("\nviewer connect (ms from the offer; first picture / live within 80 ms), p50 and max")
    for r in results:
        if "error" in r:
            print(unavailable_row(r["case"], r["error"]))
    print(f"{'server':<24}{'page':<16}{'first p50':>10}{'first max':>10}{'live p50':>10}{'live max':>10}"
          f"{'never live':>11}{'failed':>8}")
    for r in results:
        for key, label in (("connect", "fast offer"), ("connect_full", "full gathering")):
            c = r.get(key)
            if c:
                page = "janus page" if r["case"] == "janus" else label
                print(f"{r['case']:<24}{page:<16}{fmt(c['first_picture_p50_ms']):>10}"
                      f"{fmt(c['first_picture_max_ms']):>10}{fmt(c['live_p50_ms']):>10}{fmt(c['live_max_ms']):>10}"
                      f"{c['never_live']:>11}{c['failed']:>8}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connects", type=int, default=6)
    parser.add_argument("--cases", default="minimal,janus,sfu,flowgraph,transcode,transcode-keyframe")
    args = parser.parse_args()
    results = await run_browser_cases(args.cases.split(","),
                                      lambda name, browser, tmp: run_case(name, browser, tmp, args))
    print_tables(results)
    record("webrtc_latency", results)


if __name__ == "__main__":
    asyncio.run(main())
