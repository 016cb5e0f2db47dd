"""The analytics surfaces under hostile input: rule templates that would reach attributes or cost megabytes,
bodies nested past the parser's recursion limit, non-finite times, WS frames nested 2,000 deep — each a 4xx (or a
WS close code) with a clear message, never a 500; and rules guarded by server.token when fuse has no token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from flowgraph.testing import running

from .test_api import platform

SERVER_TOKEN = "server-token-0123456789"


async def put_rules(http: aiohttp.ClientSession, url: str, body: Any, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, str) else json.dumps(body)
    async with http.put(url, data=data, headers={"Content-Type": "application/json", **headers}) as response:
        return response.status, await response.json()


def rule(description: str) -> list[dict[str, Any]]:
    return [{"id": "r", "metric": "speed_kmh", "above": 1, "description": description}]


@pytest.mark.parametrize(("body", "words"), [
    (rule("{value:>20000000}"), "width 20000000 of {value} is over 64"),
    (rule("{rule.__class__.__init__.__globals__}"), "attributes and indexes are not allowed"),
    (rule("{type[0]}"), "attributes and indexes are not allowed"),
    (rule("{value:{held_s}}"), "nested fields are not allowed"),
    (rule("{value:.1000f}"), "precision 1000"),
    (rule("x" * 600), "(602 characters)"),
    ([{"id": "r", "metric": "speed_kmh", "above": 1, "type": "t" * 100}], "bad value 'tttttttt"),
    ([{"id": f"r{i}", "metric": "speed_kmh", "above": 1} for i in range(201)], "at most 200"),
    ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ({"rules": [{"id": "r", "metric": "speed_kmh", "above": 1, "streams": [[[[[[[[["x"]]]]]]]]]}]}, "bad value"),
])
async def test_hostile_rules_are_refused_with_a_clear_4xx(compile_graph: Any, body: Any, words: str) -> None:
    async with running(compile_graph(platform(None))) as rt, aiohttp.ClientSession() as http:
        status, answer = await put_rules(http, f"{rt.server.url}/api/streams/cam1/rules", body)
        assert status == 400, answer
        assert words in answer["error"], answer
        assert len(json.dumps(answer)) < 2000  # the error quotes the input cut short
        status, rules = await put_rules(http, f"{rt.server.url}/api/streams/cam1/rules",
                                        rule("{type} at {value:.1f} km/h"))
        assert status == 200 and rules["rules"][0]["description"] == "{type} at {value:.1f} km/h"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e300", "-5", "0001-01-01T00:00:00"])
async def test_times_outside_what_a_store_can_hold_are_a_400(compile_graph: Any, tmp_path: Path, value: str) -> None:
    async with running(compile_graph(platform(tmp_path))) as rt, aiohttp.ClientSession() as http:
        async with http.get(f"{rt.server.url}/api/streams/cam1/analytics", params={"from": value}) as response:
            body = await response.json()
            assert response.status == 400 and body["param"] == "from" and "1970 to 9999" in body["expected"]


async def test_a_ws_frame_nested_2000_deep_closes_with_1007(compile_graph: Any) -> None:
    async with running(compile_graph(platform(None))) as rt, aiohttp.ClientSession() as http:
        url = rt.server.url.replace("http", "ws") + "/stream/cam1/analytics"
        async with http.ws_connect(url, max_msg_size=0) as ws:
            await ws.send_str("[" * 2000 + "]" * 2000)
            while not ws.closed:
                message = await ws.receive(5)
                assert message.type != aiohttp.WSMsgType.TEXT or "internal error" not in message.data
        assert ws.close_code in (1007, 1009)  # 4,000 bytes: over the 4,096 default only with framing
        async with http.get(f"{rt.server.url}/healthz") as response:
            assert response.status == 200


async def test_rules_fall_back_on_the_server_token(compile_graph: Any) -> None:
    text = platform(None).replace("name: api\n", f"name: api\nserver: {{token: {SERVER_TOKEN}}}\n")
    async with running(compile_graph(text)) as rt, aiohttp.ClientSession() as http:
        url = f"{rt.server.url}/api/streams/cam1/rules"
        status, _ = await put_rules(http, url, rule("{type}"))
        assert status == 401  # on main: 200, anyone could change the rules
        status, _ = await put_rules(http, url, rule("{type}"), SERVER_TOKEN)
        assert status == 200
        async with http.delete(url) as response:
            assert response.status == 401
