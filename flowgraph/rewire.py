"""What changes between two plans of one graph: the input of live re-wiring and of ``flowgraph diff``.

A node's identity is its name and type. Between two valid plans each node is:

``added`` / ``removed``
    its name appears in one plan only, or its type changed (the old one goes, a new one comes);
``live``
    only params the node type declares live changed (``Node.live_params``): applied in place, state kept;
``restarted``
    anything else about it changed (params, device, error policy, nice, batching): it stops, its inputs keep
    their queued messages, and a new instance starts with the new settings;
``unchanged``
    untouched: its object, its state and its channels stay as they are.

An edge is identified by its two ends; one whose policy, size or feedback flag changed is replaced.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .compile import EdgePlan, ExecutionPlan, NodePlan

EdgeKey = tuple[str, str, str, str]


def edge_key(edge: EdgePlan) -> EdgeKey:
    return (edge.source, edge.source_port, edge.target, edge.target_port)


def edge_label(key: EdgeKey) -> str:
    return f"{key[0]}/{key[1]} -> {key[2]}/{key[3]}"


@dataclass
class GraphDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    restarted: dict[str, list[str]] = field(default_factory=dict)  # node -> what changed
    live: dict[str, list[str]] = field(default_factory=dict)  # node -> live params changed
    edges_added: list[EdgeKey] = field(default_factory=list)
    edges_removed: list[EdgeKey] = field(default_factory=list)
    edges_changed: dict[EdgeKey, list[str]] = field(default_factory=dict)  # edge -> what changed
    unchanged: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.restarted or self.live or self.edges_added
                    or self.edges_removed or self.edges_changed)

    def touched(self) -> set[str]:
        """Nodes that stop or start (live updates excluded)."""
        return set(self.added) | set(self.removed) | set(self.restarted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added, "removed": self.removed, "restarted": self.restarted, "live": self.live,
            "edges_added": [edge_label(k) for k in self.edges_added],
            "edges_removed": [edge_label(k) for k in self.edges_removed],
            "edges_changed": {edge_label(k): v for k, v in self.edges_changed.items()},
            "unchanged": self.unchanged,
        }

    def describe(self) -> str:
        """One line per change, as ``flowgraph diff`` prints it."""
        if self.empty:
            return "no changes"
        lines = [f"+ node {n}" for n in self.added]
        lines += [f"- node {n}" for n in self.removed]
        lines += [f"~ node {n} restarts: {', '.join(why)}" for n, why in self.restarted.items()]
        lines += [f"~ node {n} live: {', '.join(why)} (no restart)" for n, why in self.live.items()]
        lines += [f"+ edge {edge_label(k)}" for k in self.edges_added]
        lines += [f"- edge {edge_label(k)}" for k in self.edges_removed]
        lines += [f"~ edge {edge_label(k)}: {', '.join(why)}" for k, why in self.edges_changed.items()]
        lines.append(f"  {len(self.unchanged)} node(s) unchanged" + (f": {', '.join(self.unchanged)}"
                                                                      if self.unchanged else ""))
        return "\n".join(lines)


def _param_changes(old: Any, new: Any) -> list[str]:
    if dataclasses.is_dataclass(old) and dataclasses.is_dataclass(new) and type(old) is type(new):
        return [f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]
    return [] if old == new else ["params"]


def _node_changes(old: NodePlan, new: NodePlan) -> tuple[list[str], list[str]]:
    """(params that changed, other settings that changed)."""
    settings = [name for name, a, b in (("device", old.device, new.device), ("on_error", old.on_error, new.on_error),
                                        ("nice", old.nice, new.nice), ("idle", old.idle, new.idle),
                                        ("cpus", old.cpus, new.cpus),
                                        ("max_batch", old.max_batch, new.max_batch),
                                        ("batch_wait_ms", old.batch_wait_ms, new.batch_wait_ms)) if a != b]
    return _param_changes(old.params, new.params), settings


def diff_plans(old: ExecutionPlan, new: ExecutionPlan) -> GraphDiff:
    result = GraphDiff()
    for name, node in new.nodes.items():
        before = old.nodes.get(name)
        if before is None or before.node_type != node.node_type:
            result.added.append(name)
            if before is not None:
                result.removed.append(name)
            continue
        params, settings = _node_changes(before, node)
        live = set(getattr(node.cls, "live_params", ()))
        if settings or any(p not in live for p in params):
            result.restarted[name] = settings + [f"params.{p}" for p in params]
        elif params:
            result.live[name] = [f"params.{p}" for p in params]
        else:
            result.unchanged.append(name)
    result.removed += [name for name in old.nodes if name not in new.nodes]
    before_edges = {edge_key(e): e for e in old.edges}
    after_edges = {edge_key(e): e for e in new.edges}
    for key, edge in after_edges.items():
        previous = before_edges.get(key)
        if previous is None:
            result.edges_added.append(key)
            continue
        changed = [f"{attr} {getattr(previous, attr)} -> {getattr(edge, attr)}" for attr in ("policy", "queue",
                                                                                               "feedback")
                   if getattr(previous, attr) != getattr(edge, attr)]
        if changed:
            result.edges_changed[key] = changed
    result.edges_removed = [key for key in before_edges if key not in after_edges]
    return result
