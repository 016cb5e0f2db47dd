"""Secure by default: a graph that listens beyond loopback refuses to start unless every surface that changes
state has a credential or the YAML says it is open; errors name the YAML key; secrets are never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowgraph.access import is_loopback
from flowgraph.compile import compile_plan
from flowgraph.errors import GraphError, GraphErrors
from flowgraph.redact import redact_mapping, redact_url
from flowgraph.runtime import Runtime
from flowgraph.spec import load_spec
from flowgraph.testing import compile_text

ROOT = Path(__file__).resolve().parents[2]
STRONG = {"STREAM_KEYS": "k" * 16, "API_TOKEN": "a" * 16, "WS_TOKEN": "s" * 16}

VIEWERS = """name: exposed
server: {host: %s, port: 0%s}
nodes:
  cam: {node: ingest, params: {url: "testsrc://", stream_id: cam, width: 64, height: 64}}
  viewers: {node: webrtc_out, inputs: {video: cam/packets}}
"""


def errors_of(exc: GraphError | GraphErrors) -> list[str]:
    return [e.line() for e in exc.errors] if isinstance(exc, GraphErrors) else [exc.line()]


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.10", "example.com", ""))


def test_platform_without_credentials_refuses_naming_each_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**STRONG, "STREAM_KEYS": "live", "API_TOKEN": ""}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(GraphErrors) as caught:
        compile_plan(load_spec(ROOT / "graphs" / "platform.yaml"))
    lines = errors_of(caught.value)
    # the RTMP key: a well-known 4-character key on 0.0.0.0 is no credential; it points at the url
    assert any("platform.yaml:" in line and "rtmp://0.0.0.0:1935 listens on 0.0.0.0" in line
               and "only 4 characters" in line for line in lines), lines
    # the viewer list and the rules fall back on server.token, which is empty
    assert any("viewer list" in line and "server.token" in line for line in lines), lines
    assert any("changing rules" in line and "api_token or server.token" in line for line in lines), lines


def test_platform_with_strong_credentials_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in STRONG.items():
        monkeypatch.setenv(key, value)
    plan = compile_plan(load_spec(ROOT / "graphs" / "platform.yaml"))
    assert plan.server["host"] == "0.0.0.0"
    # the plan as served at /api/graph shows no secret
    shown = str(plan.to_dict())
    assert "a" * 16 not in shown and plan.to_dict()["server"]["token"] == "***"


def test_live_graph_is_loopback_by_default_and_refuses_the_default_key_in_public(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("HOST", "RTMP_HOST", "STREAM_KEYS", "API_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    compile_plan(load_spec(ROOT / "graphs" / "live.yaml"))
    monkeypatch.setenv("RTMP_HOST", "0.0.0.0")
    with pytest.raises(GraphError, match=r"live\.yaml:\d+:\d+: rtmp://0\.0\.0\.0:1935 listens on 0\.0\.0\.0, but "
                                         r"the credential for publishing .* has only 4 characters"):
        compile_plan(load_spec(ROOT / "graphs" / "live.yaml"))
    monkeypatch.setenv("STREAM_KEYS", "a-long-enough-key-1")
    compile_plan(load_spec(ROOT / "graphs" / "live.yaml"))


def test_exposed_server_error_names_the_server_key() -> None:
    with pytest.raises(GraphError) as caught:
        compile_text(VIEWERS % ("0.0.0.0", ""), file="g.yaml")
    assert caught.value.line().startswith("g.yaml:2:1: the graph server listens on 0.0.0.0 (g.yaml:2:16)")
    assert "server: {open: [viewers]}" in caught.value.line()


@pytest.mark.parametrize("extra", [", open: true", ", open: [viewers]", ", token: abcdefghijklmnop"])
def test_open_on_purpose_or_a_token_lets_it_start(extra: str) -> None:
    plan = compile_text(VIEWERS % ("0.0.0.0", extra))
    assert plan.nodes["viewers"]


def test_open_names_known_surfaces_only() -> None:
    with pytest.raises(GraphError, match=r"graph\.yaml:2:\d+: .*server/open"):
        compile_text(VIEWERS % ("0.0.0.0", ", open: [everything]"))


def test_run_host_override_is_checked_too() -> None:
    plan = compile_text(VIEWERS % ("127.0.0.1", ""))
    runtime = Runtime(plan, host="0.0.0.0", port=0)

    import asyncio

    with pytest.raises(GraphError, match=r"graph\.yaml:2:1: the graph server listens on 0\.0\.0\.0 \(--host:1:1\)"):
        asyncio.run(runtime.run(install_signals=False))


def test_a_numeric_secret_from_the_environment_is_not_echoed() -> None:
    text = """name: t
server: {port: 0}
nodes:
  src:
    node: ingest
    params:
      url: "whip://"
      token: ${WHIP_TOKEN}
"""
    with pytest.raises(GraphError) as caught:
        compile_text(text, env={"WHIP_TOKEN": "918273645501"})
    assert "918273645501" not in str(caught.value)
    assert "${WHIP_TOKEN}" in str(caught.value) and "graph.yaml:8:" in str(caught.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("whip://?token=s3cr3t", "whip://?token=***"),
    ("srt://relay:9000?mode=caller&passphrase=hunter2hunter2", "srt://relay:9000?mode=caller&passphrase=***"),
    ("rtsp://admin:pa55word@cam.local/stream1", "rtsp://admin:***@cam.local/stream1"),
    ("rtmp://0.0.0.0:1935/live/abcdef", "rtmp://0.0.0.0:1935/live/***"),
    ("https://cdn.example/live.m3u8?sig=abc&x=1", "https://cdn.example/live.m3u8?sig=***&x=1"),
    ("rtsp://cam:99999999999/x", "***"),
])
def test_urls_are_shown_without_their_secrets(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_settings_are_shown_without_their_secrets() -> None:
    shown = redact_mapping({"host": "0.0.0.0", "token": "abc", "read_token": "", "limits": {"max_connections": 3},
                            "tls": {"cert": "/c.pem", "key": "/k.pem"}})
    assert shown == {"host": "0.0.0.0", "token": "***", "read_token": "", "limits": {"max_connections": 3},
                     "tls": {"cert": "/c.pem", "key": "***"}}
