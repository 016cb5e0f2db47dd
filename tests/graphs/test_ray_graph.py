"""graphs/variants/ray.yaml end to end on a local two-node Ray cluster (inside a network namespace, loopback only):
decode, vibrio and moriarty in Ray actors, two streams each pinned to a replica; a real headless Chromium viewer
gets video and overlays, WebSocket clients get both streams' analytics, the store holds them, and the metrics say
which Ray node ran each replica."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from rich.console import Console

from flowgraph.compile import compile_plan
from flowgraph.spec import load_spec
from flowgraph.testing import running
from flowgraph.top import render

ROOT = Path(__file__).resolve().parents[2]
# a smaller, slower picture than the shipped YAML: two streams of CV on a shared 2-core CI box
OVERRIDES = [f"{s}.{k}={v}" for s in ("north", "south") for k, v in (("width", 480), ("height", 270), ("fps", 12))]


async def _analytics(session: aiohttp.ClientSession, base: str, stream: str, want: set[str],
                     timeout: float) -> list[dict[str, Any]]:
    """Messages from WS /stream/{stream}/analytics until every type in ``want`` came (or ``timeout``)."""
    messages: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with session.ws_connect(base.replace("http", "ws") + f"/stream/{stream}/analytics") as ws:
        while not want <= {m["type"] for m in messages} and loop.time() < deadline:
            try:
                msg = await asyncio.wait_for(ws.receive(), max(0.1, deadline - loop.time()))
            except TimeoutError:
                break
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            messages.append(json.loads(msg.data))
    return messages


@pytest.mark.usefixtures("in_ray_netns")
async def test_ray_graph_end_to_end(ray_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from flowgraph.nodes.webrtc.browser import Chromium

    db = tmp_path / "ray.db"
    monkeypatch.setenv("FLOWGRAPH_RAY_DB", str(db))
    folder = ROOT / "flowgraph" / "nodes" / "analytics" / "contract"
    schemas = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    plan = compile_plan(load_spec(ROOT / "graphs" / "variants" / "ray.yaml", overrides=OVERRIDES))
    async with running(plan, ready_timeout=240) as rt:  # six actors import their models on a loaded box
        base = rt.server.url
        async with aiohttp.ClientSession() as session:
            want = {"detection", "pose", "speed"}
            north, south = await asyncio.gather(_analytics(session, base, "north", want, 150),
                                                _analytics(session, base, "south", want, 150))
            async with Chromium() as browser:
                page = await browser.open(base + "/?stream=south")
                await page.wait_for("window.fg && window.fg.frames > 30", timeout=90)
                await page.wait_for("window.fg.analytics > 0", timeout=60)
            async with session.get(base + "/api/metrics") as response:
                metrics = await response.json()
            async with session.get(base + "/api/graph") as response:
                graph = await response.json()
            async with session.get(base + "/metrics") as response:
                prometheus = await response.text()
            async with session.get(base + "/graph") as response:
                page_html = await response.text()
    assert rt.exit_code == 0
    for stream, messages in (("north", north), ("south", south)):
        assert want <= {m["type"] for m in messages}, f"{stream}: {[m['type'] for m in messages][:20]}"
        for message in messages:
            jsonschema.validate(message, schemas[message["type"]])
            assert message["payload"]["stream_id"] == stream
        assert any(m["payload"].get("tracks") for m in messages if m["type"] == "detection"), stream
    # where it ran: decode, vibrio and moriarty on Ray, both Ray nodes used, each stream on one replica
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}  # type: ignore[no-untyped-call]
    used: set[str] = set()
    for name in ("decoder", "vibrio", "moriarty"):
        island = metrics["nodes"][name]["counters"]["island"]
        assert island["isolation"] == "ray" and island["lost"] == 0 and island["worker_deaths"] == 0
        replicas = island["replicas"]
        assert len(replicas) == 2 and all(r["calls"] > 0 for r in replicas), (name, replicas)  # one stream each
        used |= set(island["ray_nodes"])
        assert graph["nodes"][name]["placement"]["replicas"] == 2
    assert used == alive and len(alive) == 2
    for node_id in alive:  # /metrics names the Ray node of each replica; /graph marks the placed nodes
        assert f'ray_node="{node_id}"' in prometheus
    assert 'flowgraph_ray_lost_total{graph="ray-two-streams",node="vibrio"} 0.0' in prometheus
    assert "vibrio · ray ×2 · cpu" in page_html and "isl.ray_nodes" in page_html
    table = Console(width=200, record=True)
    table.print(render(metrics))
    assert "cpu · Ray 2/2 on" in table.export_text()
    for name in ("north", "south", "viewers", "ws", "db"):
        assert "island" not in metrics["nodes"][name]["counters"]
    edge = next(e for e in metrics["edges"] if e["to"] == "vibrio/frames")
    assert edge["policy"] == "latest" and edge["size"] == 1 and edge["drops"] > 0  # CV skips frames, counted
    rows = sqlite3.connect(db).execute("select count(distinct stream_id) from analytics").fetchone()[0]
    assert rows == 2
