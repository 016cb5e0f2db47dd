"""Pictures of a graph: Graphviz DOT (→ SVG/PNG with ``dot``), Mermaid, and a self-contained HTML page.

The HTML page needs nothing but a browser: the layout is Graphviz's own (``dot -Tjson``, computed when the page is
built, edge labels placed by dot so none overlaps another or a node), drawn here as inline SVG; without Graphviz
the page falls back to layers by topological generation. Given a metrics URL it polls the running graph and writes
each edge's rate, queue depth and drops, and each node's rate and process time, onto the picture.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import networkx as nx

from .compile import ExecutionPlan

COLOURS = {"async": "#dbeafe", "thread": "#ccfbf1", "inline": "#e5e7eb", "cuda": "#dcfce7"}
BORDERS = {"async": "#2563eb", "thread": "#0d9488", "inline": "#6b7280", "cuda": "#16a34a"}


def _edge_label(edge: Any) -> str:
    label = f"{edge.type_name}\\n{edge.policy} q={edge.queue}"
    if edge.fused:
        label += " fused"
    if edge.feedback:
        label += " feedback"
    return label


def to_dot(plan: ExecutionPlan) -> str:
    lines = [f'digraph "{plan.name}" {{', "  rankdir=LR;", '  node [shape=box, style="rounded,filled", '
             'fontname="Helvetica", fontsize=11];', '  edge [fontname="Helvetica", fontsize=9];']
    for stage, members in plan.stages.items():
        if len(members) > 1:
            lines.append(f'  subgraph "cluster_{stage}" {{ label="stage {stage}"; style=dashed; '
                         + " ".join(f'"{m}";' for m in members) + " }")
    for name in plan.order:
        node = plan.nodes[name]
        label = f"{name}\\n{node.node_type} @ {node.device}"
        lines.append(f'  "{name}" [label="{label}", fillcolor="{COLOURS[node.mode]}", color="{BORDERS[node.mode]}"];')
    for edge in plan.edges:
        style = ', style=dashed' if edge.feedback else ""
        lines.append(f'  "{edge.source}" -> "{edge.target}" [label="{_edge_label(edge)}"{style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_dot(dot: str, fmt: str) -> bytes:
    """SVG or PNG through Graphviz's ``dot`` (Debian package ``graphviz``)."""
    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError("Graphviz 'dot' is not installed (apt-get install graphviz); "
                           "use --format html or mermaid instead")
    result = subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"dot failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def to_mermaid(plan: ExecutionPlan) -> str:
    ids = {name: f"n{i}" for i, name in enumerate(plan.order)}
    lines = ["flowchart LR"]
    for name in plan.order:
        node = plan.nodes[name]
        lines.append(f'  {ids[name]}["{name}<br/>{node.node_type} @ {node.device}"]:::{node.mode}')
    for edge in plan.edges:
        arrow = "-.->" if edge.feedback else "-->"
        label = f"{edge.type_name} {edge.policy} q={edge.queue}" + (" fused" if edge.fused else "")
        lines.append(f"  {ids[edge.source]} {arrow}|{label}| {ids[edge.target]}")
    for mode, colour in COLOURS.items():
        lines.append(f"  classDef {mode} fill:{colour},stroke:{BORDERS[mode]}")
    return "\n".join(lines) + "\n"


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


def _fallback_layout(plan: ExecutionPlan) -> Layout:
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


def _svg(plan: ExecutionPlan) -> tuple[str, int, int]:
    lay = graphviz_layout(plan) or _fallback_layout(plan)
    parts = []
    for i, (edge, path, label) in enumerate(zip(plan.edges, lay.paths, lay.labels, strict=True)):
        kind = "feedback" if edge.feedback else "edge"
        parts.append(f'<path d="{path}" class="{kind}" marker-end="url(#arrow-{kind})"/>')
        texts = []
        for n, (x, y, text) in enumerate(label.lines):
            if n == len(label.lines) - 1:  # the live line: the page fills it in
                texts.append(f'<text x="{x}" y="{y}" class="live halo" id="edge-{i}"></text>')
            else:
                texts.append(f'<text x="{x}" y="{y}" class="{kind}-label halo">{html.escape(text)}</text>')
        bx, by, bw, bh = label.box
        parts.append(f'<g class="label" data-box="{bx},{by},{bw},{bh}">{"".join(texts)}</g>')
    for name in plan.order:
        node = plan.nodes[name]
        x, y = lay.nodes[name]
        parts.append(
            f'<g class="node"><rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="8" '
            f'fill="{COLOURS[node.mode]}" stroke="{BORDERS[node.mode]}" stroke-width="1.5"/>'
            f'<text x="{x + NODE_W / 2}" y="{y + 20}" class="name">{html.escape(name)}</text>'
            f'<text x="{x + NODE_W / 2}" y="{y + 36}" class="kind">{html.escape(node.node_type)} · {node.mode} · '
            f'{html.escape(node.device)}</text>'
            f'<text x="{x + NODE_W / 2}" y="{y + 52}" class="live" id="node-{html.escape(name)}"></text></g>')
    return "\n".join(parts), int(lay.width), int(lay.height)


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>flowgraph · __TITLE__</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 16px; background: #f8fafc; color: #0f172a; }
 h1 { font-size: 18px; margin: 0 0 4px; } #status { color: #475569; font-size: 13px; margin-bottom: 8px; }
 svg text { font-family: Helvetica, Arial, "Liberation Sans", sans-serif; text-anchor: middle; }
 path.edge { fill: none; stroke: #64748b; stroke-width: 1.5; }
 path.feedback { fill: none; stroke: #c2410c; stroke-width: 1.8; stroke-dasharray: 6,4; }
 .name { font-weight: 600; font-size: 13px; } .kind { font-size: 10px; fill: #334155; }
 .halo { paint-order: stroke; stroke: #f8fafc; stroke-width: 4px; }
 .edge-label { font-size: 10px; fill: #475569; } .feedback-label { font-size: 10px; fill: #c2410c; font-weight: 600; }
 .live { font-size: 10px; fill: #b45309; }
 .legend span { display: inline-block; padding: 2px 8px; margin-right: 6px; border-radius: 6px; font-size: 12px; }
</style></head><body>
<h1>__TITLE__</h1><div id="status">__STATUS__</div>
<div class="legend">__LEGEND__</div>
<svg xmlns="http://www.w3.org/2000/svg" width="__W__" height="__H__" viewBox="0 0 __W__ __H__">
<defs><marker id="arrow-edge" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
<path d="M0,0 L10,5 L0,10 z" fill="#64748b"/></marker>
<marker id="arrow-feedback" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
<path d="M0,0 L10,5 L0,10 z" fill="#c2410c"/></marker></defs>
__SVG__
</svg>
<script>
const LIVE = __LIVE__;
const EDGES = __EDGES__;
function fmt(v) { return v === null || v === undefined ? "–" : (Math.round(v * 10) / 10); }
async function poll() {
  try {
    const res = await fetch(LIVE, {cache: "no-store"});
    const snap = await res.json();
    snap.edges.forEach((e) => {
      const i = EDGES.indexOf(e.from + "->" + e.to);
      const el = document.getElementById("edge-" + i);
      if (el) el.textContent = `${fmt(e.rate_hz)}/s · depth ${e.depth}/${e.size} · drops ${e.drops}`;
    });
    for (const [name, n] of Object.entries(snap.nodes)) {
      const el = document.getElementById("node-" + name);
      if (el) el.textContent = `${n.state} · ${fmt(n.rate_hz)}/s · p50 ${fmt(n.process_ms.p50)} ms` +
        (n.errors ? ` · ${n.errors} err` : "");
    }
    document.getElementById("status").textContent = `live: ${LIVE} · up ${fmt(snap.uptime_s)} s`;
  } catch (err) {
    document.getElementById("status").textContent = `live: ${LIVE} unreachable (${err})`;
  }
}
if (LIVE) { poll(); setInterval(poll, 1000); }
</script></body></html>
"""


def to_html(plan: ExecutionPlan, live_url: str | None = None) -> str:
    svg, width, height = _svg(plan)
    legend = "".join(f'<span style="background:{COLOURS[m]};border:1px solid {BORDERS[m]}">{m}</span>'
                     for m in COLOURS)
    status = f"{len(plan.nodes)} nodes · {len(plan.edges)} edges · {len(plan.stages)} stages"
    edges = [f"{e.source}/{e.source_port}->{e.target}/{e.target_port}" for e in plan.edges]
    replacements = {
        "__TITLE__": html.escape(plan.name), "__STATUS__": status, "__LEGEND__": legend, "__SVG__": svg,
        "__W__": str(width), "__H__": str(height), "__LIVE__": json.dumps(live_url or ""),
        "__EDGES__": json.dumps(edges),
    }
    page = _PAGE
    for key, value in replacements.items():
        page = page.replace(key, value)
    return page


def live_page(plan: ExecutionPlan, metrics_path: str) -> str:
    return to_html(plan, metrics_path)
