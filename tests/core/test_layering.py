"""The framework knows no node: nothing in flowgraph/*.py (outside flowgraph/nodes/) imports the node library."""

from __future__ import annotations

import ast
from pathlib import Path

FRAMEWORK = Path(__file__).resolve().parents[2] / "flowgraph"


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against the flowgraph package
                module = "flowgraph." + module if module else "flowgraph"
                found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, module))
    return found


def test_framework_modules_import_nothing_from_the_node_library() -> None:
    modules = sorted(FRAMEWORK.glob("*.py"))
    assert len(modules) > 10, "the framework modules were not found"
    offending = [f"{path.name}:{line}: {name}" for path in modules for line, name in _imports(path)
                 if name == "flowgraph.nodes" or name.startswith("flowgraph.nodes.")]
    assert not offending, "framework modules import node code:\n" + "\n".join(offending)


def test_the_check_sees_a_relative_import_of_the_node_library(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from .nodes.core import utility\nimport flowgraph.nodes.vibrio\nfrom . import nodes\n")
    names = [name for _, name in _imports(sample)]
    assert names == ["flowgraph.nodes.core.utility", "flowgraph.nodes.vibrio", "flowgraph.nodes"]
