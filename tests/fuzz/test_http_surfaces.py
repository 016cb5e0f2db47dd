"""Fuzzing the HTTP surfaces of a running graph: viewer offers (a real Chromium offer, mutated), WHEP and WHIP
bodies, REST query strings, rules bodies and templates. Every answer is below 500; nothing is logged as an
unhandled error; a valid request is still answered afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from flowgraph.nodes.analytics.rules import RULES_SCHEMA
from flowgraph.nodes.analytics.templates import FIELDS

from .conftest import WHIP_TOKEN
from .live import LiveGraph, count, examples

OFFER = (Path(__file__).with_name("data") / "chromium_offer.sdp").read_text().replace("\n", "\r\n")
LINES = OFFER.split("\r\n")
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=4), max_leaves=20)
TOKENS = st.sampled_from(["v=0", "m=video", "x", "-1", "99999999999", "a=setup:bogus", "a=rtpmap:", "H264/90000",
                          "UDP/TLS/RTP/SAVPF", "a=fmtp:102 ", "\x00", "é", "a=mid:", "c=IN IP6 ::", "a=ssrc:"])


@st.composite
def mutated_offers(draw: st.DrawFn) -> str:
    """A real Chromium offer with a few lines replaced, dropped, duplicated or cut, or fields swapped."""
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["replace", "drop", "dup", "cut", "field", "number"]))
        if action == "replace":
            lines[i] = draw(TOKENS) + draw(st.text(max_size=12))
        elif action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        elif action == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif action == "field":
            parts = lines[i].split(" ")
            parts[draw(st.integers(0, len(parts) - 1))] = draw(TOKENS)
            lines[i] = " ".join(parts)
        else:
            lines[i] = lines[i] + str(draw(st.integers(-2**63, 2**64)))
        if not lines:
            lines = ["v=0"]
    return "\r\n".join(lines)


def valid_viewer_still_answered(live: LiveGraph) -> None:
    status, body = live.request("POST", "/api/stream/connect", json={"offer": OFFER, "stream_id": "cam"})
    assert status == 200, body[:300]
    viewer = json.loads(body)["location"]
    assert live.request("DELETE", viewer)[0] == 200


@given(offer=mutated_offers(), whep=st.booleans())
@examples("sdp")
def test_viewer_offers(live: LiveGraph, offer: str, whep: bool) -> None:
    count("sdp")
    if whep:
        status, body = live.request("POST", "/whep/cam", data=offer.encode("utf-8", "surrogatepass"),
                                    headers={"Content-Type": "application/sdp"})
    else:
        status, body = live.request("POST", "/api/stream/connect", json={"offer": offer, "stream_id": "cam"})
    assert status < 500, body[:300]
    if status in (200, 201):  # a mutation aiortc still accepts: end that viewer again
        location = json.loads(body)["location"] if not whep else None
        if location:
            live.request("DELETE", location)
    live.check("viewer offer")


def test_viewer_offers_leave_the_server_serving(live: LiveGraph) -> None:
    valid_viewer_still_answered(live)


@given(body=st.binary(max_size=2048) | mutated_offers().map(str.encode),
       content_type=st.sampled_from(["application/sdp", "text/plain", "application/json", ""]),
       token=st.sampled_from([WHIP_TOKEN, "", "wrong", WHIP_TOKEN + "x"]))
@examples("whip")
def test_whip_bodies(live: LiveGraph, body: bytes, content_type: str, token: str) -> None:
    count("whip")
    headers = {"Content-Type": content_type} if content_type else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    status, answer = live.request("POST", "/whip/cam", data=body, headers=headers)
    assert status < 500, answer[:300]
    if status == 201:
        live.call(live.rt.runners["pub"].node.whip.close)  # a mutated offer that still worked: hang up
    live.check("whip body")


QUERY_KEYS = st.sampled_from(["from", "to", "type", "types", "limit", "active", "since", "x", "", "from[]"])
QUERY_VALUES = (st.sampled_from(["nan", "inf", "-inf", "1e300", "-1", "0", "1.5", "2026-12-05T18:00:00Z",
                                 "speed", "speed,pose", "true", "10000", "10001", "9" * 400, "%00", "\u0000"])
                | st.text(max_size=30))


@given(path=st.sampled_from(["/api/streams", "/api/streams/cam", "/api/streams/cam/analytics",
                             "/api/streams/cam/opportunities", "/api/streams/cam/rules", "/api/streams/nope",
                             "/api/webrtc/streams", "/api/webrtc/config", "/api/graph", "/api/metrics",
                             "/metrics", "/healthz"]),
       query=st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=4))
@examples("rest")
def test_rest_query_strings(live: LiveGraph, path: str, query: list[tuple[str, str]]) -> None:
    count("rest")
    text = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
    status, body = live.request("GET", path + ("?" + text if text else ""))
    assert status < 500, body[:300]
    live.check("REST query")


TEMPLATES = st.lists(st.one_of(st.text(max_size=8), st.sampled_from([f"{{{f}}}" for f in FIELDS]),
                               st.builds(lambda f, spec: f"{{{f}:{spec}}}", st.sampled_from(FIELDS),
                                         st.text(max_size=12)),
                               st.sampled_from(["{", "}", "{{", "}}", "{rule.__class__}", "{value[0]}",
                                                "{value:>20000000}", "{value!a}", "{0}", "{}"])),
                     max_size=6).map("".join)


@st.composite
def rules_bodies(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["schema", "template", "json"]))
    if kind == "json":
        return draw(JSON)
    rules: list[Any] = draw(from_schema({**RULES_SCHEMA, "maxItems": 3}))
    if kind == "template" and rules and isinstance(rules[0], dict):
        rules[0]["description"] = draw(TEMPLATES)
    return draw(st.sampled_from([rules, {"rules": rules}]))


@given(body=rules_bodies(), method=st.sampled_from(["PUT", "PUT", "DELETE", "GET"]))
@examples("rules")
def test_rules_bodies_and_templates(live: LiveGraph, body: Any, method: str) -> None:
    count("rules")
    data = json.dumps(body, allow_nan=True)
    status, answer = live.request(method, "/api/streams/cam/rules", data=data,
                                  headers={"Content-Type": "application/json"})
    assert status < 500, answer[:300]
    if status == 200 and method == "PUT":
        # whatever was accepted renders within bounds when it fires
        rules = json.loads(answer)["rules"]
        assert all(len(r["description"]) <= 500 for r in rules)
    live.check("rules body")


def test_rules_still_answered(live: LiveGraph) -> None:
    good = [{"id": "sprint", "metric": "speed_kmh", "above": 20, "description": "{type} {value:.1f}"}]
    status, body = live.request("PUT", "/api/streams/cam/rules", json=good)
    assert status == 200, body
    status, body = live.request("GET", "/api/streams/cam/analytics?limit=5")
    assert status == 200, body
