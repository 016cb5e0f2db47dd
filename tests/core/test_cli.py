"""The command line as a user runs it: validate, nodes, viz, run (with Ctrl-C), top."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowgraph.cli import main

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "graphs" / "hello.yaml"
HEAVY = ("torch", "av", "aiortc", "cv2", "mediapipe", "onnxruntime", "aiohttp", "redis", "asyncpg", "kornia")


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowgraph.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_validate_ok_and_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(HELLO)]) == 0
    assert "ok (5 nodes, 4 edges, 4 stages)" in capsys.readouterr().out
    assert main(["validate", str(HELLO), "--plan"]) == 0
    plan = capsys.readouterr().out
    assert "stage ticks: async on cpu (fused: ticks -> relay)" in plan
    assert "relay/out -> slow/inp  Data  [drop_oldest, queue 4]" in plan
    assert main(["validate", str(HELLO), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stages"]["ticks"] == ["ticks", "relay"]


def test_validate_with_set_override(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(HELLO), "--set", "ticks.hz=-3"]) == 2
    assert capsys.readouterr().err.startswith("--set:1:")


def test_validate_nodes_viz_do_not_import_heavy_libraries() -> None:
    code = (
        "import sys; from flowgraph.cli import main;"
        f"main(['validate', {str(HELLO)!r}]); main(['nodes']); main(['viz', {str(HELLO)!r}, '--format', 'mermaid']);"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
    # how fast that is, is a benchmark's question: tools/bench/cli_startup.py


def test_nodes_lists_ports_types_and_params(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nodes", "tick"]) == 0
    out = capsys.readouterr().out
    assert "tick  [async, source]" in out and "out out: Data" in out and "hz: number = 10.0" in out
    assert main(["nodes", "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert {"tick", "collect", "passthrough"} <= {i["name"] for i in infos}
    by_name = {i["name"]: i for i in infos}
    assert by_name["vibrio"]["max_batch"] == 8 and by_name["tick"]["max_batch"] is None
    assert main(["nodes", "vibrio"]) == 0
    assert "vibrio  [thread, gpu, batches up to 8]" in capsys.readouterr().out
    assert main(["nodes", "nope"]) == 2


@pytest.mark.parametrize("fmt", ["dot", "mermaid", "html", "svg", "png"])
def test_viz_formats(fmt: str, tmp_path: Path) -> None:
    out = tmp_path / f"g.{fmt}"
    assert main(["viz", str(HELLO), "-o", str(out)]) == 0
    data = out.read_bytes()
    expected = {"dot": b'digraph "hello"', "mermaid": b"flowchart LR", "html": b"<svg",
                "svg": b"<svg", "png": b"\x89PNG"}[fmt]
    assert expected in data[:4000]
    if fmt in ("dot", "html", "mermaid"):
        assert b"drop_oldest" in data and b"fused" in data


def test_run_stops_cleanly_on_ctrl_c(tmp_path: Path, free_port: int) -> None:
    out = tmp_path / "ticks.jsonl"
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "nodes:\n"
        "  t: {node: tick, params: {hz: 200}}\n"
        f"  c: {{node: collect, params: {{path: '{out}'}}, inputs: {{inp: {{from: t/out, policy: block}}}}}}\n"
    )
    proc = subprocess.Popen([sys.executable, "-m", "flowgraph.cli", "run", str(graph), "--serve", "--port",
                             str(free_port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 2000):
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert f"http://127.0.0.1:{free_port}/" in stdout
    assert "stopping graph" in stderr
    lines = out.read_text().splitlines()
    assert [json.loads(line)["value"] for line in lines] == list(range(len(lines)))  # lossless, in order


def test_run_duration_and_top_once(tmp_path: Path, free_port: int) -> None:
    result = run_cli("run", str(HELLO), "--duration", "1", "--port", str(free_port), "--serve")
    assert result.returncode == 0, result.stderr
    proc = subprocess.Popen([sys.executable, "-m", "flowgraph.cli", "run", str(HELLO), "--port", str(free_port),
                             "--serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        top = None
        for _ in range(100):
            time.sleep(0.2)
            top = run_cli("top", f"http://127.0.0.1:{free_port}", "--once")
            if top.returncode == 0:
                break
        assert top is not None and top.returncode == 0, top.stderr if top else ""
        assert "ticks" in top.stdout and "drop_oldest" in top.stdout
    finally:
        os.kill(proc.pid, signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_top_unreachable(free_port: int) -> None:
    result = run_cli("top", f"http://127.0.0.1:{free_port}", "--once")
    assert result.returncode == 1 and "cannot reach" in result.stderr
