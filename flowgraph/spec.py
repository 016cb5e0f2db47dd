"""Graph files, step by step: load the YAML (:mod:`.yaml_loader`), check it against the graph schema
(:mod:`.graph_schema`), apply ``--set`` overrides, and normalise it into a :class:`GraphSpec` (here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import GraphError, GraphErrors, Location
from .graph_schema import check_schema
from .yaml_loader import LocMap, load_yaml, read_graph_file

#: Keys of a node that ``--set node.key=value`` sets on the node itself (anything else is a param).
NODE_SETTINGS = ("device", "on_error", "enabled", "node", "nice", "isolation", "cpus", "max_batch",
                 "batch_wait_ms")


# -- overrides ------------------------------------------------------------------------------------------------
def apply_overrides(document: Any, overrides: list[str]) -> None:
    """Apply ``--set node.param=value`` (or ``node.params.key.sub=value``, ``node.device=cuda``) in place."""
    errors: list[GraphError] = []
    for index, item in enumerate(overrides, 1):
        where = Location("--set", index, 1)
        target, sep, raw = item.partition("=")
        parts = target.split(".")
        if not sep or len(parts) < 2 or not all(parts):
            errors.append(GraphError(f"bad override {item!r}", where, "node.param=value"))
            continue
        nodes = document.get("nodes") if isinstance(document, dict) else None
        if not isinstance(nodes, dict) or parts[0] not in nodes:
            errors.append(GraphError(f"override names unknown node {parts[0]!r}", where,
                                     "one of: " + ", ".join(nodes or {})))
            continue
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        node = nodes[parts[0]]
        if parts[1] in NODE_SETTINGS and len(parts) == 2:
            container, key = node, parts[1]
        else:
            keys = parts[2:] if parts[1] == "params" and len(parts) > 2 else parts[1:]
            container = node.setdefault("params", LocMap())
            if not hasattr(container, "key_locs"):
                container = _as_locmap(container, node.loc)
                node["params"] = container
            for key in keys[:-1]:
                child = container.get(key)
                if not isinstance(child, dict):
                    child = _as_locmap(child if isinstance(child, dict) else {}, where)
                    container[key] = child
                container = child
            key = keys[-1]
        container[key] = value
        if hasattr(container, "key_locs"):
            container.key_locs[key] = where
            container.value_locs[key] = Location("--set", index, len(target) + 2)
    if errors:
        raise GraphErrors(errors) if len(errors) > 1 else errors[0]


def _as_locmap(data: dict[str, Any], where: Location) -> LocMap:
    result = LocMap(data)
    result.loc = where
    result.key_locs = {k: where for k in data}
    result.value_locs = {k: where for k in data}
    return result


# -- normalised spec ------------------------------------------------------------------------------------------
@dataclass
class EdgeSpec:
    """One wire into an input port, as written (queue/policy may be None: resolved by the compiler)."""

    source: str
    port: str
    target: str
    target_port: str
    queue: int | None
    policy: str | None
    feedback: bool
    loc: Location


@dataclass
class ErrorPolicy:
    policy: str = "skip_message"
    max_restarts: int | None = None
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclass
class NodeSpec:
    name: str
    type: str
    params: dict[str, Any]
    inputs: dict[str, list[EdgeSpec]]
    device: str
    on_error: ErrorPolicy
    enabled: bool
    loc: Location
    type_loc: Location
    params_doc: Any = None
    nice: int = 0
    #: ``nice: idle``: a worker process runs on CPU time nothing else wants (the idle CPU group,
    #: flowgraph.island.cpu_group); ``nice`` is then 19, all a worker thread gets (an idle thread holding the GIL
    #: would stall the event loop behind any other process)
    idle: bool = False
    #: auto | thread | process (flowgraph.island); None = auto
    isolation: str | None = None
    #: CPUs of a worker process: all | a cpuset list ("1-3,6" or [1, 2]); None = all (flowgraph.island.cpus)
    cpus: Any = None
    #: Messages per batch call (a node with ``process_batch``); None = the node type's default.
    max_batch: int | None = None
    batch_wait_ms: float = 0.0


@dataclass
class GraphSpec:
    name: str
    file: str
    nodes: dict[str, NodeSpec]
    defaults: dict[str, Any]
    server: dict[str, Any]
    document: Any = field(repr=False, default=None)


def _error_policy(value: Any) -> ErrorPolicy:
    if value is None:
        return ErrorPolicy()
    if isinstance(value, str):
        return ErrorPolicy(policy=value)
    return ErrorPolicy(
        policy=value["policy"],
        max_restarts=value.get("max_restarts"),
        backoff_s=float(value.get("backoff_s", 0.5)),
        backoff_max_s=float(value.get("backoff_max_s", 30.0)),
    )


def _edges(node: str, port: str, raw: Any, where: Location, item_locs: list[Location] | None) -> list[EdgeSpec]:
    items = list(raw) if isinstance(raw, list) else [raw]
    locs = item_locs if item_locs else [where] * len(items)
    edges = []
    for item, loc in zip(items, locs, strict=True):
        if isinstance(item, str):
            source, source_port = item.split("/", 1)
            edges.append(EdgeSpec(source, source_port, node, port, None, None, False, loc))
        else:
            source, source_port = item["from"].split("/", 1)
            edges.append(EdgeSpec(source, source_port, node, port, item.get("queue"), item.get("policy"),
                                  bool(item.get("feedback", False)), loc))
    return edges


def build_spec(document: Any, file: str) -> GraphSpec:
    """Turn a schema-valid document into a GraphSpec (no registry knowledge yet)."""
    defaults = dict(document.get("defaults") or {})
    nodes: dict[str, NodeSpec] = {}
    raw_nodes = document["nodes"]
    for name, body in raw_nodes.items():
        inputs: dict[str, list[EdgeSpec]] = {}
        raw_inputs = body.get("inputs") or {}
        for port, raw in raw_inputs.items():
            where = raw_inputs.value_locs[port] if hasattr(raw_inputs, "value_locs") else body.loc
            inputs[port] = _edges(name, port, raw, where, getattr(raw, "item_locs", None))
        idle = body.get("nice", defaults.get("nice")) == "idle"
        nodes[name] = NodeSpec(
            name=name,
            type=body["node"],
            params=dict(body.get("params") or {}),
            inputs=inputs,
            device=body.get("device", defaults.get("device", "auto")),
            on_error=_error_policy(body.get("on_error", defaults.get("on_error"))),
            enabled=bool(body.get("enabled", True)),
            nice=19 if idle else int(body.get("nice", defaults.get("nice", 0))),
            idle=idle,
            isolation=body.get("isolation", defaults.get("isolation")),
            cpus=body.get("cpus", defaults.get("cpus")),
            max_batch=body.get("max_batch"),
            batch_wait_ms=float(body.get("batch_wait_ms", 0.0)),
            loc=raw_nodes.key_locs[name],
            type_loc=body.value_locs["node"],
            params_doc=body.get("params"),
        )
    return GraphSpec(
        name=str(document.get("name") or Path(file).stem),
        file=file,
        nodes=nodes,
        defaults=defaults,
        server=dict(document.get("server") or {}),
        document=document,
    )


def load_spec(path: str | Path, overrides: list[str] | None = None, env: dict[str, str] | None = None) -> GraphSpec:
    """Read, parse, override and schema-check a graph file."""
    name, text = read_graph_file(path)
    return parse_spec(text, name, overrides, env)


def parse_spec(text: str, file: str = "<graph>", overrides: list[str] | None = None,
               env: dict[str, str] | None = None) -> GraphSpec:
    document = load_yaml(text, file, env)
    if document is None:
        raise GraphError("the graph file is empty", Location(file, 1, 1), "name: ..., nodes: {...}")
    if overrides:
        apply_overrides(document, overrides)
    check_schema(document, file)
    return build_spec(document, file)
