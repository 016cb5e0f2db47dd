"""The REST API on the graph server: streams, history from the store (or the ring), opportunities, live rule
changes, OpenAPI, and JSON errors for bad parameters and unknown streams."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from flowgraph.nodes.analytics.ring import rings
from flowgraph.nodes.analytics.schemas import problems
from flowgraph.testing import running


def platform(tmp_path: Path | None, fuse: str = "") -> str:
    store = "" if tmp_path is None else f"""  db: {{node: store, inputs: {{analytics: fuse/analytics}},
       params: {{url: "sqlite:///{tmp_path}/api.db", batch_size: 20, flush_interval_ms: 20}}}}
"""
    return f"""name: api
nodes:
  src: {{node: synth_analytics, params: {{fps: 60, count: 0, speeds_kmh: [12, 26], knee_deg: 170}}}}
  fuse:
    node: fuse
    inputs: {{tracks: src/tracks, poses: src/poses}}
    params:
      rules: [{{id: sprint, type: high_speed, metric: speed_kmh, above: 20, for_s: 0.1}}]
      {fuse}
  ws: {{node: ws_out, inputs: {{analytics: fuse/analytics}}}}
{store}"""


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def test_streams_list_and_history_from_the_store(tmp_path: Path, compile_graph: Any) -> None:
    async with running(compile_graph(platform(tmp_path))) as rt, aiohttp.ClientSession() as http:
        base = rt.server.url
        async with http.ws_connect(base.replace("http", "ws") + "/stream/cam1/analytics") as ws:
            await ws.receive(5)
            await asyncio.sleep(0.6)
            status, body = await get(http, f"{base}/api/streams")
        assert status == 200
        (stream,) = body["streams"]
        assert stream["stream_id"] == "cam1" and stream["health"] == "ok" and stream["fps"] > 20
        assert stream["viewers"]["ws"] == 1 and "analytics" in stream["roles"] and "ws_out" in stream["roles"]
        assert stream["analytics"]["last_seq"] > 0
        status, one = await get(http, f"{base}/api/streams/cam1")
        assert status == 200 and one["stream_id"] == "cam1"

        status, body = await get(http, f"{base}/api/streams/cam1/analytics?type=speed&limit=5")
        assert status == 200 and body["source"].startswith("store:sqlite") and body["count"] == 5
        assert all(m["type"] == "speed" and problems(m) == [] for m in body["items"])
        status, everything = await get(http, f"{base}/api/streams/cam1/analytics?limit=10000")
        stamps = [m["payload"]["timestamp"] for m in everything["items"]]
        assert len(stamps) > 50 and stamps == sorted(stamps)
        t_from, t_to = stamps[10], stamps[30]
        iso_from = dt.datetime.fromtimestamp(t_from, dt.UTC).isoformat()
        status, window = await get(http, f"{base}/api/streams/cam1/analytics?from={iso_from}&to={t_to}&limit=10000")
        assert status == 200
        assert all(t_from - 1e-3 <= m["payload"]["timestamp"] <= t_to for m in window["items"])
        assert 15 <= window["count"] <= 25

        status, body = await get(http, f"{base}/api/streams/cam1/opportunities")
        assert status == 200 and body["count"] >= 1
        first = body["items"][0]
        assert first["type"] == "high_speed" and first["track_id"] == 2
        assert set(first) >= {"id", "stream_id", "type", "track_id", "confidence", "description", "metadata",
                              "created_at", "expires_at"}
        status, active = await get(http, f"{base}/api/streams/cam1/opportunities?active=true")
        assert status == 200 and active["count"] == body["count"]  # 30 s expiry: all still active


@pytest.mark.parametrize(("query", "param", "words"), [
    ("analytics?type=speed,colour", "type", "unknown analytics type 'colour'"),
    ("analytics?from=yesterday", "from", "bad value 'yesterday'"),
    ("analytics?from=20&to=10", "from", "from is after to"),
    ("analytics?limit=0", "limit", "bad value '0'"),
    ("analytics?limit=lots", "limit", "bad value 'lots'"),
    ("analytics?color=red", "color", "unknown query parameter 'color'"),
    ("opportunities?active=maybe", "active", "bad value 'maybe'"),
])
async def test_bad_query_parameters_are_400_json(compile_graph: Any, query: str, param: str, words: str) -> None:
    async with running(compile_graph(platform(None))) as rt, aiohttp.ClientSession() as http:
        await asyncio.sleep(0.1)
        status, body = await get(http, f"{rt.server.url}/api/streams/cam1/{query}")
        assert status == 400 and body["param"] == param and words in body["error"] and body["expected"]


async def test_unknown_streams_are_404_json(compile_graph: Any) -> None:
    async with running(compile_graph(platform(None))) as rt, aiohttp.ClientSession() as http:
        await asyncio.sleep(0.1)
        for path in ("", "/analytics", "/opportunities", "/rules"):
            status, body = await get(http, f"{rt.server.url}/api/streams/nope{path}")
            assert status == 404 and "unknown stream 'nope'" in body["error"] and body["streams"] == ["cam1"]
        status, body = await get(http, f"{rt.server.url}/api/streams?x=1")
        assert status == 400


async def test_without_a_store_history_comes_from_the_ring(compile_graph: Any) -> None:
    async with running(compile_graph(platform(None))) as rt, aiohttp.ClientSession() as http:
        await asyncio.sleep(0.3)
        status, body = await get(http, f"{rt.server.url}/api/streams/cam1/analytics?type=detection&limit=3")
        assert status == 200 and body["source"] == "buffer" and body["count"] == 3
        assert [m["seq"] for m in body["items"]] == sorted(m["seq"] for m in body["items"])
        assert all(problems(m) == [] for m in body["items"])


async def test_rules_change_while_the_stream_runs(compile_graph: Any, eventually: Any) -> None:
    async with running(compile_graph(platform(None))) as rt, aiohttp.ClientSession() as http:
        base = f"{rt.server.url}/api/streams/cam1/rules"
        ring = rings(rt.scope)
        assert await eventually(lambda: ring.get("cam1") is not None)
        status, body = await get(http, base)
        assert status == 200 and body["origin"] == "graph" and [r["id"] for r in body["rules"]] == ["sprint"]

        bad = {"rules": [{"id": "knee", "metric": "joint_angle.left_knee", "outside": [60, 178]}]}
        async with http.put(base, json=bad) as response:
            error = await response.json()
            assert response.status == 400 and error["path"] == ["rules", 0, "metric"]
            assert "unknown metric" in error["error"] and "joint_angles.<name>" in error["expected"]
        async with http.put(base, data=b"{not json") as response:
            assert response.status == 400 and "not JSON" in (await response.json())["error"]

        good = [{"id": "straight", "type": "straight_knee", "metric": "joint_angles.left_knee", "above": 160}]
        seq_before = ring.get("cam1").last_seq
        async with http.put(base, json=good) as response:
            body = await response.json()
            assert response.status == 200 and body["origin"] == "api" and body["rules"][0]["id"] == "straight"

        def fired() -> list[Any]:
            return [m for m in ring.get("cam1").since(seq_before) if m.type == "betting_opportunity"]

        assert await eventually(lambda: {m.payload["type"] for m in fired()} == {"straight_knee"})
        frames = [m.frame_id for m in ring.get("cam1").since(0) if m.type == "detection"]
        assert frames == list(range(frames[0], frames[0] + len(frames)))  # no frame lost across the change
        async with http.delete(base) as response:
            body = await response.json()
            assert response.status == 200 and body["origin"] == "graph" and body["rules"][0]["id"] == "sprint"


async def test_changing_rules_can_require_a_token(compile_graph: Any, eventually: Any) -> None:
    async with running(compile_graph(platform(None, "api_token: t0ken"))) as rt, aiohttp.ClientSession() as http:
        base = f"{rt.server.url}/api/streams/cam1/rules"
        assert await eventually(lambda: rings(rt.scope).get("cam1") is not None)
        rules = [{"id": "r", "metric": "people", "above": 5}]
        async with http.put(base, json=rules) as response:
            assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.put(base, json=rules, headers={"Authorization": "Bearer t0ken"}) as response:
            assert response.status == 200
        async with http.delete(base) as response:
            assert response.status == 401


async def test_openapi_document_is_served(compile_graph: Any) -> None:
    async with running(compile_graph(platform(None))) as rt, aiohttp.ClientSession() as http:
        status, doc = await get(http, f"{rt.server.url}/api/openapi.json")
        assert status == 200 and doc["openapi"] == "3.1.0"
        assert {"/api/streams", "/api/streams/{stream_id}/analytics", "/api/streams/{stream_id}/opportunities",
                "/api/streams/{stream_id}/rules", "/stream/{stream_id}/analytics", "/healthz"} <= set(doc["paths"])
        schemas = doc["components"]["schemas"]
        assert {"detection", "pose", "speed", "betting_opportunity", "Error", "Rules"} <= set(schemas)
        assert '"#/$defs/' not in str(schemas)  # references rebased into components
        for path in ("/healthz", "/metrics", "/api/metrics"):
            async with http.get(f"{rt.server.url}{path}") as response:
                assert response.status == 200
