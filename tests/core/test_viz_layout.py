"""The graph page's layout: Graphviz places every edge label so that none overlaps another label or a node."""

from __future__ import annotations

import re
import shutil
from itertools import combinations
from pathlib import Path

import pytest

from flowgraph.compile import compile_plan
from flowgraph.graph_layout import NODE_H, NODE_W, graphviz_layout
from flowgraph.spec import load_spec
from flowgraph.viz import to_html

ROOT = Path(__file__).resolve().parents[2]
Box = tuple[float, float, float, float]


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _clashes(labels: list[Box], nodes: list[Box]) -> list[str]:
    found = [f"label {i} over label {j}" for (i, a), (j, b) in combinations(enumerate(labels), 2) if _overlap(a, b)]
    found += [f"label {i} over node {j}" for i, a in enumerate(labels) for j, b in enumerate(nodes) if _overlap(a, b)]
    return found


def test_the_overlap_check_sees_an_overlap() -> None:
    assert _clashes([(0, 0, 10, 10), (5, 5, 10, 10)], []) == ["label 0 over label 1"]
    assert _clashes([(0, 0, 10, 10)], [(20, 0, 10, 10)]) == []


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is installed by ./quickstart")
def test_demo_graph_labels_overlap_neither_each_other_nor_nodes() -> None:
    plan = compile_plan(load_spec(ROOT / "graphs" / "demo.yaml"))
    lay = graphviz_layout(plan)
    assert lay is not None, "dot ran but its layout could not be read"
    assert len(lay.labels) == len(plan.edges) == 10
    nodes = [(x, y, NODE_W, NODE_H) for x, y in lay.nodes.values()]
    assert _clashes([label.box for label in lay.labels], nodes) == []
    # the page draws exactly those boxes, and marks the feedback edge as such
    page = to_html(plan)
    drawn = [tuple(float(v) for v in box.split(",")) for box in re.findall(r'data-box="([^"]+)"', page)]
    assert drawn == [label.box for label in lay.labels]
    assert page.count('class="feedback"') == sum(e.feedback for e in plan.edges) == 1


async def test_rendered_labels_do_not_overlap_in_chromium(tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz is installed by ./quickstart")
    from flowgraph.nodes.webrtc.browser import Chromium

    page_file = tmp_path / "graph.html"
    page_file.write_text(to_html(compile_plan(load_spec(ROOT / "graphs" / "demo.yaml"))), encoding="utf-8")
    async with Chromium() as browser:
        page = await browser.open(page_file.as_uri(), width=2400, height=600)
        await page.wait_for("document.querySelectorAll('g.label').length === 10", timeout=20)
        boxes = await page.eval("""JSON.stringify({
            labels: [...document.querySelectorAll('g.label')].map(g => {
                const r = g.getBBox(); return [r.x, r.y, r.width, r.height]; }),
            nodes: [...document.querySelectorAll('g.node rect')].map(g => {
                const r = g.getBBox(); return [r.x, r.y, r.width, r.height]; })})""")
        await page.screenshot(tmp_path / "graph.png")
    import json

    measured = json.loads(boxes)
    labels = [tuple(b) for b in measured["labels"]]
    assert len(labels) == 10 and all(b[2] > 20 for b in labels), labels  # real text was laid out
    assert _clashes(labels, [tuple(b) for b in measured["nodes"]]) == []
