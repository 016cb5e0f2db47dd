"""From a GraphSpec to a checked, placed, fused ExecutionPlan — every error found before anything starts.

:func:`compile_plan` runs five steps; each collects every error it finds and reports them together before the
next step runs: node types, params and devices, wiring (:mod:`.wiring`), cycles and order, placement and fusion.
"""

from __future__ import annotations

import os
from typing import Any

import networkx as nx

from . import devices
from .access import check_exposure
from .channel import Policy
from .errors import GraphError, GraphErrors, Location, ParamsError
from .graph_schema import locate
from .node import Node
from .params import validate as validate_params
from .plan import EdgePlan as EdgePlan
from .plan import ExecutionPlan as ExecutionPlan
from .plan import NodePlan as NodePlan
from .registry import Registry
from .spec import GraphSpec, NodeSpec
from .wiring import port_list, suggest, wire_edge

Classes = dict[str, type[Node]]


def compile_plan(spec: GraphSpec, registry: Registry | None = None) -> ExecutionPlan:
    """Check the spec against node types, params, ports, types, cycles and devices; place and fuse."""
    enabled = {name: n for name, n in spec.nodes.items() if n.enabled}
    classes = _node_types(enabled, registry or Registry.default())
    params, placed = _params_and_devices(spec, enabled, classes)
    edges, graph = _wiring(spec, enabled, classes)
    order = _order(graph)
    nodes = _place(enabled, classes, params, placed, order)
    _batching(spec, enabled, nodes)
    _isolate(spec, enabled, nodes)
    _fuse(enabled, nodes, edges, order)
    cluster = spec.document.get("cluster")
    plan = ExecutionPlan(name=spec.name, file=spec.file, nodes=nodes, edges=edges, order=order,
                         server=spec.server, document=spec.document, cluster=dict(cluster) if cluster else None)
    check_exposure(plan)  # secure by default: nothing listens beyond loopback without credentials
    return plan


def _node_types(enabled: dict[str, NodeSpec], registry: Registry) -> Classes:
    """Step 1: every node names a registered type that loads."""
    errors: list[GraphError] = []
    classes: Classes = {}
    for name, node in enabled.items():
        if node.type not in registry:
            errors.append(GraphError(f"unknown node type {node.type!r} for node {name!r}", node.type_loc,
                                     suggest(node.type, registry.names())))
            continue
        try:
            classes[name] = registry.get(node.type)
        except Exception as exc:  # a broken plugin must be reported, not crash validation
            errors.append(GraphError(f"node type {node.type!r} failed to load: {exc}", node.type_loc,
                                     "an importable node class"))
    _raise(errors)
    return classes


def _params_and_devices(spec: GraphSpec, enabled: dict[str, NodeSpec], classes: Classes
                        ) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """Step 2: params validate against each type's schema; devices resolve (``auto`` picks CUDA when usable)."""
    errors: list[GraphError] = []
    params: dict[str, Any] = {}
    placed: dict[str, tuple[str, str]] = {}
    for name, node in enabled.items():
        cls = classes[name]
        try:
            params[name] = validate_params(cls.Params, node.params)
        except ParamsError as exc:
            where = _params_location(spec.document, node, exc.path)
            errors.append(GraphError(f"node {name!r}: {exc.message}", where, exc.expected))
        try:
            placed[name] = devices.resolve(node.device, cls.gpu)
        except ValueError as exc:
            where = locate(spec.document, ["nodes", name, "device"]) or node.loc
            errors.append(GraphError(f"node {name!r}: {exc}", where,
                                     "auto or cpu" if not cls.gpu else "auto, cpu, or a CUDA device that exists"))
    _raise(errors)
    return params, placed


def _wiring(spec: GraphSpec, enabled: dict[str, NodeSpec], classes: Classes
            ) -> tuple[list[EdgePlan], nx.MultiDiGraph[str]]:
    """Step 3: every wire names a real port with a handler, types agree, required inputs are connected."""
    doc = spec.document
    errors: list[GraphError] = []
    edges: list[EdgePlan] = []
    graph: nx.MultiDiGraph[str] = nx.MultiDiGraph()
    graph.add_nodes_from(enabled)
    for name, node in enabled.items():
        cls = classes[name]
        unknown_port = False
        for port, wires in node.inputs.items():
            port_loc = locate(doc, ["nodes", name, "inputs", port], key=True) or node.loc
            if port not in cls.inputs:
                unknown_port = True
                errors.append(GraphError(f"node {name!r} ({node.type}) has no input {port!r}", port_loc,
                                         port_list(cls.inputs, "inputs")))
                continue
            if cls.handler_name(port) is None:
                errors.append(GraphError(f"node type {node.type!r} has no handler for input {port!r}", port_loc,
                                         f"an on_{port} or process method"))
                continue
            accepted = cls.inputs[port].type
            for wire in wires:
                edge = wire_edge(spec, enabled, classes, wire, accepted, errors)
                if edge is not None:
                    edges.append(edge)
                    graph.add_edge(edge.source, edge.target, feedback=edge.feedback, loc=wire.loc)
        for port, declared in cls.inputs.items():
            if declared.required and not node.inputs.get(port) and not unknown_port:
                errors.append(GraphError(f"node {name!r} ({node.type}): required input {port!r} is not connected",
                                         locate(doc, ["nodes", name], key=True) or node.loc,
                                         f"inputs: {{{port}: node/port}} carrying {declared.type.__name__}"))
    _raise(errors)
    return edges, graph


def _order(graph: nx.MultiDiGraph[str]) -> list[str]:
    """Step 4: no cycle except through edges marked ``feedback``; the topological order of the rest."""
    forward: nx.DiGraph[str] = nx.DiGraph()
    forward.add_nodes_from(graph.nodes)
    forward.add_edges_from((u, v, d) for u, v, d in graph.edges(data=True) if not d["feedback"])
    try:
        cycle = nx.find_cycle(forward)
    except nx.NetworkXNoCycle:
        cycle = []
    if cycle:
        path = " -> ".join([cycle[0][0], *(v for _, v, *_ in cycle)])
        u, v = cycle[-1][0], cycle[-1][1]
        loc = forward.edges[u, v]["loc"]
        raise GraphError(f"cycle {path}", loc, "an acyclic graph, or mark the closing edge feedback: true")
    return list(nx.topological_sort(forward))


def _place(enabled: dict[str, NodeSpec], classes: Classes, params: dict[str, Any],
           placed: dict[str, tuple[str, str]], order: list[str]) -> dict[str, NodePlan]:
    """Step 5a: each node on its device, in its own stage, with its run mode (async, thread, inline, cuda)."""
    nodes: dict[str, NodePlan] = {}
    for name in order:
        cls = classes[name]
        device, why = placed[name]
        nodes[name] = NodePlan(name=name, node_type=enabled[name].type, cls=cls, params=params[name], device=device,
                               device_why=why, mode=_mode(cls, device), stage=name,
                               on_error=enabled[name].on_error, source=cls.is_source(), nice=enabled[name].nice,
                               idle=enabled[name].idle)
    return nodes


def _batching(spec: GraphSpec, enabled: dict[str, NodeSpec], nodes: dict[str, NodePlan]) -> None:
    """Step 5a, continued: ``max_batch`` — how many queued messages a node with ``process_batch`` takes per call."""
    errors: list[GraphError] = []
    for name, node in nodes.items():
        asked = enabled[name].max_batch
        batches = bool(node.cls.batch_ports()) and not node.source and node.mode != "inline"
        if asked is not None and asked > 1 and not batches:
            errors.append(GraphError(
                f"node {name!r} ({node.node_type}) cannot take batches: it has no batch handler (process_batch)",
                locate(spec.document, ["nodes", name, "max_batch"]) or enabled[name].loc,
                "max_batch: 1, or leave it out"))
            continue
        node.max_batch = (asked if asked is not None else node.cls.max_batch) if batches else 1
        node.batch_wait_ms = enabled[name].batch_wait_ms if node.max_batch > 1 else 0.0
    _raise(errors)


def _isolate(spec: GraphSpec, enabled: dict[str, NodeSpec], nodes: dict[str, NodePlan]) -> None:
    """Step 5a, continued: ``isolation`` — nodes that run in a worker process (flowgraph.island) get a stand-in."""
    from .island import placement

    doc = spec.document
    errors: list[GraphError] = []
    for name, node in nodes.items():
        body = doc["nodes"][name]
        if "placement" in body:
            _place_on_ray(name, node, body, doc, errors)
            continue
        explicit = locate(doc, ["nodes", name, "isolation"]) if "isolation" in body else None
        isolation, problem = placement.resolve(enabled[name].isolation, node.cls, node.mode, node.device,
                                               strict=explicit is not None)
        if problem is not None:
            errors.append(GraphError(f"node {name!r} ({node.node_type}) cannot run in its own process: {problem}",
                                     explicit or enabled[name].loc, "isolation: thread (or auto)"))
        elif isolation == "process":
            node.isolation, node.mode = "process", "process"
            _worker_priority(node, body, doc)
            node.cpus = _worker_cpus(name, enabled[name], doc, errors)
            node.cls = placement.stand_in(node.cls, node.nice, node.max_batch, node.cpus, node.idle)
        elif _pins_cpus(body):
            errors.append(GraphError(f"node {name!r} ({node.node_type}) runs on a thread in the graph's process: "
                                     "cpus pins a worker process", locate(doc, ["nodes", name, "cpus"]) or body.loc,
                                     "isolation: process, or leave cpus out"))
    if errors:
        raise _bundle(errors)


def _worker_priority(node: NodePlan, body: Any, doc: Any) -> None:
    """A node moved out of the graph's process without a ``nice`` of its own (or a graph default) gets the
    worker default: ``nice: idle``."""
    from .island import placement

    if "nice" not in body and "nice" not in (doc.get("defaults") or {}):
        node.nice, node.idle = placement.DEFAULT_NICE, placement.DEFAULT_IDLE


def _pins_cpus(body: Any) -> bool:
    """The node's own ``cpus`` names CPUs (``all`` and no value pin nothing)."""
    return "cpus" in body and body["cpus"] not in (None, "all")


def _worker_cpus(name: str, node: NodeSpec, doc: Any, errors: list[GraphError]) -> tuple[int, ...] | None:
    """``cpus`` of a worker process (flowgraph.island.cpus), resolved on this host."""
    from .island import cpus

    try:
        return cpus.resolve(node.cpus)
    except ValueError as exc:
        path = ["nodes", name, "cpus"] if "cpus" in doc["nodes"][name] else ["defaults", "cpus"]
        errors.append(GraphError(f"node {name!r}: cpus {node.cpus!r}: {exc}", locate(doc, path) or node.loc,
                                 "all, or CPU numbers like '1-3' or [1, 2]"))
        return None


def _place_on_ray(name: str, node: NodePlan, body: Any, doc: Any, errors: list[GraphError]) -> None:
    """``placement``: the node runs in Ray actors (flowgraph.island.ray); checked before anything starts."""
    from .island import ray_plan
    from .island.ray import ray_stand_in

    where = ray_plan.check_placement(name, node.cls, node.mode, body, doc, dict(os.environ), errors)
    if where is None:
        return
    if _pins_cpus(body):
        errors.append(GraphError(f"node {name!r} ({node.node_type}): Ray decides where its actors run",
                                 locate(doc, ["nodes", name, "cpus"]) or body.loc,
                                 "placement.resources (num_cpus), or leave cpus out"))
        return
    if "max_batch" in body and node.max_batch > 1:
        errors.append(GraphError(f"node {name!r} ({node.node_type}): a Ray placement takes one message at a time",
                                 locate(doc, ["nodes", name, "max_batch"]) or body.loc,
                                 "max_batch: 1, or leave it out; batches run on a thread or in a worker process"))
        return
    node.isolation, node.mode, node.placement = "ray", "ray", where
    node.max_batch, node.batch_wait_ms = 1, 0.0
    _worker_priority(node, body, doc)
    node.cls = ray_stand_in(node.cls, node.nice, node.idle, where,
                            node.on_error.policy == "restart")


def _fuse(enabled: dict[str, NodeSpec], nodes: dict[str, NodePlan], edges: list[EdgePlan], order: list[str]) -> None:
    """Step 5b: a cheap inline node with one plain lossless input runs inside its producer's stage."""
    for edge in edges:
        target = nodes[edge.target]
        incoming = [e for e in edges if e.target == edge.target]
        explicit = enabled[edge.target].inputs[edge.target_port]
        tuned = any(w.queue is not None or w.policy is not None for w in explicit)
        if (target.mode == "inline" and len(incoming) == 1 and edge.policy == Policy.BLOCK and not tuned
                and not edge.feedback and target.on_error.policy != "restart"):
            edge.fused = True
            target.stage = nodes[edge.source].stage
    # stage names follow fusion transitively (a fused chain shares its head's stage)
    for name in order:
        for edge in edges:
            if edge.fused and edge.source == name:
                nodes[edge.target].stage = nodes[name].stage


def _mode(cls: type[Node], device: str) -> str:
    if device.startswith("cuda"):
        return "cuda"
    if cls.blocking():
        return "inline" if cls.cheap else "thread"
    return "async"


def _params_location(doc: Any, node: NodeSpec, path: tuple[str | int, ...]) -> Location:
    base = ["nodes", node.name, "params"]
    where = locate(doc, [*base, *path], key=True) if path else None
    return where or locate(doc, base) or locate(doc, ["nodes", node.name], key=True) or node.loc


def _bundle(errors: list[GraphError]) -> GraphError | GraphErrors:
    errors.sort(key=lambda e: (e.location.line, e.location.column) if e.location else (0, 0))
    return errors[0] if len(errors) == 1 else GraphErrors(errors)


def _raise(errors: list[GraphError]) -> None:
    if errors:
        raise _bundle(errors)
