"""Where a benchmark leaves its raw results for `flowgraph bench` to plot: ``$FLOWGRAPH_RESULTS/<name>.json``."""

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
