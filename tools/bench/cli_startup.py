"""CLI start-up: `flowgraph validate|nodes|viz` wall time as a user runs them, beside bare Python start-up.

Each command runs as a fresh process (what a user waits for), repeated and interleaved; the table gives the median
and best wall time, and the baseline is `python -c "import yaml, jsonschema, networkx"` — the libraries validation
needs, imported and nothing done — so the difference is flowgraph's own cost.

    python tools/bench/cli_startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _report import record

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "graphs" / "demo.yaml")
FLOWGRAPH = [sys.executable, "-m", "flowgraph.cli"]


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="3 repeats")
    args = ap.parse_args()
    repeat = 3 if args.quick else args.repeat
    commands = {
        "baseline: python -c 'import yaml, jsonschema, networkx'":
            [sys.executable, "-c", "import yaml, jsonschema, networkx"],
        "flowgraph validate graphs/demo.yaml": [*FLOWGRAPH, "validate", DEMO],
        "flowgraph validate --plan graphs/demo.yaml": [*FLOWGRAPH, "validate", "--plan", DEMO],
        "flowgraph nodes": [*FLOWGRAPH, "nodes"],
        "flowgraph viz graphs/demo.yaml --format mermaid": [*FLOWGRAPH, "viz", DEMO, "--format", "mermaid"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):  # interleaved: every command sees the same spells of load
        for name, command in commands.items():
            times[name].append(wall(command))
    base = statistics.median(next(iter(times.values())))
    print(f"CLI wall time per command, {repeat} runs each, fresh process per run; {os.cpu_count()} cores "
          f"(load {os.getloadavg()[0]:.1f})\n")
    print(f"{'command':<56}{'median s':>10}{'best s':>9}{'over baseline s':>17}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<56}{median:>10.3f}{min(values):>9.3f}{median - base:>17.3f}")
    record("cli_startup", {name: values for name, values in times.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
