"""Where a benchmark leaves its raw results for `flowgraph bench` to plot: ``$FLOWGRAPH_RESULTS/<name>.json``,
and how it says that a case or baseline could not run (a row in its table, never a line on stderr only)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def record(name: str, data: Any) -> Path | None:
    """Write ``data`` as JSON beside the report when a results folder is set (no-op otherwise)."""
    folder = os.environ.get("FLOWGRAPH_RESULTS")
    if not folder:
        return None
    path = Path(folder) / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, default=str))
    return path


#: What ``flowgraph bench`` looks for in a script's output to mark the report "baseline unavailable".
UNAVAILABLE = "unavailable:"


def unavailable_row(case: str, why: str, width: int = 24) -> str:
    """The table row for a case that could not run, e.g. ``janus  unavailable: janus not installed``."""
    reason = " ".join(why.split())[:200]
    return f"{case:<{width}}{UNAVAILABLE} {reason}"
