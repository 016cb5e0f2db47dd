#!/usr/bin/env python3
"""Fuzz flowgraph's peer-controlled inputs for longer than CI does.

    tools/fuzz.py --minutes 30            # random (not derandomised) rounds until the time is up
    tools/fuzz.py --minutes 5 -k rtmp     # one surface (a pytest -k expression)

Each round runs ``tests/fuzz`` with the ``long`` hypothesis profile and ``--scale`` times CI's example counts;
rounds repeat with fresh random seeds until ``--minutes`` have passed. Prints the examples per surface and the
failures; exits 1 if any round failed (hypothesis prints the failing example and how to reproduce it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="keep fuzzing this long (default 10)")
    parser.add_argument("--scale", type=float, default=5.0, help="examples per round, times CI's (default 5)")
    parser.add_argument("-k", default=None, help="only surfaces matching this pytest -k expression")
    args = parser.parse_args()
    deadline = time.monotonic() + args.minutes * 60
    totals: Counter[str] = Counter()
    rounds = failed = 0
    while time.monotonic() < deadline:
        rounds += 1
        with tempfile.TemporaryDirectory() as folder:
            report = Path(folder) / "counts.json"
            env = {**os.environ, "FLOWGRAPH_FUZZ_PROFILE": "long", "FLOWGRAPH_FUZZ_SCALE": str(args.scale),
                   "FLOWGRAPH_FUZZ_REPORT": str(report)}
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/fuzz"]
            if args.k:
                command += ["-k", args.k]
            result = subprocess.run(command, cwd=ROOT, env=env, check=False)
            if report.exists():
                totals.update(json.loads(report.read_text()))
            if result.returncode != 0:
                failed += 1
        left = max(0.0, deadline - time.monotonic()) / 60
        print(f"round {rounds}: {'failed' if result.returncode else 'ok'}; {left:.1f} min left", flush=True)
    print(f"\n{rounds} rounds, {failed} failed; examples per surface:")
    for surface, n in sorted(totals.items()):
        print(f"  {surface:<12} {n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
