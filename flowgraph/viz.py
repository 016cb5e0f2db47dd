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
from typing import Any

from .compile import ExecutionPlan
from .graph_layout import NODE_H, NODE_W, fallback_layout, graphviz_layout

COLOURS = {"async": "#dbeafe", "thread": "#ccfbf1", "inline": "#e5e7eb", "cuda": "#dcfce7", "process": "#fef3c7",
           "ray": "#fce7f3"}
BORDERS = {"async": "#2563eb", "thread": "#0d9488", "inline": "#6b7280", "cuda": "#16a34a", "process": "#d97706",
           "ray": "#db2777"}


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


def _svg(plan: ExecutionPlan) -> tuple[str, int, int]:
    lay = graphviz_layout(plan) or fallback_layout(plan)
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
            f'<text x="{x + NODE_W / 2}" y="{y + 36}" class="kind">{html.escape(node.node_type)} · {node.mode}'
            f'{f" ×{node.placement.replicas}" if node.placement else ""} · '
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
 #version { color: #1d4ed8; font-size: 13px; margin-bottom: 6px; } #version.refused { color: #b91c1c; }
 #history { font-size: 12px; color: #475569; margin: 8px 0 0; padding-left: 18px; }
 .legend span { display: inline-block; padding: 2px 8px; margin-right: 6px; border-radius: 6px; font-size: 12px; }
</style></head><body>
<h1>__TITLE__</h1><div id="status">__STATUS__</div><div id="version"></div>
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
      const isl = (n.counters || {}).island;
      const ray = isl && isl.isolation === "ray" ? ` · Ray nodes ${isl.ray_nodes.map((id) => id.slice(0, 6))
        .join(",")}` + (isl.lost ? ` · ${isl.lost} lost` : "") : "";
      if (el) el.textContent = `${n.state} · ${fmt(n.rate_hz)}/s · p50 ${fmt(n.process_ms.p50)} ms` +
        (n.errors ? ` · ${n.errors} err` : "") + ray;
    }
    document.getElementById("status").textContent = `live: ${LIVE} · up ${fmt(snap.uptime_s)} s`;
  } catch (err) {
    document.getElementById("status").textContent = `live: ${LIVE} unreachable (${err})`;
  }
}
if (LIVE) { poll(); setInterval(poll, 1000); }
const VERSIONS = __VERSIONS__;
let drawn = null;  // the graph version this drawing shows; a newer one reloads the page
const ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"};
function esc(s) { return String(s).replace(/[&<>"]/g, (c) => ENTITIES[c]); }
async function versions() {
  try {
    const v = await (await fetch(VERSIONS, {cache: "no-store"})).json();
    if (drawn === null) drawn = v.version;
    else if (v.version !== drawn) { location.reload(); return; }
    const last = v.history[v.history.length - 1];
    const el = document.getElementById("version");
    el.className = v.last_error ? "refused" : "";
    el.textContent = `graph version ${v.version}` + (last.number > 1 ? ` · applied ${new Date(last.applied_at * 1000)
      .toLocaleTimeString()} in ${Math.round(last.seconds * 1000)} ms` : "") +
      (v.last_error ? ` · last edit refused, graph unchanged: ${v.last_error}` : "");
    const when = (h) => new Date(h.applied_at * 1000).toLocaleTimeString();
    document.getElementById("history").innerHTML = v.history.slice().reverse().map((h) =>
      `<li>v${h.number} ${when(h)} (${esc(h.source)}): ${esc(h.summary)}</li>`).join("");
  } catch (err) { /* not a live-editable graph */ }
}
if (VERSIONS) { versions(); setInterval(versions, 1000); }
</script><ul id="history"></ul></body></html>
"""


def to_html(plan: ExecutionPlan, live_url: str | None = None, versions_url: str | None = None) -> str:
    svg, width, height = _svg(plan)
    legend = "".join(f'<span style="background:{COLOURS[m]};border:1px solid {BORDERS[m]}">{m}</span>'
                     for m in COLOURS)
    status = f"{len(plan.nodes)} nodes · {len(plan.edges)} edges · {len(plan.stages)} stages"
    edges = [f"{e.source}/{e.source_port}->{e.target}/{e.target_port}" for e in plan.edges]
    replacements = {
        "__TITLE__": html.escape(plan.name), "__STATUS__": status, "__LEGEND__": legend, "__SVG__": svg,
        "__W__": str(width), "__H__": str(height), "__LIVE__": json.dumps(live_url or ""),
        "__EDGES__": json.dumps(edges), "__VERSIONS__": json.dumps(versions_url or ""),
    }
    page = _PAGE
    for key, value in replacements.items():
        page = page.replace(key, value)
    return page


def live_page(plan: ExecutionPlan, metrics_path: str, versions_path: str | None = None) -> str:
    """The running graph's page; with ``versions_path`` (a ``--watch`` run) it shows the applied versions and
    redraws itself when an edit lands."""
    return to_html(plan, metrics_path, versions_path)
