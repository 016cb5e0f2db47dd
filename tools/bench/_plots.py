"""Plots for `flowgraph bench`: one PNG per benchmark whose raw results (``<name>.json``) are in the folder.

    python tools/bench/_plots.py RESULTS_DIR
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _bars(ax: Any, labels: list[str], series: dict[str, list[float | None]], ylabel: str) -> None:
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [x + i * width for x in range(len(labels))]
        ax.bar(xs, [v if v is not None else 0 for v in values], width, label=name)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))], labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def core_hops(rows: list[dict[str, Any]], ax: Any) -> str:
    labels = [f"{r['payload']}, {r['hops']} hop{'s' if r['hops'] > 1 else ''}" for r in rows]
    _bars(ax, labels, {"flowgraph p50": [r["flowgraph_p50_us"] for r in rows],
                       "flowgraph p99": [r["flowgraph_p99_us"] for r in rows],
                       "asyncio.Queue p50": [r["queue_p50_us"] for r in rows],
                       "asyncio.Queue p99": [r["queue_p99_us"] for r in rows]}, "µs per hop")
    return "Per-hop overhead"


def webrtc_latency(results: list[dict[str, Any]], ax: Any) -> str:
    ok = [r for r in results if r.get("latency")]
    _bars(ax, [r["case"] for r in ok], {q: [r["latency"].get(f"{q}_ms") for r in ok] for q in ("p50", "p90", "p99")},
          "glass-to-glass ms (720p30)")
    return "Glass-to-glass latency in headless Chromium"


def webrtc_connect(results: list[dict[str, Any]], ax: Any) -> str:
    ok = [r for r in results if r.get("connect")]
    _bars(ax, [r["case"] for r in ok], {
        "first picture p50": [r["connect"].get("first_picture_p50_ms") for r in ok],
        "live p50": [r["connect"].get("live_p50_ms") for r in ok],
        "first picture p50 (full ICE gathering)": [(r.get("connect_full") or {}).get("first_picture_p50_ms")
                                                  for r in ok]}, "ms from the offer")
    return "Viewer connect time"


def webrtc_viewers(rows: list[dict[str, Any]], ax: Any) -> str:
    for case in dict.fromkeys(r["case"] for r in rows):
        points = [(r["viewers"], r["cpu_per_viewer_pct"]) for r in rows
                  if r["case"] == case and r.get("cpu_per_viewer_pct") is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=case)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("viewers")
    ax.set_ylabel("% of one core per viewer")
    ax.legend(fontsize=8)
    return "Server CPU per viewer"


def ws_latency(rows: list[dict[str, Any]], ax: Any) -> str:
    for server in dict.fromkeys(r["server"] for r in rows):
        mine = [r for r in rows if r["server"] == server]
        ax.plot([r["clients"] for r in mine], [r["p99_ms"] for r in mine], marker="o", label=f"{server} p99")
        ax.plot([r["clients"] for r in mine], [r["p50_ms"] for r in mine], marker=".", ls="--", label=f"{server} p50")
    ax.set_xscale("log")
    ax.set_xlabel("WebSocket clients")
    ax.set_ylabel("fuse output → client, ms")
    ax.legend(fontsize=8)
    return "Analytics fan-out latency"


def vibrio(rows: list[dict[str, Any]], ax: Any) -> str:
    cases = list(dict.fromkeys(f"{r['width']}x{r['height']}, {r['people']}p" for r in rows))
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    _bars(ax, cases, {b: [next((r["ms"] for r in rows if r["backend"] == b and
                                f"{r['width']}x{r['height']}, {r['people']}p" == c), None) for c in cases]
                      for b in backends}, "ms per frame")
    return "vibrio: detector + tracker"


def moriarty(rows: list[dict[str, Any]], ax: Any) -> str:
    people = list(dict.fromkeys(r["people"] for r in rows))
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    _bars(ax, [f"{p} people" for p in people], {
        b: [next((r["p50_ms"] for r in rows if r["backend"] == b and r["people"] == p), None) for p in people]
        for b in backends}, "ms per frame (1280x720)")
    return "moriarty: pose + biomechanics"


def media_decode(fps: dict[str, float | None], ax: Any) -> str:
    names = [n for n, v in fps.items() if v]
    ax.barh(names, [fps[n] for n in names])
    ax.set_xlabel("frames per second (720p H.264 → RGB)")
    return "Decode throughput"


PLOTS: dict[str, list[Callable[[Any, Any], str]]] = {
    "core_hops": [core_hops], "webrtc_latency": [webrtc_latency, webrtc_connect], "webrtc_viewers": [webrtc_viewers],
    "ws_latency": [ws_latency], "vibrio": [vibrio], "moriarty": [moriarty], "media_decode": [media_decode],
}


def make_all(folder: Path) -> list[Path]:
    made = []
    for name, plotters in PLOTS.items():
        source = folder / f"{name}.json"
        if not source.exists():
            continue
        data = json.loads(source.read_text())
        for plotter in plotters:
            fig, ax = plt.subplots(figsize=(8, 4.5))
            try:
                title = plotter(data, ax)
            except (KeyError, TypeError, ValueError) as exc:
                print(f"{plotter.__name__}: cannot plot {source.name}: {exc!r}", file=sys.stderr)
                plt.close(fig)
                continue
            ax.set_title(title)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            path = folder / f"{plotter.__name__}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            made.append(path)
    return made


if __name__ == "__main__":
    for made_path in make_all(Path(sys.argv[1])):
        print(made_path)
