"""Stream first: viewers' glass-to-glass latency with CV off and on (CV in worker processes, and on threads).

One stamped 720p RTMP publisher (libx264 veryfast zero-latency, GOP 60) and one headless Chromium viewer per case,
back to back in one run. The publisher runs at 29.97 fps by default: against the browser's 60 Hz refresh its frames
drift by 0.033 ms each, so over the default 33.4 s window every frame phase against the refresh occurs twice and
glass-to-glass figures no longer depend on where the publisher's clock happened to start (at exactly 30 fps the
phase is fixed for a run and rounds every figure of that run the same way, by up to 16.7 ms):

``cv-off``      ``graphs/live.yaml``: RTMP in, H.264 passthrough to viewers; no decode, no CV
``cv-process``  ``graphs/demo.yaml`` with its camera on the same publisher: decode → vibrio → moriarty → fuse →
                data channel, WebSocket, SQLite — vibrio and moriarty in worker processes, as shipped: ``nice: idle``
                (the idle CPU group), every CPU
``cv-thread``   the same with ``isolation: thread`` for vibrio and moriarty: the placement before islands
``cv-pinned``   worker processes, ``nice: idle``, ``cpus``: every CPU but the first (left to the video path)
``cv-nice10``   worker processes, ``nice: 10``: the placement before the idle group
``platform``    ``graphs/platform.yaml`` as shipped (CV as in ``cv-process``, vibrio's backend ``auto``, fuse → Redis
                and PostgreSQL, throw-away servers on loopback), the publisher as its one broadcaster

Figures per case: latency = the frame's expected display time − the capture time drawn into it (p50/p90/p99 over
``--seconds`` after a 2 s warm-up); decoded = the time the frame was decoded and ready to show − its capture time
(the same path without the wait for the display's next refresh: at exactly 30 fps CV off alone gave p99 36–55 ms
over thirteen runs of one morning, by that phase); first picture = offer → first frame, median of ``--connects``
fresh viewers; in-server = ingest socket → RTP sender per live packet (webrtc_out's ``in_server_ms``); analysed
fps = vibrio's and moriarty's processed messages per second over the latency window; CPU = the server process and
its workers, % of one core, and the video process alone. Everything shares this host: numbers move with its load
(printed).

    python tools/bench/stream_first.py [--seconds 33.4] [--fps 29.97] [--rounds 1] [--connects 6] [--cases ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _net import free_port
from _report import record
from _webrtc_common import (
    FLOWGRAPH,
    ROOT,
    Proc,
    cpu_seconds,
    publishing,
    run_browser_cases,
    tree,
    wait_http,
    wait_stream,
)

from flowgraph.nodes.webrtc import probe
from flowgraph.nodes.webrtc.browser import Chromium

#: Every CPU this process may use but the first (``cv-pinned``): the first is left to the video path.
_SPARE_FIRST = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[1:]) or "0"
#: graph, ingest node, its url (RTMP port filled in), the publisher's path, stream id, extra --set overrides
CASES = {
    "cv-off": ("graphs/live.yaml", "ingest", "/live", "/live/live", "live", []),  # STREAM_KEYS defaults to "live"
    "cv-process": ("graphs/demo.yaml", "camera", "/live/bench", "/live/bench", "demo", []),
    "cv-thread": ("graphs/demo.yaml", "camera", "/live/bench", "/live/bench", "demo",
                  ["vibrio.isolation=thread", "moriarty.isolation=thread"]),
    "cv-pinned": ("graphs/demo.yaml", "camera", "/live/bench", "/live/bench", "demo",
                  [f"vibrio.cpus={_SPARE_FIRST}", f"moriarty.cpus={_SPARE_FIRST}"]),
    "cv-nice10": ("graphs/demo.yaml", "camera", "/live/bench", "/live/bench", "demo",
                  ["vibrio.nice=10", "moriarty.nice=10"]),
    # the whole platform as shipped (vibrio backend auto, Redis and PostgreSQL stores), one broadcaster
    "platform": ("graphs/platform.yaml", "rtmp", "/live", "/live/benchkey", "main", []),
}
#: Cases whose graph writes to Redis and PostgreSQL (throw-away servers on loopback, started for the case).
DATABASES = {"platform"}


@contextlib.asynccontextmanager
async def server(case: str, tmp: Path) -> Any:
    graph, ingest, path, publish_path, stream, extra = CASES[case]
    rtmp, http = free_port(), free_port()
    sets = [f"{ingest}.url=rtmp://127.0.0.1:{rtmp}{path}", *extra]
    args = [FLOWGRAPH, "run", str(ROOT / graph), "--port", str(http)]
    for item in sets:
        args += ["--set", item]
    env = {"FLOWGRAPH_DEMO_DB": str(tmp / f"{case}.db")}
    with contextlib.ExitStack() as stores:
        if case in DATABASES:
            from _servers import Postgres, Redis

            redis = Redis()
            stores.callback(redis.stop)
            postgres = Postgres()
            stores.callback(postgres.stop)
            # loopback only: the listen check lets the platform's empty API/WS tokens through (the probe sends none)
            env.update({"STREAM_KEYS": f"{publish_path.rsplit('/', 1)[1]}={stream}", "API_TOKEN": "",
                        "WS_TOKEN": "", "HOST": "127.0.0.1", "REDIS_URL": redis.url, "POSTGRES_URL": postgres.url})
        proc = Proc(args, env=env, log=str(tmp / f"{case}.log"))
        try:
            base = f"http://127.0.0.1:{http}"
            await wait_http(base + "/api/webrtc/streams", timeout=120)
            yield base, f"rtmp://127.0.0.1:{rtmp}{publish_path}", stream, proc
        finally:
            proc.stop()


async def metrics(base: str) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(base + "/api/metrics") as resp:
        data: dict[str, Any] = await resp.json()
        return data


async def watch(base: str, pid: int, samples: list[dict[str, Any]], stop: asyncio.Event) -> None:
    """Every 0.5 s while a viewer watches: the server's figures and CPU time (with and without its workers)."""
    import psutil

    video = psutil.Process(pid)
    while not stop.is_set():
        with contextlib.suppress(Exception):
            snap = await metrics(base)
            viewers = snap["nodes"]["viewers"]["counters"]
            if viewers.get("viewers", 0) >= 1:
                times = video.cpu_times()
                samples.append({"t": time.monotonic(), "snap": snap, "cpu_all": cpu_seconds(tree(pid)),
                                "cpu_video": times.user + times.system})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    if len(samples) < 2:
        return {}
    first, last = samples[0], samples[-1]
    span = last["t"] - first["t"]
    nodes0, nodes1 = first["snap"]["nodes"], last["snap"]["nodes"]

    def rate(name: str) -> float | None:
        if name not in nodes1:
            return None
        return round((nodes1[name]["processed"] - nodes0[name]["processed"]) / span, 1)

    in_server = last["snap"]["nodes"]["viewers"]["counters"].get("in_server_ms", {})
    return {"in_server_p50_ms": in_server.get("p50"), "in_server_p99_ms": in_server.get("p99"),
            "vibrio_fps": rate("vibrio"), "moriarty_fps": rate("moriarty"),
            "cpu_all_pct": round(100 * (last["cpu_all"] - first["cpu_all"]) / span, 0),
            "cpu_video_pct": round(100 * (last["cpu_video"] - first["cpu_video"]) / span, 0),
            "modes": {n: nodes1[n]["mode"] for n in ("vibrio", "moriarty") if n in nodes1}}


async def run_case(case: str, browser: Chromium, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"case": case}
    async with server(case, tmp) as (base, rtmp_url, stream, proc), publishing(rtmp_url, fps=args.fps):
        await wait_stream(base, stream, timeout=60)
        await asyncio.sleep(3)  # CV warm: workers up, models loaded, first frames analysed
        samples: list[dict[str, Any]] = []
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(base, proc.pid, samples, stop))
        try:
            result["latency"] = await probe.latency(browser, f"{base}/", seconds=args.seconds)
        finally:
            stop.set()
            await watcher
        result.update(summarise(samples))
        result["connect"] = await probe.connects(browser, f"{base}/", args.connects)
        result["load"] = [round(x, 2) for x in os.getloadavg()]
    return result


def fmt(value: Any, digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}f}" if isinstance(value, float | int) else str(value)


def print_table(results: list[dict[str, Any]], fps: float) -> None:
    print(f"\nstream first: 720p at {fps:g} fps, RTMP → WebRTC, headless Chromium (ms unless noted)")
    head = (f"{'case':<17}{'g2g p50':>8}{'p90':>6}{'p99':>6}{'decoded p50':>12}{'p99':>6}{'skipped':>8}"
            f"{'first pic':>10}{'in-srv p50':>11}{'p99':>6}"
            f"{'vibrio fps':>11}{'moriarty fps':>13}{'CPU all %':>10}{'video %':>8}  load")
    print(head)
    for r in results:
        lat, con = r.get("latency") or {}, r.get("connect") or {}
        if "error" in r:
            print(f"{r['case']:<12} failed: {r['error']}")
            continue
        print(f"{r['case']:<17}{fmt(lat.get('p50_ms')):>8}{fmt(lat.get('p90_ms')):>6}{fmt(lat.get('p99_ms')):>6}"
              f"{fmt(lat.get('decoded_p50_ms')):>12}{fmt(lat.get('decoded_p99_ms')):>6}{fmt(lat.get('skipped_frames')):>8}"
              f"{fmt(con.get('first_picture_p50_ms')):>10}{fmt(r.get('in_server_p50_ms'), 2):>11}"
              f"{fmt(r.get('in_server_p99_ms'), 1):>6}{fmt(r.get('vibrio_fps'), 1):>11}"
              f"{fmt(r.get('moriarty_fps'), 1):>13}{fmt(r.get('cpu_all_pct')):>10}{fmt(r.get('cpu_video_pct')):>8}"
              f"  {r.get('load')}")
    by = _medians(results)
    if any(sum(r["case"] == case for r in results) > 1 for case in by):
        print("\nmedians over the rounds of each case:")
        for case, r in by.items():
            lat = r["latency"]
            print(f"{case:<18} g2g p50 {fmt(lat['p50_ms'])}  p90 {fmt(lat['p90_ms'])}  p99 {fmt(lat['p99_ms'])}  "
                  f"decoded p50 {fmt(lat['decoded_p50_ms'])}  p99 {fmt(lat['decoded_p99_ms'])}  "
                  f"vibrio fps {fmt(r.get('vibrio_fps'), 1)}  (rounds: {r['rounds']})")
    off, on, thread = by.get("cv-off"), by.get("cv-process"), by.get("cv-thread")
    if off and on:
        p50, p99 = on["latency"]["p50_ms"], on["latency"]["p99_ms"]
        first_on, first_off = on["connect"]["first_picture_p50_ms"], off["connect"]["first_picture_p50_ms"]
        print("\ngoals with CV on (cv-process):")
        print(f"  glass-to-glass p50 {fmt(p50)} ≤ 20: {_ok(p50 is not None and p50 <= 20)}; "
              f"p99 {fmt(p99)} ≤ 40: {_ok(p99 is not None and p99 <= 40)} "
              f"(CV off in this run: p50 {fmt(off['latency']['p50_ms'])}, p99 {fmt(off['latency']['p99_ms'])})")
        dec_on, dec_off = on["latency"].get("decoded_p99_ms"), off["latency"].get("decoded_p99_ms")
        if dec_on is not None and dec_off is not None:  # the same path without the display's refresh rounding
            gap50 = on["latency"]["decoded_p50_ms"] - off["latency"]["decoded_p50_ms"]
            print(f"  decoded p50/p99 CV on − CV off: {gap50:+.1f} / {dec_on - dec_off:+.1f} ms")
        if first_on is not None and first_off is not None:
            print(f"  first picture {fmt(first_on)} within 50 of CV off ({fmt(first_off)}): "
                  f"{_ok(first_on <= first_off + 50)}")
        if thread and thread.get("vibrio_fps") and on.get("vibrio_fps") is not None:
            for node in ("vibrio", "moriarty"):
                mine, theirs = on.get(f"{node}_fps"), thread.get(f"{node}_fps")
                if mine is not None and theirs:
                    print(f"  {node} analysed fps {mine} ≥ 90 % of thread placement ({theirs}): "
                          f"{_ok(mine >= 0.9 * theirs)}")


def _medians(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per case, the median of each figure over its rounds (a single round: its own figures)."""
    import statistics

    def median(values: list[Any]) -> Any:
        numbers = [v for v in values if isinstance(v, int | float)]
        return round(statistics.median(numbers), 2) if numbers else None

    merged: dict[str, dict[str, Any]] = {}
    for case in dict.fromkeys(r["case"] for r in results if "error" not in r):
        rounds = [r for r in results if r["case"] == case and "error" not in r]
        merged[case] = {
            "case": case, "rounds": len(rounds),
            "latency": {k: median([r["latency"].get(k) for r in rounds]) for k in ("p50_ms", "p90_ms", "p99_ms",
                                                                                 "decoded_p50_ms", "decoded_p99_ms")},
            "connect": {"first_picture_p50_ms": median([r["connect"].get("first_picture_p50_ms") for r in rounds])},
            **{k: median([r.get(k) for r in rounds]) for k in ("vibrio_fps", "moriarty_fps", "in_server_p99_ms")},
        }
    return merged


def _ok(flag: bool) -> str:
    return "met" if flag else "MISSED"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=33.4, help="latency window (33.4 s: two refresh sweeps)")
    parser.add_argument("--fps", type=float, default=29.97,
                        help="publisher frame rate; 29.97 sweeps the frames across the display's refresh phases")
    parser.add_argument("--connects", type=int, default=6)
    parser.add_argument("--cases", default="cv-off,cv-process,cv-thread,cv-pinned,cv-nice10,platform")
    parser.add_argument("--rounds", type=int, default=1, help="run the cases this many times, interleaved")
    args = parser.parse_args()
    results = await run_browser_cases(args.cases.split(",") * args.rounds,
                                      lambda case, browser, tmp: run_case(case, browser, tmp, args), log_tail=True)
    print_table(results, args.fps)
    record("stream_first", results)


if __name__ == "__main__":
    asyncio.run(main())
