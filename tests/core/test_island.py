"""Nodes in worker processes (flowgraph.island): placement, frames through shared memory, edge policies across the
process boundary, failures, metrics, and no worker left behind."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from flowgraph.errors import GraphError
from flowgraph.island.frames import FrameRing, RingView, dump_answer, dump_call, load_answer, load_call
from flowgraph.messages import VideoFrame
from flowgraph.nodes.vibrio.messages import Tracks
from flowgraph.testing import collected, compile_text, run_to_end, running
from flowgraph.top import render


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes only once reaped; the runtime reaps its workers
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


async def _until(predicate, timeout: float = 60.0, step: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return bool(predicate())


def test_placement_auto_thread_process_and_errors() -> None:
    plan = compile_text("""
nodes:
  src: {node: frames, params: {width: 64, height: 32, count: 1}}
  cv: {node: vibrio, inputs: {frames: {from: src/frames, policy: latest}}}
  pose: {node: moriarty, isolation: thread, inputs: {tracks: {from: cv/tracks, policy: latest}}}
  burn: {node: burn, isolation: process, nice: 15, inputs: {inp: src/frames}}
  out: {node: collect, inputs: {inp: burn/out}}
""")
    assert plan.nodes["cv"].isolation == "process" and plan.nodes["cv"].mode == "process"  # vibrio: auto → process
    assert plan.nodes["pose"].isolation == "thread" and plan.nodes["pose"].mode == "thread"
    assert plan.nodes["src"].isolation == "thread" and plan.nodes["out"].isolation == "thread"
    assert plan.nodes["burn"].cls.island_nice == 15  # type: ignore[attr-defined]
    assert plan.nodes["cv"].cls.island_nice == 19, "nice: idle when the graph gives none"  # type: ignore[attr-defined]
    assert plan.nodes["cv"].cls.island_idle and not plan.nodes["burn"].cls.island_idle  # type: ignore[attr-defined]
    assert set(plan.nodes["cv"].cls.inputs) == {"frames"} and set(plan.nodes["cv"].cls.outputs) == {"tracks"}
    assert "own process, nice 15" in plan.describe()
    assert plan.to_dict()["nodes"]["cv"]["isolation"] == "process"
    # a graph-wide default moves what can move and leaves the rest
    plan = compile_text("""
defaults: {isolation: process}
nodes:
  src: {node: frames, params: {count: 1}}
  out: {node: collect, inputs: {inp: src/frames}}
""")
    assert plan.nodes["out"].isolation == "thread"
    with pytest.raises(GraphError) as err:
        compile_text("""
nodes:
  src: {node: frames, params: {count: 1}}
  out:
    node: collect
    isolation: process
    inputs: {inp: src/frames}
""")
    assert "graph.yaml:6:" in str(err.value) and "cannot run in its own process" in str(err.value)
    assert "async node" in str(err.value)
    with pytest.raises(GraphError):
        compile_text("nodes: {src: {node: frames, isolation: sometimes}}")
    plan = compile_text("""
nodes:
  src: {node: frames, params: {count: 1}}
  b: {node: burn, inputs: {inp: src/frames}}
""", overrides=["b.isolation=thread"])
    assert plan.nodes["b"].isolation == "thread"


def test_frame_ring_round_trip_one_write_and_references_back() -> None:
    ring, view = FrameRing("t"), RingView()
    image = np.arange(720 * 1280 * 3, dtype=np.uint8).reshape(720, 1280, 3)
    frame = VideoFrame(image=image, stream_id="s", frame_id=7, t_capture=123.5, source=object())
    tracks = Tracks(frame=frame).like(frame)
    data, call = dump_call(("frames", tracks), ring)
    assert len(data) < 4096, "the picture must not travel in the pickle"
    assert call.announcement is not None and ring.frames_written == 1
    view.attach(call.announcement, os.dup(ring.fd))  # type: ignore[arg-type]
    (port, got), incoming = load_call(data, view)
    assert port == "frames" and got.frame.frame_id == 7 and got.frame.t_capture == 123.5 and got.stream_id == "s"
    assert np.array_equal(got.frame.image, image) and not got.frame.image.flags.writeable
    # the worker answers with a message referencing the frame it was given: the graph gets its own object back
    answer = dump_answer([("tracks", Tracks(frame=got.frame).like(got))], incoming)
    assert len(answer) < 4096
    [(out_port, back)] = load_answer(answer, call)
    assert out_port == "tracks"
    assert back.frame is frame and back.frame.source is frame.source
    # the same size again reuses the ring; a bigger picture makes a new one
    assert dump_call(frame, ring)[1].announcement is None
    bigger = VideoFrame(image=np.zeros((1080, 1920, 3), np.uint8))
    assert dump_call(bigger, ring)[1].announcement is not None
    ring.close()


def test_a_batch_of_pictures_of_several_sizes_lands_in_one_ring() -> None:
    ring, view = FrameRing("t"), RingView()
    assert ring.slots == 4
    sizes = [(90, 160), (360, 640), (180, 320), (720, 1280), (36, 64)]  # the ring grows three times in the call
    frames = [VideoFrame(image=np.random.default_rng(i).integers(0, 255, (h, w, 3), np.uint8), stream_id=f"s{i}",
                         frame_id=i) for i, (h, w) in enumerate(sizes)]
    data, call = dump_call(("__batch__", frames), ring)
    assert call.announcement is not None and call.announcement.slot_size >= 720 * 1280 * 3
    assert call.announcement.slots == ring.slots == 5, "a slot for each picture of the call"
    view.attach(call.announcement, os.dup(ring.fd))  # type: ignore[arg-type]
    (_, got), incoming = load_call(data, view)
    assert [f.stream_id for f in got] == [f"s{i}" for i in range(5)]
    assert all(np.array_equal(g.image, f.image) for g, f in zip(got, frames, strict=True)), "every picture intact"
    answer = dump_answer([("out", g) for g in reversed(got)], incoming)
    assert [f for _, f in load_answer(answer, call)] == list(reversed(frames))
    # the same sizes again fit; a bigger batch of small pictures adds slots, never shrinks them
    assert dump_call(("__batch__", frames), ring)[1].announcement is None
    small = [VideoFrame(image=np.full((4, 4, 3), i, np.uint8), frame_id=i) for i in range(7)]
    data, call = dump_call(small, ring)
    assert call.announcement is not None and ring.slots == 7 and ring.slot_size >= 720 * 1280 * 3
    view.attach(call.announcement, os.dup(ring.fd))  # type: ignore[arg-type]
    got, _ = load_call(data, view)
    assert [int(g.image[0, 0, 0]) for g in got] == list(range(7))
    ring.close()


async def test_a_batch_goes_to_the_worker_as_one_call() -> None:
    sources = "\n".join(f"  s{i}: {{node: frames, params: {{width: {320 + 64 * i}, height: 180, fps: 100, "
                         f"stream_id: s{i}}}}}" for i in range(5))
    wires = ", ".join(f"{{from: s{i}/frames, policy: latest}}" for i in range(5))
    async with running(f"""
nodes:
{sources}
  cv: {{node: burn, isolation: process, nice: 0, max_batch: 5, params: {{ms: 20}}, inputs: {{inp: [{wires}]}}}}
  out: {{node: collect, inputs: {{inp: cv/out}}}}
""") as rt:
        assert rt.plan.nodes["cv"].max_batch == 5
        assert await _until(lambda: rt.runners["cv"].stats.processed >= 40)
        node = rt.snapshot()["nodes"]["cv"]
        sizes = {int(k): n for k, n in node["batch"]["sizes"].items()}
        assert max(sizes) > 1 and max(sizes) <= 5, sizes
        assert max(node["counters"]["batch_sizes"]) > 1, "the worker's node got batches through process_batch"
        island = node["counters"]["island"]
        assert 5 >= island["ring_slots"] >= max(sizes) and island["alive"] and island["worker_deaths"] == 0
        assert node["errors"] == 0
        got = collected(rt, "out")
        for i in range(5):
            ids = [f.frame_id for f in got if f.stream_id == f"s{i}"]
            assert ids == sorted(ids) and len(set(ids)) == len(ids), f"stream s{i} in order, no duplicates"
            buffers = rt.runners[f"s{i}"].node._buffers  # type: ignore[attr-defined]
            assert all(any(f.image is b for b in buffers) for f in got if f.stream_id == f"s{i}"), \
                "every frame of a batch comes back as the graph's own object"
    assert rt.exit_code == 0


async def test_a_failing_batch_in_the_worker_names_its_frames(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="flowgraph")
    rt = await run_to_end("""
nodes:
  src: {node: frames, params: {width: 64, height: 32, fps: 0, count: 24}}
  cv:
    node: burn
    isolation: process
    nice: 0
    max_batch: 4
    params: {ms: 5, fail_every: 7}
    inputs: {inp: {from: src/frames, policy: block, queue: 8}}
  out: {node: collect, inputs: {inp: {from: cv/out, policy: block}}}
""", timeout=120)
    assert rt.exit_code == 0
    node = rt.snapshot()["nodes"]["cv"]
    assert "injected failure" in node["last_error"] and "in worker process" in node["last_error"]
    batches = [r.getMessage() for r in caplog.records if "each message again on its own" in r.getMessage()]
    assert batches and all("(frame [" in m for m in batches), "a failed batch names its frames"
    skipped = [r for r in caplog.records if "(message skipped)" in r.getMessage()]
    assert node["errors"] == len(batches) + len(skipped)
    assert node["counters"]["island"]["worker_deaths"] == 0, "an exception is not a death"
    # skip_message: a failed batch goes again one message at a time; only messages that fail on their own are lost
    assert len(collected(rt, "out")) == node["processed"] == 24 - len(skipped)


async def test_process_node_runs_unchanged_code_and_returns_the_graphs_own_frames() -> None:
    async with running("""
nodes:
  src: {node: frames, params: {width: 320, height: 180, fps: 60, count: 0, pool: 4}}
  cv: {node: burn, params: {ms: 2, report: true}, inputs: {inp: {from: src/frames, policy: latest}}}
  out: {node: collect, inputs: {inp: cv/out}}
""") as rt:
        cv = rt.runners["cv"].node
        assert await _until(lambda: len(collected(rt, "out")) >= 10)
        pid = cv.transport.pid
        assert pid is not None and pid != os.getpid() and _alive(pid)
        assert os.getpriority(os.PRIO_PROCESS, pid) >= os.getpriority(os.PRIO_PROCESS, 0) + 10
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]  # a nice value is per thread on Linux
        assert all(os.getpriority(os.PRIO_PROCESS, tid) >= os.getpriority(os.PRIO_PROCESS, 0) + 10 for tid in threads)
        if cv._worker_info["group_nice"] is not None:  # the kernel groups by session: the worker's group yields too
            assert os.getsid(pid) != os.getsid(0) and cv._worker_info["group_nice"] == 19
        frames = collected(rt, "out")
        buffers = rt.runners["src"].node._buffers  # type: ignore[attr-defined]
        assert all(any(f.image is b for b in buffers) for f in frames), "frames come back as the graph's objects"
        assert await _until(lambda: rt.scope.streams.get("default") is not None)
        snap = rt.snapshot()
        node = snap["nodes"]["cv"]
        assert node["mode"] == "process" and node["processed"] >= 10 and node["errors"] == 0
        assert node["counters"]["messages"] >= 1  # the node's own counters, from its process
        assert node["counters"]["island"]["frames_shared"] >= 10 and node["counters"]["island"]["alive"]
        assert node["counters"]["island"]["nice"] >= 10
        edge = next(e for e in snap["edges"] if e["to"] == "cv/inp")
        assert edge["policy"] == "latest" and edge["size"] == 1 and edge["depth"] <= 1
        console = Console(width=200, record=True)
        console.print(render(snap))
        assert f"pid {pid}" in console.export_text(), "flowgraph top shows the worker"
    assert rt.exit_code == 0
    assert not _alive(pid), "the worker ends with the graph"


async def test_latest_holds_one_frame_in_flight_and_counts_drops() -> None:
    async with running("""
nodes:
  src: {node: frames, params: {width: 320, height: 180, fps: 100}}
  cv: {node: burn, isolation: process, nice: 0, params: {ms: 60}, inputs: {inp: {from: src/frames, policy: latest}}}
  out: {node: collect, inputs: {inp: cv/out}}
""") as rt:
        assert await _until(lambda: rt.runners["cv"].stats.processed >= 5)
        edge = next(e for e in rt.snapshot()["edges"] if e["to"] == "cv/inp")
        assert edge["drops"] > 0 and edge["depth"] <= 1
        got = [f.frame_id for f in collected(rt, "out")]
        assert got == sorted(got) and len(set(got)) == len(got)
        assert max(b - a for a, b in itertools.pairwise(got)) > 1, "frames were skipped, not queued"


async def test_block_edge_backpressures_across_the_boundary_losslessly() -> None:
    rt = await run_to_end("""
nodes:
  src: {node: frames, params: {width: 320, height: 180, fps: 0, count: 30}}
  cv:
    node: burn
    isolation: process
    nice: 0
    params: {ms: 0}
    inputs: {inp: {from: src/frames, policy: block, queue: 2}}
  out: {node: collect, inputs: {inp: {from: cv/out, policy: block}}}
""", timeout=120)
    assert rt.exit_code == 0
    assert [f.frame_id for f in collected(rt, "out")] == list(range(30))
    edge = next(e for e in rt.snapshot()["edges"] if e["to"] == "cv/inp")
    assert edge["drops"] == 0


async def test_a_killed_worker_is_restarted_per_on_error() -> None:
    async with running("""
nodes:
  src: {node: frames, params: {width: 320, height: 180, fps: 60}}
  cv:
    node: burn
    isolation: process
    nice: 0
    params: {ms: 20}
    on_error: {policy: restart, backoff_s: 0.1}
    inputs: {inp: {from: src/frames, policy: latest}}
  out: {node: collect, inputs: {inp: cv/out}}
""") as rt:
        runner = rt.runners["cv"]
        node = runner.node
        assert await _until(lambda: runner.stats.processed >= 3)
        first = node.transport.pid
        os.kill(first, signal.SIGKILL)
        assert await _until(lambda: node.transport.pid not in (None, first) and node.transport.alive)
        before = runner.stats.processed
        assert await _until(lambda: runner.stats.processed >= before + 3), "messages flow through the new worker"
        # killed mid-call, the supervisor restarts the node (restarts counted); killed between two messages, the
        # next message starts a fresh worker first — either way one death and a second start are counted
        island = node.counters()["island"]
        assert island["worker_deaths"] >= 1 and island["worker_starts"] >= 2
        assert not _alive(first)


async def test_skip_message_starts_a_fresh_worker_for_the_next_message() -> None:
    async with running("""
nodes:
  src: {node: frames, params: {width: 32, height: 16, fps: 50}}
  cv: {node: burn, isolation: process, nice: 0, params: {ms: 1}, inputs: {inp: {from: src/frames, policy: latest}}}
  out: {node: collect, inputs: {inp: cv/out}}
""") as rt:
        runner = rt.runners["cv"]
        node = runner.node
        assert await _until(lambda: runner.stats.processed >= 3)
        first = node.transport.pid
        os.kill(first, signal.SIGKILL)
        assert await _until(lambda: node.transport.pid not in (None, first) and node.transport.alive)
        before = runner.stats.processed
        assert await _until(lambda: runner.stats.processed >= before + 3)
        # the kill may land between messages (nothing lost, no error) or during one (one error, skipped):
        # either way the death is counted and a fresh worker serves the next messages
        assert runner.stats.state == "running" and node.worker_deaths >= 1 and node.worker_starts >= 2
        if runner.stats.errors:  # a message was in the worker when it died: its error names the death
            assert "ended" in (runner.stats.last_error or "")


async def test_an_exception_in_the_worker_goes_through_on_error_with_its_traceback() -> None:
    async with running("""
nodes:
  src: {node: frames, params: {width: 32, height: 16, fps: 50}}
  cv:
    node: burn
    isolation: process
    nice: 0
    params: {ms: 1, fail_every: 3}
    inputs: {inp: {from: src/frames, policy: latest}}
  out: {node: collect, inputs: {inp: cv/out}}
""") as rt:
        runner = rt.runners["cv"]
        assert await _until(lambda: runner.stats.errors >= 2 and runner.stats.processed >= 4)
        pid = runner.node.transport.pid
        assert "RuntimeError: injected failure" in (runner.stats.last_error or "")
        assert "burn.py" in (runner.stats.last_error or ""), "the worker's traceback comes with the error"
        assert runner.node.counters()["island"]["worker_deaths"] == 0 and runner.node.transport.pid == pid
    assert rt.exit_code == 0


def test_ctrl_c_leaves_no_worker_behind(tmp_path: Path, free_port: int) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text("""
name: ctrlc
nodes:
  src: {node: frames, params: {width: 320, height: 180, fps: 30}}
  cv: {node: burn, isolation: process, nice: 0, params: {ms: 5}, inputs: {inp: {from: src/frames, policy: latest}}}
  out: {node: collect, params: {keep: 10}, inputs: {inp: cv/out}}
""")
    proc = subprocess.Popen([sys.executable, "-m", "flowgraph.cli", "run", str(graph), "--port", str(free_port),
                             "--serve"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{free_port}"
    try:
        pid = None
        deadline = time.monotonic() + 60
        while pid is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/api/metrics", timeout=5) as response:
                    snap = json.load(response)
                pid = snap["nodes"]["cv"]["counters"].get("island", {}).get("pid")
            except OSError:
                pass
            time.sleep(0.1)
        assert pid is not None and _alive(pid)
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            assert 'node="cv"' in response.read().decode()
        with urllib.request.urlopen(f"{url}/graph", timeout=5) as response:
            assert "process" in response.read().decode()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        assert not _alive(pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_cancelled_stop_still_kills_the_worker() -> None:
    """A drain timeout may cancel a node while it waits for its worker to stop: the worker must not survive."""
    import logging

    from flowgraph.island.local import LocalProcess
    from flowgraph.island.transport import WorkerDied, WorkerSpec
    from flowgraph.nodes.core.burn import Burn

    transport = LocalProcess("slow")
    spec = WorkerSpec(node_class="flowgraph.nodes.core.burn:Burn", name="slow", graph="g", device="cpu",
                      params=Burn.Params(ms=20_000, kind="python"), nice=0, log_level=logging.WARNING)
    await transport.start(spec, timeout=60)
    pid = transport.pid
    assert pid is not None
    busy = asyncio.ensure_future(transport.call("inp", VideoFrame(image=np.zeros((4, 4, 3), np.uint8))))
    await asyncio.sleep(0.5)  # the worker is inside the 20 s call and will not read EXIT for a while
    closing = asyncio.ensure_future(transport.close(timeout=30))
    await asyncio.sleep(0.3)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert not _alive(pid)
    with pytest.raises(WorkerDied):
        await busy
