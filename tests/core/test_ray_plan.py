"""Ray placement checked at compile time (no Ray needed): every bad placement is refused with file:line:col
before anything starts, and ``validate --plan`` says where each node runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowgraph.cli import main
from flowgraph.errors import GraphErrors
from flowgraph.island.ray import RayNode
from flowgraph.testing import compile_text

GRAPH = """\
name: placed
cluster: {{engine: ray, address: local, num_cpus: 4{cluster}}}
nodes:
  t: {{node: tick, params: {{hz: 50}}{source}}}
  b:
    node: burn
    params: {{ms: 1}}
    placement: {placement}
    inputs: {{inp: t/out}}
  c: {{node: collect, inputs: {{inp: b/out}}}}
"""


def graph(placement: str = "{replicas: 2}", cluster: str = "", source: str = "") -> str:
    return GRAPH.format(placement=placement, cluster=cluster, source=source)


def refused(text: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> str:
    """``flowgraph validate`` on ``text``: exit code 2 and one error line, returned."""
    path = tmp_path / "placed.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(str(path) + ":"), err
    assert "(expected " in err
    return err[len(str(path)):]


@pytest.fixture(autouse=True)
def _no_ray_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("FLOWGRAPH_FORCE_CPU", "1")


def test_placed_node_gets_a_ray_stand_in() -> None:
    plan = compile_text(graph("{replicas: 3, shard_by: round_robin, resources: {CPU: 0.5}}"))
    node = plan.nodes["b"]
    assert node.isolation == "ray" and node.mode == "ray"
    assert issubclass(node.cls, RayNode)
    placement = node.cls.placement  # type: ignore[attr-defined]
    assert (placement.replicas, placement.shard_by, placement.resources) == (3, "round_robin", {"CPU": 0.5})
    assert node.cls.remote_cls.type_name == "burn"  # type: ignore[attr-defined]
    assert set(node.cls.inputs) == {"inp"} and set(node.cls.outputs) == {"out"}
    assert plan.nodes["t"].placement is None and plan.nodes["c"].placement is None
    body = plan.to_dict()
    assert body["nodes"]["b"]["placement"] == {"replicas": 3, "resources": {"CPU": 0.5}, "shard_by": "round_robin"}
    assert body["cluster"]["engine"] == "ray"
    assert "placement" not in body["nodes"]["t"]


def test_defaults_one_replica_one_cpu_sharded_by_stream() -> None:
    plan = compile_text(graph("{}"))
    placement = plan.nodes["b"].placement
    assert placement is not None
    assert (placement.replicas, placement.resources, placement.shard_by) == (1, {"CPU": 1.0}, "stream_id")


def test_a_ray_placement_takes_one_message_at_a_time(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plan = compile_text(graph("{}"))
    assert plan.nodes["b"].max_batch == 1 and not plan.nodes["b"].cls.batch_ports()
    err = refused(graph("{}").replace("    node: burn\n", "    node: burn\n    max_batch: 4\n"), capsys, tmp_path)
    assert err.startswith(":7:") and "a Ray placement takes one message at a time" in err, err


def test_validate_plan_says_where_each_node_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "placed.yaml"
    path.write_text(graph("{replicas: 2, resources: {CPU: 1}}"))
    assert main(["validate", "--plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cluster: Ray, address local (a private Ray started for this graph and stopped with it)" in out
    assert "in Ray actors: b; in this process: t, c" in out
    assert "stage b: ray on cpu" in out
    assert "Ray: 2 actor(s), each CPU 1, shard_by stream_id" in out


def test_ray_address_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    path = tmp_path / "placed.yaml"
    path.write_text(graph().replace("address: local, ", ""))
    assert main(["validate", "--plan", str(path)]) == 0
    assert "address 10.1.2.3:6379 (joins the running cluster at 10.1.2.3:6379)" in capsys.readouterr().out


def test_placement_without_cluster(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = graph().replace("cluster: {engine: ray, address: local, num_cpus: 4}\n", "")
    err = refused(text, capsys, tmp_path)
    assert err.startswith(":7:5: node 'b' has a placement but the graph has no cluster"), err


def test_replicas_on_a_source(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = refused(graph(source=", placement: {replicas: 2}"), capsys, tmp_path)
    assert err.startswith(":4:49: node 't' is a source: replicas of a source would each produce the whole "), err


def test_placement_on_a_source(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = refused(graph(source=", placement: {resources: {CPU: 1}}"), capsys, tmp_path)
    assert err.startswith(":4:37: node 't' (tick) cannot run on Ray: a source runs in the graph's process"), err


def test_nodes_that_serve_clients_stay_in_the_graph() -> None:
    from flowgraph.island import ray_plan
    from flowgraph.registry import Registry

    registry = Registry.default()
    problem = ray_plan.why_not(registry.get("ws_out"), "async")
    assert problem is not None and "registers routes in setup()" in problem
    assert ray_plan.why_not(registry.get("passthrough"), "inline") == "a cheap node runs inline on the graph's loop"
    assert ray_plan.why_not(registry.get("decode"), "async") is None  # async nodes move too (outputs captured)
    assert ray_plan.why_not(registry.get("vibrio"), "thread") is None


def test_unknown_resource(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = refused(graph("{resources: {CPU: 1, TPU: 2}}"), capsys, tmp_path)
    assert err.startswith(":8:37: node 'b' asks Ray for unknown resource 'TPU'"), err
    assert "custom resource listed in cluster.resources (none declared)" in err


def test_custom_resource_declared_by_the_cluster() -> None:
    plan = compile_text(graph("{resources: {CPU: 1, camera_host: 1}}", cluster=", resources: [camera_host]"))
    assert plan.nodes["b"].placement is not None
    assert plan.nodes["b"].placement.resources == {"CPU": 1.0, "camera_host": 1.0}


def test_gpu_no_node_can_meet(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = refused(graph("{resources: {GPU: 1}}"), capsys, tmp_path)
    assert err.startswith(":8:34: node 'b' asks for GPU 1 per replica, but the private Ray (address: local) "
                          "offers 0 GPU(s) (this host's CUDA devices): no Ray node can ever run it"), err
    err = refused(graph("{resources: {GPU: 2}}", cluster=", num_gpus: 1"), capsys, tmp_path)
    assert "offers 1 GPU(s) (cluster.num_gpus)" in err, err


def test_gpu_request_on_a_joined_cluster_waits_for_its_nodes() -> None:
    # a cluster elsewhere may have GPUs: checked against its live nodes when the graph connects
    plan = compile_text(graph("{resources: {GPU: 0.5}}").replace("address: local", "address: 10.0.0.5:6379"))
    assert plan.nodes["b"].placement is not None and plan.nodes["b"].placement.resources == {"GPU": 0.5}


def test_isolation_and_placement_together(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = graph().replace("    params: {ms: 1}\n", "    params: {ms: 1}\n    isolation: process\n")
    err = refused(text, capsys, tmp_path)
    assert err.startswith(":8:5: node 'b' has both isolation: process and a placement"), err


@pytest.mark.parametrize(("placement", "where", "fragment"), [
    ("{replicas: 0}", ":8:27:", "bad value 0 for nodes/b/placement/replicas"),
    ("{shard_by: random}", ":8:27:", "bad value 'random' for nodes/b/placement/shard_by"),
    ("{resources: {CPU: -1}}", ":8:34:", "bad value -1 for nodes/b/placement/resources/CPU"),
    ("{replica: 2}", ":8:17:", "unknown key 'replica' in nodes/b/placement"),
])
def test_schema_rejects_malformed_placements(placement: str, where: str, fragment: str,
                                             capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = refused(graph(placement), capsys, tmp_path)
    assert err.startswith(where) and fragment in err, err


def test_schema_rejects_unknown_engine(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = refused(graph().replace("engine: ray", "engine: dask"), capsys, tmp_path)
    assert err.startswith(":2:19: bad value 'dask' for cluster/engine"), err


def test_every_placement_error_is_reported_at_once() -> None:
    text = graph("{resources: {TPU: 1}}", source=", placement: {replicas: 2}")
    with pytest.raises(GraphErrors) as caught:
        compile_text(text)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert "node 't' is a source" in lines[0] and "unknown resource 'TPU'" in lines[1]


def test_shipped_ray_graph_places_decode_and_cv_on_ray() -> None:
    from flowgraph.compile import compile_plan
    from flowgraph.spec import load_spec

    plan = compile_plan(load_spec(Path(__file__).resolve().parents[2] / "graphs" / "variants" / "ray.yaml"))
    placed = {name for name, node in plan.nodes.items() if node.placement is not None}
    assert placed == {"decoder", "vibrio", "moriarty"}
    for name in placed:
        placement = plan.nodes[name].placement
        assert placement is not None and placement.replicas == 2 and placement.shard_by == "stream_id"
    for name in ("north", "south", "viewers", "ws", "db"):
        assert plan.nodes[name].placement is None
