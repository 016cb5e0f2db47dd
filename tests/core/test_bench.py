"""``flowgraph bench``: a case that cannot run is named in report.md, never silently left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowgraph import bench


def test_an_unavailable_baseline_is_named_in_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = tmp_path / "tools" / "bench"
    scripts.mkdir(parents=True)
    (scripts / "demo.py").write_text('"""A benchmark with one baseline missing."""\n'
                                     'print("case        p50")\n'
                                     'print("flowgraph   14")\n'
                                     'print("janus       unavailable: janus is not installed")\n')
    (scripts / "_helper.py").write_text("raise SystemExit('helpers are not benchmarks')\n")
    monkeypatch.chdir(tmp_path)
    assert bench.main(["--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "ok, 1 case(s) unavailable: janus       unavailable: janus is not installed" in report
    assert "_helper" not in report


def test_a_failing_benchmark_fails_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = tmp_path / "tools" / "bench"
    scripts.mkdir(parents=True)
    (scripts / "broken.py").write_text('"""Always fails."""\nimport sys\nsys.exit("no server")\n')
    monkeypatch.chdir(tmp_path)
    assert bench.main(["--out", str(tmp_path / "out")]) == 1
    assert "exit 1" in (tmp_path / "out" / "report.md").read_text()
