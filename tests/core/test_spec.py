"""YAML loading: locations, env substitution, overrides, normalised specs."""

from __future__ import annotations

import pytest

from flowgraph.errors import GraphError
from flowgraph.graph_schema import locate
from flowgraph.spec import parse_spec
from flowgraph.yaml_loader import load_yaml

GRAPH = """\
name: demo
defaults: {queue: 4}
nodes:
  t:
    node: tick
    params:
      hz: ${HZ:-5}
      stream_id: cam-${CAM}
  c:
    node: collect
    inputs:
      inp: {from: t/out, policy: drop_oldest, queue: 2}
"""


def test_locations_of_keys_and_values() -> None:
    doc = load_yaml(GRAPH, "g.yaml", env={"CAM": "1"})
    assert str(locate(doc, ["nodes", "t", "node"])) == "g.yaml:5:11"
    assert str(locate(doc, ["nodes", "t", "params", "hz"], key=True)) == "g.yaml:7:7"
    assert str(locate(doc, ["nodes", "c", "inputs", "inp", "queue"])) == "g.yaml:12:54"


def test_env_substitution_with_default_and_typing() -> None:
    spec = parse_spec(GRAPH, "g.yaml", env={"CAM": "7"})
    assert spec.nodes["t"].params == {"hz": 5, "stream_id": "cam-7"}
    spec = parse_spec(GRAPH, "g.yaml", env={"CAM": "7", "HZ": "12.5"})
    assert spec.nodes["t"].params["hz"] == 12.5


def test_env_value_is_never_parsed_as_yaml_structure() -> None:
    spec = parse_spec(GRAPH, "g.yaml", env={"CAM": "{evil: 1}"})
    assert spec.nodes["t"].params["stream_id"] == "cam-{evil: 1}"
    doc = load_yaml("key: ${X}\n", "g.yaml", env={"X": "[1, 2]"})
    assert doc["key"] == "[1, 2]"


def test_missing_env_names_variable_and_place() -> None:
    with pytest.raises(GraphError) as info:
        parse_spec(GRAPH, "g.yaml", env={})
    assert info.value.line().startswith("g.yaml:8:18: environment variable CAM is not set")


def test_overrides_set_params_device_and_nested_keys() -> None:
    spec = parse_spec(GRAPH, "g.yaml", ["t.hz=30", "t.params.extra.deep=x", "c.enabled=false"], env={"CAM": "1"})
    assert spec.nodes["t"].params["hz"] == 30
    assert spec.nodes["t"].params["extra"] == {"deep": "x"}
    assert spec.nodes["c"].enabled is False


def test_override_of_unknown_node_is_an_error() -> None:
    with pytest.raises(GraphError) as info:
        parse_spec(GRAPH, "g.yaml", ["nope.hz=3"], env={"CAM": "1"})
    assert info.value.line().startswith("--set:1:1: override names unknown node 'nope'")


def test_edges_short_long_and_list_forms() -> None:
    text = """\
nodes:
  a: {node: tick}
  b: {node: tick}
  c:
    node: collect
    inputs:
      inp: [a/out, {from: b/out, queue: 3, policy: block, feedback: false}]
"""
    spec = parse_spec(text)
    edges = spec.nodes["c"].inputs["inp"]
    assert [(e.source, e.port, e.queue, e.policy) for e in edges] == [("a", "out", None, None),
                                                                     ("b", "out", 3, "block")]
    assert edges[1].loc.line == 7


def test_defaults_and_graph_name_fallback() -> None:
    spec = parse_spec("nodes:\n  t: {node: tick, device: cpu}\n", "/x/hello.yaml")
    assert spec.name == "hello"
    assert spec.nodes["t"].device == "cpu"
    assert spec.nodes["t"].on_error.policy == "skip_message"
