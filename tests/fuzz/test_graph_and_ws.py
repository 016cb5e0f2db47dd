"""Fuzzing graph YAML (documents generated from graph.schema.json, and real graphs mutated as text) and the
analytics WebSocket (query strings and frames). A graph is either compiled or refused with a GraphError that
names file:line:col; a WebSocket is refused before the upgrade with a 4xx, or closed with a code."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import aiohttp
import yaml
from hypothesis import given
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from flowgraph.compile import compile_plan
from flowgraph.errors import FlowgraphError, GraphError, GraphErrors
from flowgraph.graph_schema import graph_schema
from flowgraph.spec import parse_spec

from .live import LiveGraph, count, examples

ROOT = Path(__file__).resolve().parents[2]
GRAPHS = [p.read_text() for p in sorted((ROOT / "graphs").rglob("*.yaml"))]
ENV = {"STREAM_KEYS": "k" * 16,
       "INGEST_KEY": "k" * 16, "WHIP_TOKEN": "w" * 16, "API_TOKEN": "a" * 16, "WS_TOKEN": "s" * 16,
       "INPUT": "clip.mp4", "FLOWGRAPH_DEMO_DB": "/nonexistent/demo.db"}
SNIPPETS = st.sampled_from(["{", "}", "[", "]", ":", "- ", "&a ", "*a", "!!python/object:os.system ", "${X}",
                            "${HOST:-0.0.0.0}", "0.0.0.0", "\t", "\n", "'", '"', "~", "null", "1e999", "-1",
                            "open: true", "token: x", "port: 99999", "queue: 0", "policy: latest"])


def compile_or_refuse(text: str) -> None:
    try:
        compile_plan(parse_spec(text, "fuzz.yaml", env=ENV))
    except (GraphError, GraphErrors) as exc:
        errors = exc.errors if isinstance(exc, GraphErrors) else [exc]
        assert all((e.location is not None and e.location.file in ("fuzz.yaml", "--set")) or
                   "rules file" in e.message for e in errors), str(exc)[:300]
    except FlowgraphError:
        pass


@st.composite
def mutated_graphs(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(GRAPHS))
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:at] + draw(SNIPPETS | st.text(max_size=6)) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(1, 20)):]
    return text


_SCHEMA = graph_schema()


def _part(schema: dict[str, object]) -> st.SearchStrategy[object]:
    return from_schema({**schema, "$defs": _SCHEMA["$defs"]})


@st.composite
def schema_graphs(draw: st.DrawFn) -> str:
    """A real graph whose server section, wiring and failure policy come from graph.schema.json (generating whole
    documents from the schema costs seconds each: its open ``params`` and name patterns)."""
    node = _SCHEMA["$defs"]["node"]["properties"]
    document = {
        "name": "fuzz",
        "server": draw(_part(_SCHEMA["properties"]["server"])),
        "defaults": draw(_part(_SCHEMA["properties"]["defaults"])),
        "nodes": {
            "cam": {"node": "ingest", "params": {"url": "testsrc://", "stream_id": "cam"},
                    "on_error": draw(_part(node["on_error"])), "device": draw(_part(node["device"]))},
            "view": {"node": "webrtc_out", "inputs": {"video": draw(_part(_SCHEMA["$defs"]["edge"]))}},
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


@given(document=schema_graphs() | mutated_graphs())
@examples("graph_yaml")
def test_graph_yaml(document: str) -> None:
    count("graph_yaml")
    compile_or_refuse(document)


WS_QUERY = st.lists(st.tuples(st.sampled_from(["types", "type", "since", "token", "x", ""]),
                              st.sampled_from(["speed", "pose,speed", "colour", "-1", "0", "99999999999999999999",
                                               "nan", ""]) | st.text(max_size=12)), max_size=3)
FRAMES = st.one_of(
    st.sampled_from(['{"op": "ping"}', '{"op": "subscribe", "types": ["speed"]}', '{"op": "subscribe"}',
                     '{"op": "subscribe", "types": []}', '{"op": "subscribe", "types": [1, null, {}]}',
                     '{"op": 1}', "[]", "null", "{", "[" * 2000 + "]" * 2000, '{"a":' * 1500 + "1" + "}" * 1500]),
    st.text(max_size=200), st.binary(max_size=200))


async def ws_session(live: LiveGraph, query: list[tuple[str, str]], frames: list[str | bytes]) -> int:
    assert live.http is not None
    text = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
    url = live.url.replace("http", "ws") + "/stream/cam/analytics" + ("?" + text if text else "")
    try:
        async with live.http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
            for frame in frames:
                if ws.closed:
                    break
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
            await ws.close()
            return 101
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status


@given(query=WS_QUERY, frames=st.lists(FRAMES, max_size=4))
@examples("ws")
def test_ws_queries_and_frames(live: LiveGraph, query: list[tuple[str, str]], frames: list[str | bytes]) -> None:
    count("ws")
    status = live.call(lambda: ws_session(live, query, frames))
    assert status < 500
    live.check("ws")


def test_ws_still_streams(live: LiveGraph) -> None:
    async def one_message() -> str:
        assert live.http is not None
        async with live.http.ws_connect(live.url.replace("http", "ws") + "/stream/cam/analytics") as ws:
            message = await ws.receive(10)
            return str(message.data)

    assert '"type"' in live.call(one_message)
