"""A live terminal table of a graph's metrics (``flowgraph top`` and ``flowgraph run --top``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.table import Table


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def render(snapshot: dict[str, Any]) -> Group:
    nodes = Table(title=f"{snapshot['graph']} · up {snapshot['uptime_s']:.0f}s", expand=True)
    numeric = ("rate/s", "p50 ms", "p99 ms", "age p50", "done", "errors")
    for column in ("node", "type", "stage", "device", "state", *numeric):
        nodes.add_column(column, justify="right" if column in numeric else "left")
    for name, n in snapshot["nodes"].items():
        island = n.get("counters", {}).get("island") or {}
        if island.get("isolation") == "ray":  # Ray actors: which Ray nodes, how many replicas alive
            alive = sum(1 for r in island.get("replicas", []) if r.get("alive"))
            where = (f"{n['device']} · Ray {alive}/{len(island.get('replicas', []))} on "
                     f"{','.join(i[:6] for i in island.get('ray_nodes', []))}")
        elif island:  # its own worker process: pid, idle CPU group, CPUs
            where = (f"{n['device']} · pid {island.get('pid')}" + (" · idle" if island.get("cpu_group") else "")
                     + (f" · CPUs {island['cpus']}" if island.get("cpus") else ""))
        else:
            where = n["device"]
        batch = n.get("batch") or {}
        state = n["state"] + (f" · batch {batch['mean']:.1f}" if batch.get("mean") else "")  # mean size so far
        nodes.add_row(name, n["type"], n["stage"], where, state, f"{n['rate_hz']:.1f}",
                      _ms(n["process_ms"]["p50"]), _ms(n["process_ms"]["p99"]),
                      _ms(n.get("capture_age_ms", {}).get("p50")), str(n["processed"]),
                      str(n["errors"]) if not n["errors"] else f"[red]{n['errors']}[/red]")
    edges = Table(expand=True)
    for column in ("edge", "type", "policy", "depth", "rate/s", "age p50 ms", "age p99 ms", "drops"):
        edges.add_column(column, justify="left" if column in ("edge", "type", "policy") else "right")
    for e in snapshot["edges"]:
        drops = str(e["drops"]) if not e["drops"] else f"[yellow]{e['drops']}[/yellow]"
        edges.add_row(f"{e['from']} → {e['to']}", e["type"], e["policy"] + (" fused" if e["fused"] else ""),
                      f"{e['depth']}/{e['size']}", f"{e['rate_hz']:.1f}", _ms(e["age_ms"]["p50"]),
                      _ms(e["age_ms"]["p99"]), drops)
    return Group(nodes, edges)


async def live_table(snapshot: Callable[[], dict[str, Any]], until: asyncio.Future[Any], period: float = 1.0) -> None:
    with Live(render(snapshot()), refresh_per_second=4, screen=False) as live:
        while not until.done():
            await asyncio.sleep(period)
            live.update(render(snapshot()))


async def watch_url(url: str, *, once: bool = False, period: float = 1.0) -> None:
    import aiohttp
    from rich.console import Console

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def fetch() -> dict[str, Any]:
            async with session.get(url) as response:
                response.raise_for_status()
                data: dict[str, Any] = await response.json()
                return data

        if once:
            import sys

            console = Console() if sys.stdout.isatty() else Console(width=200)  # pipes get full rows
            console.print(render(await fetch()))
            return
        with Live(render(await fetch()), refresh_per_second=4) as live:
            while True:
                await asyncio.sleep(period)
                live.update(render(await fetch()))
