"""Rule parsing and validation: good rules, every kind of mistake, line numbers in graphs and rules files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowgraph.errors import GraphError, GraphErrors, ParamsError
from flowgraph.nodes.analytics.rules import Rule, load_rules_file, parse_rules


def test_parses_each_condition() -> None:
    rules = parse_rules([
        {"id": "sprint", "type": "high_speed", "metric": "speed_kmh", "above": 20, "for_s": 0.5},
        {"id": "slow", "metric": "speed_mps", "below": 0.5},
        {"id": "knee", "type": "extreme_pose", "metric": "joint_angles.left_knee", "outside": [60, 178]},
        {"id": "calm", "metric": "metrics.cadence_spm", "inside": [150, 190], "streams": ["cam1"]},
        {"id": "burst", "metric": "speed_kmh", "change": {"window_s": 1.0, "by": 8, "direction": "rise"}},
        {"id": "crowd", "metric": "people", "above": 10, "enabled": False},
    ])
    assert [r.condition for r in rules] == ["above", "below", "outside", "inside", "change", "above"]
    sprint, slow, knee, calm, burst, crowd = rules
    assert sprint.type == "high_speed" and sprint.low == 20 and sprint.for_s == 0.5
    assert slow.type == "slow" and slow.high == 0.5
    assert (knee.low, knee.high, knee.source) == (60, 178, "pose")
    assert calm.applies_to("cam1") and not calm.applies_to("cam2")
    assert burst.window_s == 1.0 and burst.by == 8 and burst.max_gap_s >= 1.0
    assert crowd.source == "stream" and not crowd.applies_to("cam1")
    assert sprint.describe() == "speed_kmh > 20"


def test_rules_round_trip_through_their_dict_form() -> None:
    rules = parse_rules([{"id": "a", "metric": "speed_kmh", "outside": [1, 2], "streams": ["x"]},
                         {"id": "b", "metric": "speed_kmh", "change": {"window_s": 2, "by": 3}}])
    assert parse_rules([r.to_dict() for r in rules]) == rules
    assert isinstance(rules[0], Rule) and hash(rules[0]) == hash(parse_rules([rules[0].to_dict()])[0])


@pytest.mark.parametrize(("rule", "path", "words"), [
    ({"id": "a", "metric": "speed_kmh"}, ("rules", 0), "no condition"),
    ({"id": "a", "metric": "speed_kmh", "above": 1, "below": 2}, ("rules", 0), "several conditions"),
    ({"id": "a", "metric": "velocity", "above": 1}, ("rules", 0, "metric"), "unknown metric"),
    ({"id": "a", "metric": "joint_angles.", "above": 1}, ("rules", 0, "metric"), "unknown metric"),
    ({"id": "a", "metric": "speed_kmh", "above": "fast"}, ("rules", 0, "above"), "bad value"),
    ({"id": "a", "metric": "speed_kmh", "outside": [5, 1]}, ("rules", 0, "outside"), "empty range"),
    ({"id": "a", "metric": "speed_kmh", "outside": [5]}, ("rules", 0, "outside"), "bad value"),
    ({"id": "a", "metric": "speed_kmh", "above": 1, "for_s": -1}, ("rules", 0, "for_s"), "bad value"),
    ({"id": "a", "metric": "speed_kmh", "above": 1, "speed": 3}, ("rules", 0, "speed"), "unknown rule key"),
    ({"metric": "speed_kmh", "above": 1}, ("rules", 0), "missing 'id'"),
    ({"id": "no spaces", "metric": "speed_kmh", "above": 1}, ("rules", 0, "id"), "bad rule id"),
    ({"id": "a", "metric": "speed_kmh", "change": {"window_s": 1, "by": -2}}, ("rules", 0, "change", "by"),
     "positive"),
    ({"id": "a", "metric": "speed_kmh", "change": {"window_s": 0, "by": 2}}, ("rules", 0, "change", "window_s"),
     "bad value"),
    ({"id": "a", "metric": "speed_kmh", "change": {"window_s": 1, "by": 2, "direction": "up"}},
     ("rules", 0, "change", "direction"), "bad value"),
    ({"id": "a", "metric": "speed_kmh", "above": 1, "description": "{speed}"}, ("rules", 0, "description"),
     "unknown field"),
    ({"id": "a", "metric": "speed_kmh", "above": 1, "description": "{value:.2q}"}, ("rules", 0, "description"),
     "bad description"),
])
def test_mistakes_name_the_key(rule: dict[str, Any], path: tuple[Any, ...], words: str) -> None:
    with pytest.raises(ParamsError) as info:
        parse_rules([rule])
    assert info.value.path == path
    assert words in info.value.message
    assert info.value.expected


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ParamsError) as info:
        parse_rules([{"id": "a", "metric": "speed_kmh", "above": 1}, {"id": "a", "metric": "people", "above": 3}])
    assert info.value.path == ("rules", 1, "id") and "duplicate" in info.value.message


def test_graph_validation_points_at_the_yaml_line(compile_graph: Any) -> None:
    text = """name: g
nodes:
  src: {node: synth_analytics}
  fuse:
    node: fuse
    inputs: {tracks: src/tracks}
    params:
      rules:
        - id: sprint
          metric: speed_kmh
          above: 20
        - id: knee
          metric: joint_angles.left_knee
          outside: [170, 60]
"""
    with pytest.raises((GraphError, GraphErrors)) as info:
        compile_graph(text)
    message = str(info.value)
    assert "graph.yaml:14:" in message and "empty range" in message and "low < high" in message


def test_graph_validation_reports_an_unknown_metric(compile_graph: Any) -> None:
    text = """name: g
nodes:
  src: {node: synth_analytics}
  fuse:
    node: fuse
    inputs: {tracks: src/tracks}
    params:
      rules: [{id: a, metric: sped_kmh, above: 1}]
"""
    with pytest.raises((GraphError, GraphErrors)) as info:
        compile_graph(text)
    assert "graph.yaml:8:" in str(info.value) and "unknown metric 'sped_kmh'" in str(info.value)


def test_rules_file_errors_name_the_file_line(tmp_path: Path, compile_graph: Any) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: a\n    metric: speed_kmh\n    above: 20\n  - id: b\n    metric: speed_kmh\n"
                     "    abve: 3\n")
    with pytest.raises(GraphError) as info:
        load_rules_file(rules)
    assert f"{rules}:7:" in str(info.value) and "unknown rule key 'abve'" in str(info.value)
    text = f"""name: g
nodes:
  src: {{node: synth_analytics}}
  fuse:
    node: fuse
    inputs: {{tracks: src/tracks}}
    params: {{rules_file: {rules}}}
"""
    with pytest.raises((GraphError, GraphErrors)) as graph_info:
        compile_graph(text)
    assert "graph.yaml:7:" in str(graph_info.value) and f"{rules}:7:" in str(graph_info.value)


def test_rules_file_as_a_plain_list(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text('[{"id": "a", "metric": "people", "above": 2}]')
    assert load_rules_file(path)[0].metric == "people"
    with pytest.raises(GraphError) as info:
        load_rules_file(tmp_path / "missing.yaml")
    assert "cannot read rules file" in str(info.value)


def test_rules_and_rules_file_together_are_refused(tmp_path: Path, compile_graph: Any) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("[]\n")
    text = f"""name: g
nodes:
  src: {{node: synth_analytics}}
  fuse:
    node: fuse
    inputs: {{tracks: src/tracks}}
    params: {{rules_file: {path}, rules: [{{id: a, metric: people, above: 1}}]}}
"""
    with pytest.raises((GraphError, GraphErrors)) as info:
        compile_graph(text)
    assert "not both" in str(info.value)
