"""Where the graph page draws each node, edge and edge label.

Graphviz's own layered layout (``dot -Tjson``: ranks, crossing reduction, and edge labels placed as part of the
layout so none overlaps another or a node) when Graphviz is installed; layers by topological generation when not.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import networkx as nx

from .compile import ExecutionPlan

NODE_W, NODE_H = 180, 62
#: Sizes the third line of every edge label, where the live page writes the edge's figures.
LIVE_SAMPLE = "000.0/s · depth 000/000 · drops 000000"
FONT = "Helvetica"  # what dot measures labels with; the page asks the browser for the same metrics


@dataclass
class Label:
    """An edge label: its lines (the last one is the live line) at their baselines, and the box they fill."""

    lines: list[tuple[float, float, str]]
    box: tuple[float, float, float, float]  # x, y, width, height in page pixels


@dataclass
class Layout:
    width: float
    height: float
    nodes: dict[str, tuple[float, float]]  # top-left corners
    paths: list[str]  # SVG path data per edge, in plan.edges order
    labels: list[Label]


def layout(plan: ExecutionPlan) -> dict[str, tuple[float, float]]:
    """Left-to-right layers by topological generation (feedback edges ignored): the fallback without Graphviz."""
    graph = nx.DiGraph()
    graph.add_nodes_from(plan.order)
    graph.add_edges_from((e.source, e.target) for e in plan.edges if not e.feedback)
    positions: dict[str, tuple[float, float]] = {}
    for x, generation in enumerate(nx.topological_generations(graph)):
        members = sorted(generation, key=plan.order.index)
        for y, name in enumerate(members):
            positions[name] = (40 + x * 360, 60 + y * 130)
    return positions


def _label_lines(edge: Any) -> list[str]:
    return [edge.type_name + (" · feedback" if edge.feedback else ""),
            f"{edge.policy} q={edge.queue}" + (" · fused" if edge.fused else ""), LIVE_SAMPLE]


def _layout_dot(plan: ExecutionPlan) -> str:
    """The graph for Graphviz to lay out: fixed-size nodes, labels as big as the page draws them."""
    lines = [f'digraph "{plan.name}" {{', "  rankdir=LR; nodesep=0.35; ranksep=0.45; splines=true;",
             f'  node [shape=box, fixedsize=true, width={NODE_W / 72:.4f}, height={NODE_H / 72:.4f}, label=""];',
             f'  edge [fontname="{FONT}", fontsize=10];']
    lines += [f"  {json.dumps(name)};" for name in plan.order]
    for i, edge in enumerate(plan.edges):
        label = "\\n".join(_label_lines(edge)).replace('"', "'")
        lines.append(f'  {json.dumps(edge.source)} -> {json.dumps(edge.target)} [id="e{i}", label="{label}"];')
    return "\n".join([*lines, "}"]) + "\n"


def graphviz_layout(plan: ExecutionPlan) -> Layout | None:
    """Graphviz's own layered layout (``dot -Tjson``): ranks, crossing reduction, and edge labels placed as part
    of the layout so none overlaps another or a node. None when Graphviz is not installed or fails."""
    exe = shutil.which("dot")
    if exe is None or not plan.edges:
        return None
    try:
        result = subprocess.run([exe, "-Tjson"], input=_layout_dot(plan).encode(), capture_output=True, timeout=30,
                                check=False)
        data = json.loads(result.stdout) if result.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        data = None
    if not isinstance(data, dict):
        return None
    margin = 16.0
    _, _, bb_w, bb_h = (float(v) for v in str(data["bb"]).split(","))

    def point(x: float, y: float) -> tuple[float, float]:
        return round(x + margin, 1), round(bb_h - y + margin, 1)

    nodes: dict[str, tuple[float, float]] = {}
    for obj in data.get("objects", []):
        cx, cy = point(*(float(v) for v in obj["pos"].split(",")))
        nodes[obj["name"]] = (cx - NODE_W / 2, cy - NODE_H / 2)
    paths: list[str] = []
    labels: list[Label] = []
    for raw in sorted(data.get("edges", []), key=lambda e: int(str(e.get("id", "e-1"))[1:])):
        end: tuple[float, float] | None = None
        points: list[tuple[float, float]] = []
        for token in raw["pos"].split():
            if token.startswith("e,"):
                end = point(*(float(v) for v in token[2:].split(",")))
            elif not token.startswith("s,"):
                points.append(point(*(float(v) for v in token.split(","))))
        d = f"M{points[0][0]},{points[0][1]}" + "".join(
            f" C{a[0]},{a[1]} {b[0]},{b[1]} {c[0]},{c[1]}" for a, b, c in zip(points[1::3], points[2::3],
                                                                             points[3::3], strict=False))
        if end is not None:
            d += f" L{end[0]},{end[1]}"
        paths.append(d)
        size, texts = 10.0, []
        for op in raw.get("_ldraw_", []):
            if op.get("op") == "F":
                size = float(op["size"])
            elif op.get("op") == "T":
                x, y = point(*op["pt"])
                texts.append((x, y, float(op["width"]), size, str(op["text"])))
        left = min(x - w / 2 for x, _, w, _, _ in texts)
        right = max(x + w / 2 for x, _, w, _, _ in texts)
        top = min(y - sz for _, y, _, sz, _ in texts)
        bottom = max(y + sz * 0.3 for _, y, _, sz, _ in texts)
        labels.append(Label([(x, y, t) for x, y, _, _, t in texts],
                            (round(left, 1), round(top, 1), round(right - left, 1), round(bottom - top, 1))))
    if len(paths) != len(plan.edges) or len(nodes) != len(plan.nodes):
        return None
    return Layout(bb_w + 2 * margin, bb_h + 2 * margin, nodes, paths, labels)


def fallback_layout(plan: ExecutionPlan) -> Layout:
    pos = layout(plan)
    paths: list[str] = []
    labels: list[Label] = []
    for edge in plan.edges:
        x1, y1 = pos[edge.source]
        x2, y2 = pos[edge.target]
        sx, sy, tx, ty = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
        if edge.feedback or tx <= sx:
            paths.append(f"M{sx},{sy} C{sx + 80},{sy + 90} {tx - 80},{ty + 90} {tx},{ty}")
        else:
            mid = (sx + tx) / 2
            paths.append(f"M{sx},{sy} C{mid},{sy} {mid},{ty} {tx},{ty}")
        lx, ly = (sx + tx) / 2, (sy + ty) / 2 - 18
        text = _label_lines(edge)
        labels.append(Label([(lx, ly, text[0]), (lx, ly + 12, text[1]), (lx, ly + 24, "")],
                            (lx - 90, ly - 10, 180, 36)))
    width = max(x for x, _ in pos.values()) + 220
    height = max(y for _, y in pos.values()) + 110
    return Layout(width, height, pos, paths, labels)
