"""``flowgraph bench``: run the benchmark scripts in ``tools/bench/`` and collect their tables into a report.

Each script prints its own table with a baseline measured in the same run; this runner only sequences them,
shows progress, keeps their output, and writes ``report.md`` (plus whatever files the scripts put in the
results folder, e.g. PNG plots) so one command regenerates the whole report.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path


def bench_dir() -> Path:
    """``tools/bench`` of the checkout this package runs from (benchmarks are not installed with the wheel)."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = base / "tools" / "bench"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("tools/bench not found: run flowgraph bench from a flowgraph checkout")


def scripts(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith("_"))


def describe(script: Path) -> str:
    """First line of the script's docstring."""
    try:
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")))
    except SyntaxError:
        return ""
    return doc.strip().splitlines()[0] if doc else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowgraph bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--only", default="", help="comma-separated benchmark names (file stems) to run")
    parser.add_argument("--out", default="", help="results folder (default results/<timestamp>)")
    parser.add_argument("--quick", action="store_true", help="pass --quick to scripts that accept it")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    args = parser.parse_args(argv)

    directory = bench_dir()
    found = scripts(directory)
    if args.list:
        for script in found:
            print(f"{script.stem:<28} {describe(script)}")
        return 0
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = wanted - {s.stem for s in found}
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(sorted(unknown))} (see --list)", file=sys.stderr)
        return 2
    selected = [s for s in found if not wanted or s.stem in wanted]
    out = Path(args.out or Path("results") / dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, FLOWGRAPH_RESULTS=str(out.resolve()))
    sections: list[str] = []
    failures = 0
    for index, script in enumerate(selected, 1):
        command = [sys.executable, str(script)]
        if args.quick and "--quick" in script.read_text(encoding="utf-8"):
            command.append("--quick")
        print(f"[{index}/{len(selected)}] {script.stem}: {describe(script)}", flush=True)
        started = time.monotonic()
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env=env)
            output, code = result.stdout + (("\n" + result.stderr) if result.returncode else ""), result.returncode
        except subprocess.TimeoutExpired as exc:
            partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            output, code = f"{partial}\n(timed out after {args.timeout:.0f} s)", 124
        seconds = time.monotonic() - started
        status = "ok" if code == 0 else f"exit {code}"
        missing = [line.strip() for line in output.splitlines() if "unavailable:" in line]
        if missing:  # a baseline that could not run is named in the report, never silently left out
            status += f", {len(missing)} case(s) unavailable: " + "; ".join(missing)
        failures += code != 0
        print(f"      {status} in {seconds:.0f} s", flush=True)
        (out / f"{script.stem}.txt").write_text(output, encoding="utf-8")
        sections.append(f"## {script.stem}\n\n{describe(script)}\n\n{status}, {seconds:.0f} s\n\n"
                        f"```\n{output.strip()}\n```\n")
    plots = directory / "_plots.py"
    if plots.exists():  # matplotlib lives with the benchmarks, not in the framework
        subprocess.run([sys.executable, str(plots), str(out)], check=False, timeout=300)
    header = (f"# flowgraph benchmark report\n\n{dt.datetime.now().isoformat(timespec='seconds')} · "
              f"{os.cpu_count()} CPUs · Python {sys.version.split()[0]}\n\n")
    images = sorted(p.name for p in out.glob("*.png"))
    figures = "".join(f"![{name}]({name})\n\n" for name in images)
    (out / "report.md").write_text(header + figures + "\n".join(sections), encoding="utf-8")
    print(f"report: {out / 'report.md'}")
    return 1 if failures else 0
