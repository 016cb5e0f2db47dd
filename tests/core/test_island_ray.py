"""Nodes placed on Ray (flowgraph.island.ray): unchanged node code in actors on a local two-node Ray cluster (inside
a network namespace, loopback only), edges that keep their policy, replicas, actor kills, and no Ray left behind.

The replica logic (sharding, order restored) is also tested without Ray, on fake transports."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from flowgraph.context import GraphScope, NodeContext
from flowgraph.errors import FlowgraphError
from flowgraph.island.ray import RayNode, ray_stand_in, restore_echoes, strip_echoes
from flowgraph.island.ray_plan import Placement
from flowgraph.island.transport import Answer, WorkerDied
from flowgraph.messages import Data, VideoFrame
from flowgraph.nodes.core.burn import Burn
from flowgraph.nodes.vibrio.messages import Tracks
from flowgraph.testing import collected, compile_text, running

ROOT = Path(__file__).resolve().parents[2]


async def _until(predicate: Any, timeout: float = 90.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return bool(predicate())


# -- without Ray: the stand-in's replica logic on fake transports ------------------------------------------------
class FakeActor:
    """A replica that answers after a random delay (what it got, tagged with its index)."""

    def __init__(self, index: int, seen: list[tuple[int, Any]]) -> None:
        self.replica = index
        self.seen = seen
        self.alive = True
        self._info = {"ray_node": f"node{index}", "pid": 1000 + index}
        self.pid = 1000 + index
        self.busy = 0
        self.most_busy = 0

    async def call(self, port: str, msg: Any) -> Answer:
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        self.seen.append((self.replica, msg))
        try:
            await asyncio.sleep(random.uniform(0, 0.01))
            if msg.value == "die":
                self.alive = False
                raise WorkerDied("killed")
            return Answer([("out", msg)], {"process_ms": 1.0})
        finally:
            self.busy -= 1

    async def flush(self) -> Answer:
        return Answer([])

    async def start(self, spec: Any, timeout: float) -> dict[str, Any]:
        self.alive = True
        return self._info

    async def close(self, timeout: float) -> int:
        return 0

    def stats(self) -> dict[str, Any]:
        return {"replica": self.replica, "alive": self.alive}


def fake_node(replicas: int, shard_by: str) -> tuple[RayNode, list[Any], list[tuple[int, Any]]]:
    cls = ray_stand_in(Burn, 0, False, Placement(replicas=replicas, resources={"CPU": 1}, shard_by=shard_by), True)
    node = cls(NodeContext(name="b", device="cpu", scope=GraphScope("g")))
    assert isinstance(node, RayNode)
    seen: list[tuple[int, Any]] = []
    node.transports = [FakeActor(i, seen) for i in range(replicas)]  # type: ignore[list-item]
    node.respawn_backoff_s = 0.0
    out: list[Any] = []

    async def catch(msg: Any) -> None:
        out.append(msg)

    node._outputs["out"].fuse(catch)
    return node, out, seen


async def test_round_robin_uses_every_replica_and_restores_arrival_order() -> None:
    random.seed(1)
    node, out, seen = fake_node(3, "round_robin")
    for i in range(60):
        await node.call("inp", Data(value=i, frame_id=i))
    await node.flush()
    assert [m.frame_id for m in out] == list(range(60))  # random delays per replica, outputs in arrival order
    assert {replica for replica, _ in seen} == {0, 1, 2}
    assert all(t.most_busy == 1 for t in node.transports)  # one message in flight per replica: the credit


async def test_stream_id_pins_each_stream_to_one_replica() -> None:
    random.seed(2)
    node, out, seen = fake_node(2, "stream_id")
    streams = [f"cam{i}" for i in range(8)]
    for i in range(80):
        await node.call("inp", Data(value=i, frame_id=i, stream_id=streams[i % 8]))
    await node.flush()
    where: dict[str, set[int]] = {}
    for replica, msg in seen:
        where.setdefault(msg.stream_id, set()).add(replica)
    assert all(len(replicas) == 1 for replicas in where.values()), where
    per_replica = [sum(1 for replicas in where.values() if replicas == {r}) for r in (0, 1)]
    assert per_replica == [4, 4]  # a new stream goes to the replica holding the fewest
    for stream in streams:  # per stream, frames leave in order
        ids = [m.frame_id for m in out if m.stream_id == stream]
        assert ids == sorted(ids) and len(ids) == 10


async def test_a_dead_replica_is_counted_lost_and_reported_to_the_runner() -> None:
    node, out, _ = fake_node(2, "round_robin")
    await node.call("inp", Data(value="die", frame_id=0))
    await asyncio.sleep(0.05)
    with pytest.raises(WorkerDied):  # the next message reports it: the runner then applies on_error
        await node.call("inp", Data(value=1, frame_id=1))
    assert node.lost == 1 and node.worker_deaths == 1
    await node.stop()  # the restart's stop(): only the dead replica goes, the healthy one keeps running
    await node.start()
    await node.call("inp", Data(value=2, frame_id=2))
    await node.flush()
    assert [m.frame_id for m in out] == [1, 2]
    assert node.counters()["island"]["lost"] == 1


def test_echoes_are_not_shipped_back() -> None:
    frame = VideoFrame(image=None, frame_id=7)
    tracks = Tracks(frame=frame, frame_id=7)
    stripped = strip_echoes([("tracks", tracks), ("out", frame)], frame)
    assert type(stripped[0][1].frame).__name__ == "_Echo" and type(stripped[1][1]).__name__ == "_Echo"
    restored = restore_echoes(stripped, frame)
    assert restored[0][1].frame is frame and restored[1][1] is frame
    given = Tracks(frame=frame)
    poses = strip_echoes([("poses", Tracks(frame=frame))], given)  # a field of the input message
    assert restore_echoes(poses, given)[0][1].frame is frame


# -- on a two-node Ray cluster -------------------------------------------------------------------------------------
pytestmark_ray = pytest.mark.usefixtures("ray_cluster", "in_ray_netns")


@pytestmark_ray
async def test_replicas_run_on_both_ray_nodes_and_edges_keep_their_policy(ray_cluster: Any) -> None:
    import ray

    async with running("""
cluster: {engine: ray, address: local}
nodes:
  src: {node: frames, params: {width: 320, height: 180, fps: 60}}
  cv:
    node: burn
    nice: 0
    params: {ms: 40}
    placement: {replicas: 2, shard_by: round_robin, resources: {CPU: 2}}
    inputs: {inp: {from: src/frames, policy: latest}}
  out: {node: collect, inputs: {inp: cv/out}}
""", ready_timeout=180) as rt:
        runner = rt.runners["cv"]
        assert await _until(lambda: runner.stats.processed >= 40)
        snapshot = rt.snapshot()
    island = snapshot["nodes"]["cv"]["counters"]["island"]
    alive_nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}  # type: ignore[no-untyped-call]
    # CPU 2 per replica on nodes of 3 CPUs: one replica per Ray node
    assert len(island["ray_nodes"]) == 2 and set(island["ray_nodes"]) == alive_nodes
    assert [r["ray_ip"] for r in island["replicas"]] == ["127.0.0.1", "127.0.0.1"]
    assert all(r["calls"] >= 10 for r in island["replicas"])
    # 60 fps into 2 × 25/s: the latest edge drops (counted), the rest arrive in order with their pictures
    edge = next(e for e in snapshot["edges"] if e["to"] == "cv/inp")
    assert edge["drops"] > 0 and edge["size"] == 1
    frames = collected(rt, "out")
    ids = [f.frame_id for f in frames]
    assert ids == sorted(ids) and len(ids) >= 40
    assert frames[-1].image.shape == (180, 320, 3)
    assert island["call_ms_p50"] is not None and island["node_ms_p50"] >= 35
    assert rt.exit_code == 0


@pytestmark_ray
async def test_a_killed_actor_is_restarted_per_on_error_and_its_message_counted_lost(ray_cluster: Any) -> None:
    async with running("""
cluster: {engine: ray}
nodes:
  src: {node: tick, params: {hz: 50}}
  cv:
    node: burn
    nice: 0
    params: {ms: 15}
    on_error: {policy: restart, backoff_s: 0.1}
    placement: {replicas: 2, shard_by: round_robin, resources: {CPU: 0.5}}
    inputs: {inp: {from: src/out, policy: latest}}
  out: {node: collect, inputs: {inp: cv/out}}
""", ready_timeout=180) as rt:
        runner = rt.runners["cv"]
        node = runner.node
        assert isinstance(node, RayNode)
        assert await _until(lambda: runner.stats.processed >= 10)
        victim, healthy = node.transports[0].pid, node.transports[1].pid
        assert victim is not None and healthy is not None
        os.kill(victim, signal.SIGKILL)
        assert await _until(lambda: node.transports[0].alive and node.transports[0].pid not in (None, victim))
        before = len(collected(rt, "out"))
        assert await _until(lambda: len(collected(rt, "out")) >= before + 20), "messages flow after the restart"
        island = node.counters()["island"]
        assert island["worker_deaths"] >= 1 and island["lost"] >= 1
        assert runner.stats.restarts >= 1 and "died" in (runner.stats.last_error or "")
        assert node.transports[1].pid == healthy, "the healthy replica kept running (and its state)"
        assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
    assert rt.exit_code == 0


@pytestmark_ray
async def test_a_removed_ray_node_loses_its_replica_which_restarts_on_a_new_node(ray_cluster: Any) -> None:
    async with running("""
cluster: {engine: ray}
nodes:
  src: {node: tick, params: {hz: 40}}
  cv:
    node: burn
    nice: 0
    params: {ms: 10}
    on_error: {policy: restart, backoff_s: 0.2}
    placement: {replicas: 2, shard_by: round_robin, resources: {CPU: 2}}
    inputs: {inp: {from: src/out, policy: latest}}
  out: {node: collect, inputs: {inp: cv/out}}
""", ready_timeout=180) as rt:
        runner = rt.runners["cv"]
        node = runner.node
        assert isinstance(node, RayNode)
        assert await _until(lambda: runner.stats.processed >= 10)
        worker = next(iter(ray_cluster.worker_nodes))
        doomed = next(t for t in node.transports if t._info["ray_node"] == worker.node_id)
        survivor = next(t for t in node.transports if t is not doomed)
        survivor_pid = survivor.pid
        await asyncio.to_thread(ray_cluster.remove_node, worker)  # the host is gone: its actor with it
        replacement = ray_cluster.add_node(**ray_cluster.flowgraph_node_args)  # main thread only (signals)
        assert await _until(lambda: doomed.alive and doomed._info.get("ray_node") == replacement.node_id, 150)
        before = len(collected(rt, "out"))
        assert await _until(lambda: len(collected(rt, "out")) >= before + 20)
        assert node.lost >= 1 and node.worker_deaths >= 1 and runner.stats.restarts >= 1
        assert survivor.pid == survivor_pid and survivor.alive
    assert rt.exit_code == 0


@pytestmark_ray
async def test_a_request_no_ray_node_can_meet_is_refused_before_anything_starts(ray_cluster: Any) -> None:
    plan = compile_text("""
cluster: {engine: ray}
nodes:
  src: {node: tick, params: {hz: 5}}
  cv: {node: burn, placement: {resources: {CPU: 4}}, inputs: {inp: src/out}}
  out: {node: collect, inputs: {inp: cv/out}}
""")
    with pytest.raises(FlowgraphError, match=r"node 'cv' asks each replica for \{CPU: 4\}, but no Ray node of "
                                             r"the cluster .* offers that \(largest offers: CPU 3\)"):
        async with running(plan, ready_timeout=120):
            pass


def _family(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytestmark_ray
def test_ctrl_c_stops_the_private_ray_and_leaves_no_ray_process(tmp_path: Path, free_port: int) -> None:
    graph = tmp_path / "private.yaml"
    graph.write_text(f"""
server: {{port: {free_port}}}
cluster: {{engine: ray, address: local, num_cpus: 2}}
nodes:
  src: {{node: tick, params: {{hz: 20}}}}
  cv: {{node: burn, params: {{ms: 5}}, placement: {{replicas: 2, resources: {{CPU: 0.5}}}},
        inputs: {{inp: src/out}}}}
  out: {{node: collect, inputs: {{inp: cv/out}}}}
""")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    ray_tmp = tempfile.mkdtemp(prefix="fgray")  # short: Ray's Unix socket paths must fit 107 bytes
    env["RAY_TMPDIR"] = ray_tmp
    proc = subprocess.Popen([sys.executable, "-m", "flowgraph.cli", "run", str(graph), "--serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    family: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "running" in line and "graph" in line:
                break
        assert any("runs in Ray" in line for line in lines), "".join(lines[-30:])
        time.sleep(1.0)
        family = {p.pid: p for p in _family(proc.pid)}
        names = " ".join(p.name() for p in family.values() if not _gone(p))
        assert "raylet" in names and "gcs_server" in names, names  # a private Ray, started by this graph
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
        lines.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, "".join(lines[-30:])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(_gone(p) for p in family.values()):
        time.sleep(0.2)
    left = [f"{p.pid} {p.name()}" for p in family.values() if not _gone(p)]
    assert not left, f"Ray processes outlived flowgraph run: {left}"
