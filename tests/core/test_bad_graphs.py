"""Every malformed graph under bad_graphs/ is rejected with exit code 2 and one line naming file:line:col."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowgraph.cli import main

HERE = Path(__file__).parent / "bad_graphs"

# file -> (line, column, fragment of the message)
EXPECTED: dict[str, tuple[int, int, str]] = {
    "bad_defaults_policy.yaml": (2, 11, "bad value 'fastest' for defaults/policy"),
    "bad_device.yaml": (4, 13, "bad value 'gpu' for nodes/t/device"),
    "bad_enum_param.yaml": (5, 14, "node 's': bad value 'lazy' for mode"),
    "bad_node_name.yaml": (2, 3, "bad node name 'my node'"),
    "bad_on_error.yaml": (4, 15, 'bad value for nodes/t/on_error'),
    "bad_on_error_object.yaml": (4, 15, "nodes/t/on_error: 'policy' is a required property"),
    "bad_param_range.yaml": (4, 14, "node 't': bad value -1 for hz"),
    "bad_param_type.yaml": (5, 7, "node 't': bad value 'fast' for hz"),
    "bad_ref_format.yaml": (5, 19, "bad value 't.out' for nodes/c/inputs/inp"),
    "bad_server_port.yaml": (2, 9, 'bad value 70000 for server/port'),
    "complex_key.yaml": (2, 5, 'mapping keys must be plain scalars'),
    "cuda_on_cpu_only_node.yaml": (4, 13, "node 't': device 'cuda:0' requested but this node type runs "),
    "cycle.yaml": (5, 27, 'cycle a -> b -> a'),
    "disabled_source.yaml": (5, 19, "input c/inp comes from disabled node 't'"),
    "duplicate_node_name.yaml": (4, 3, "duplicate key 't' (first defined at line 2)"),
    "duplicate_param_key.yaml": (6, 7, "duplicate key 'hz' (first defined at line 5)"),
    "edge_missing_from.yaml": (6, 12, "nodes/c/inputs/inp: 'from' is a required property"),
    "edge_unknown_key.yaml": (6, 26, "unknown key 'size' in nodes/c/inputs/inp"),
    "empty.yaml": (1, 1, 'the graph file is empty'),
    "exposed_viewer_list.yaml": (1, 1, "the graph server listens on 0.0.0.0"),
    "exposed_weak_stream_key.yaml": (4, 19, "rtmp://0.0.0.0:1935 listens on 0.0.0.0, but the credential for"),
    "env_missing.yaml": (5, 18, 'environment variable FLOWGRAPH_TEST_SURELY_UNSET is not set'),
    "feedback_not_bool.yaml": (6, 36, "bad value 'maybe' for nodes/c/inputs/inp/feedback"),
    "huge_queue.yaml": (6, 33, 'bad value 10000000 for nodes/c/inputs/inp/queue'),
    "input_not_string.yaml": (5, 19, 'bad value for nodes/c/inputs/inp'),
    "input_on_source.yaml": (5, 14, "node 'u' (tick) has no input 'inp'"),
    "latest_with_queue.yaml": (6, 12, "queue 4 contradicts policy 'latest' (always one message)"),
    "list_input_bad_item.yaml": (9, 11, "bad value 'u' for nodes/c/inputs/inp/1"),
    "missing_node_type.yaml": (3, 5, "nodes/t: 'node' is a required property"),
    "missing_nodes.yaml": (1, 1, "graph: 'nodes' is a required property"),
    "negative_queue.yaml": (6, 33, 'bad value -1 for nodes/c/inputs/inp/queue'),
    "node_body_is_string.yaml": (2, 6, "bad value 'tick' for nodes/t"),
    "node_name_starts_with_digit.yaml": (2, 3, "bad node name '1t'"),
    "nodes_empty.yaml": (2, 8, 'the graph has no nodes'),
    "nodes_is_list.yaml": (2, 3, "bad value ['t', 'c'] for nodes"),
    "not_a_mapping.yaml": (1, 1, "a graph file must be a mapping with a 'nodes' key"),
    "params_not_mapping.yaml": (4, 13, 'bad value 5 for nodes/t/params'),
    "queue_not_integer.yaml": (6, 33, "bad value 'many' for nodes/c/inputs/inp/queue"),
    "recursive_alias.yaml": (1, 8, 'YAML syntax error: found unconstructable recursive node'),
    "required_input_missing.yaml": (3, 3, "node 'c' (collect): required input 'inp' is not connected"),
    "self_loop.yaml": (4, 19, 'cycle a -> a'),
    "type_mismatch.yaml": (6, 15, 'type mismatch: t/out sends Data but probe/frames takes Video'),
    "type_mismatch_through_passthrough.yaml": (6, 22, 'type mismatch: p/out sends Data but probe/frames takes Video'),
    "unknown_input_port.yaml": (6, 7, "node 'c' (collect) has no input 'input'"),
    "unknown_node_key.yaml": (4, 5, "unknown key 'param' in nodes/t"),
    "unknown_node_type.yaml": (3, 11, "unknown node type 'tik' for node 't'"),
    "unknown_param.yaml": (6, 7, "node 't': unknown param 'rate'"),
    "unknown_policy.yaml": (6, 34, "bad value 'newest' for nodes/c/inputs/inp/policy"),
    "unknown_source_node.yaml": (5, 19, "input c/inp names unknown node 'ticker'"),
    "unknown_source_port.yaml": (5, 19, "node 't' (tick) has no output 'output'"),
    "unknown_top_key.yaml": (2, 1, "unknown key 'nodez' in graph"),
    "yaml_control_character.yaml": (1, 10, "YAML error: character U+0001 is not allowed in YAML text"),
    "yaml_bad_indent.yaml": (4, 4, "YAML syntax error: expected <block end>, but found '<block m"),
    "yaml_tab_indent.yaml": (3, 1, "YAML syntax error: found character '\\t' that cannot start an"),
    "yaml_unclosed_flow.yaml": (3, 3, "YAML syntax error: expected ',' or '}', but got '<scalar>'"),
    "yaml_unterminated_string.yaml": (4, 1, 'YAML syntax error: found unexpected end of stream'),
    "zero_queue.yaml": (6, 33, 'bad value 0 for nodes/c/inputs/inp/queue'),}


def test_every_bad_graph_has_an_expectation() -> None:
    assert sorted(p.name for p in HERE.glob("*.yaml")) == sorted(EXPECTED)
    assert len(EXPECTED) >= 40


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_graph_is_rejected_with_its_line(name: str, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWGRAPH_TEST_SURELY_UNSET", raising=False)
    path = HERE / name
    code = main(["validate", str(path)])
    err = capsys.readouterr().err.strip()
    line, column, fragment = EXPECTED[name]
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"{path}:{line}:{column}: "), err
    assert fragment in err
    assert "(expected " in err


def test_alias_bomb_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    lines += ["nodes:", "  t: {node: tick}"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{path}:2:"), err
    assert "alias bomb" in err


def test_fifty_megabyte_file_is_refused_before_parsing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w") as f:
        f.write("nodes:\n  t: {node: tick}\n")
        f.write(("# " + "x" * 1022 + "\n") * 50 * 1024)
    assert path.stat().st_size > 50_000_000
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{path}:1:1: file is 52.5 MB (expected a graph file of at most 1024 KiB)"), err


def test_binary_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"nodes:\n  t: {node: tick}\n\xff\xfe\x00garbage\n")
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err.strip().startswith(f"{path}:3:1: file is not UTF-8 text")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.yaml"
    assert main(["validate", str(path)]) == 2
    assert "cannot read graph file" in capsys.readouterr().err


def test_run_of_a_bad_graph_starts_nothing(tmp_path: Path, free_port: int) -> None:
    """`flowgraph run` validates first: exit 2, no server bound, no node output."""
    out = tmp_path / "ticks.jsonl"
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"server: {{port: {free_port}}}\n"
        "nodes:\n"
        "  t: {node: tick, params: {hz: 100}}\n"
        f"  c: {{node: collect, params: {{path: '{out}'}}, inputs: {{inp: t/out}}}}\n"
        "  bad: {node: tick, params: {hz: fast}}\n"
    )
    result = subprocess.run([sys.executable, "-m", "flowgraph.cli", "run", str(path), "--serve"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"{path}:5:")
    assert not out.exists()
