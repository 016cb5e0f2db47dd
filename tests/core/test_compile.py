"""Compiler: placement, policies by message type, plan description, plugins by entry point."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flowgraph import devices
from flowgraph.errors import GraphError
from flowgraph.registry import Registry
from flowgraph.testing import compile_text


def test_auto_places_gpu_capable_node_by_what_the_machine_has_and_says_why(reg: Registry) -> None:
    plan = compile_text("nodes:\n  t: {node: tick}\n  g: {node: gpu_only, inputs: {inp: t/out}}\n", registry=reg)
    if devices.cuda_device_count():  # a GPU host
        assert (plan.nodes["g"].device, plan.nodes["g"].device_why) == ("cuda:0", "auto: CUDA present")
    else:
        assert (plan.nodes["g"].device, plan.nodes["g"].device_why) == ("cpu", "auto: no CUDA device, using CPU")
    assert plan.nodes["t"].device == "cpu"
    assert plan.nodes["t"].device_why == "auto: node runs on CPU only"


def test_a_cuda_device_the_machine_lacks_fails_validation(reg: Registry) -> None:
    count = devices.cuda_device_count()  # cuda:<count> never exists: 0 on this CPU box, one past the last on a GPU
    have = f"{count} CUDA device(s)" if count else "no CUDA device"
    with pytest.raises(GraphError) as info:
        compile_text(f"nodes:\n  t: {{node: tick}}\n  g:\n    node: gpu_only\n    device: cuda:{count}\n"
                     "    inputs: {inp: t/out}\n", registry=reg)
    assert info.value.line() == (f"graph.yaml:5:13: node 'g': device 'cuda:{count}' is not available: this machine "
                                 f"has {have} (expected auto, cpu, or a CUDA device that exists)")


def test_live_media_defaults_to_drop_oldest_and_analytics_to_block() -> None:
    plan = compile_text("""
nodes:
  f: {node: frames}
  t: {node: tick}
  a: {node: frame_probe, inputs: {frames: f/frames}}
  b: {node: collect, inputs: {inp: t/out}}
  c: {node: collect, inputs: {inp: {from: f/frames, policy: latest}}}
""")
    policies = {(e.source, e.target): (e.policy, e.queue, e.policy_why) for e in plan.edges}
    assert policies[("f", "a")] == ("drop_oldest", 8, "default for live VideoFrame")
    assert policies[("t", "b")] == ("block", 8, "default: lossless")
    assert policies[("f", "c")] == ("latest", 1, "")


def test_latest_on_compressed_video_is_refused_and_a_latest_default_leaves_it_alone() -> None:
    with pytest.raises(GraphError) as err:
        compile_text("""
nodes:
  f: {node: frames}
  e: {node: encode, inputs: {frames: f/frames}}
  c: {node: collect, inputs: {inp: {from: e/packets, policy: latest}}}
""")
    assert "graph.yaml:5:" in str(err.value) and "breaks the video until its next keyframe" in str(err.value)
    plan = compile_text("""
defaults: {policy: latest}
nodes:
  f: {node: frames}
  e: {node: encode, inputs: {frames: f/frames}}
  c: {node: collect, inputs: {inp: e/packets}}
""")
    policies = {(e.source, e.target): e.policy for e in plan.edges}
    assert policies == {("f", "e"): "latest", ("e", "c"): "drop_oldest"}, "packets keep their live default"


def test_graph_defaults_apply() -> None:
    plan = compile_text("defaults: {queue: 3, policy: drop_oldest}\nnodes:\n  t: {node: tick}\n"
                        "  c: {node: collect, inputs: {inp: t/out}}\n")
    assert (plan.edges[0].policy, plan.edges[0].queue) == ("drop_oldest", 3)


def test_disabled_node_is_left_out() -> None:
    plan = compile_text("nodes:\n  t: {node: tick}\n  c: {node: collect, inputs: {inp: t/out}}\n"
                        "  x: {node: tick, enabled: false}\n")
    assert sorted(plan.nodes) == ["c", "t"]


def test_several_errors_are_reported_together() -> None:
    with pytest.raises(Exception) as info:
        compile_text("nodes:\n  a: {node: tick, params: {hz: -1}}\n  b: {node: tick, params: {bogus: 1}}\n")
    text = str(info.value)
    assert "graph.yaml:2:" in text and "graph.yaml:3:" in text


def test_plugin_node_from_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A third-party package adds a node type through the ``flowgraph.nodes`` entry-point group."""
    (tmp_path / "fg_plugin_demo.py").write_text(
        "from flowgraph.node import Node\nfrom flowgraph.ports import Input\nfrom flowgraph.messages import Data\n"
        "class Shout(Node):\n    '''Plugin sink.'''\n    inp = Input(Data)\n"
        "    async def process(self, msg):\n        pass\n")
    dist = tmp_path / "fg_plugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fg-plugin-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[flowgraph.nodes]\nshout = fg_plugin_demo:Shout\ntick = x:Y\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry.default()
    assert "shout" in registry
    assert registry.get("tick").__module__ == "flowgraph.nodes.core.utility"  # built-ins win
    plan = compile_text("nodes:\n  t: {node: tick}\n  s: {node: shout, inputs: {inp: t/out}}\n", registry=registry)
    assert plan.nodes["s"].cls.__name__ == "Shout"
    sys.modules.pop("fg_plugin_demo", None)


def test_broken_plugin_is_reported_not_crashing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "fg_broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fg-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[flowgraph.nodes]\nbroken = fg_missing_module:Thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(GraphError) as info:
        compile_text("nodes:\n  b: {node: broken}\n")
    assert "node type 'broken' failed to load: No module named 'fg_missing_module'" in info.value.line()


def test_describe_lists_stages_and_edges() -> None:
    plan = compile_text("nodes:\n  t: {node: tick}\n  p: {node: passthrough, inputs: {inp: t/out}}\n"
                        "  c: {node: collect, inputs: {inp: p/out}}\n")
    text = plan.describe()
    assert "stage t: async on cpu (fused: t -> p)" in text
    assert "p/out -> c/inp  Data  [block, queue 8]" in text
