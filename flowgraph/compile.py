"""From a GraphSpec to a checked, placed, fused ExecutionPlan — every error found before anything starts."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from . import devices
from .channel import Policy
from .errors import GraphError, GraphErrors, Location, ParamsError
from .graph_schema import locate
from .messages import Control, Message, Packet, VideoFrame, compatible
from .node import Node
from .params import validate as validate_params
from .registry import Registry
from .spec import ErrorPolicy, GraphSpec, NodeSpec

DEFAULT_QUEUE = 8
#: Live media (and control requests flowing against it) default to dropping the oldest message, so a forgotten
#: policy can never make the stream wait; everything else is lossless unless the YAML says so.
LIVE_TYPES: tuple[type[Message], ...] = (Packet, VideoFrame, Control)


@dataclass
class EdgePlan:
    source: str
    source_port: str
    target: str
    target_port: str
    type_name: str
    queue: int
    policy: str
    feedback: bool
    fused: bool = False
    policy_why: str = ""

    @property
    def label(self) -> str:
        return f"{self.source}/{self.source_port} -> {self.target}/{self.target_port}"


@dataclass
class NodePlan:
    name: str
    node_type: str
    cls: type[Node]
    params: Any
    device: str
    device_why: str
    mode: str
    stage: str
    on_error: ErrorPolicy
    source: bool
    nice: int = 0


@dataclass
class ExecutionPlan:
    name: str
    file: str
    nodes: dict[str, NodePlan]
    edges: list[EdgePlan]
    order: list[str]
    server: dict[str, Any] = field(default_factory=dict)

    @property
    def stages(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        for name in self.order:
            result.setdefault(self.nodes[name].stage, []).append(name)
        return result

    def inputs_of(self, node: str) -> list[EdgePlan]:
        return [e for e in self.edges if e.target == node]

    def outputs_of(self, node: str) -> list[EdgePlan]:
        return [e for e in self.edges if e.source == node]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "nodes": {
                n.name: {
                    "type": n.node_type, "device": n.device, "device_why": n.device_why, "mode": n.mode,
                    "stage": n.stage, "source": n.source, "on_error": n.on_error.policy, "nice": n.nice,
                    "inputs": {p: i.type.__name__ for p, i in n.cls.inputs.items()},
                    "outputs": {p: o.type.__name__ for p, o in n.cls.outputs.items()},
                }
                for n in (self.nodes[k] for k in self.order)
            },
            "edges": [
                {"from": f"{e.source}/{e.source_port}", "to": f"{e.target}/{e.target_port}", "type": e.type_name,
                 "queue": e.queue, "policy": e.policy, "feedback": e.feedback, "fused": e.fused}
                for e in self.edges
            ],
            "stages": self.stages,
            "server": self.server,
        }

    def describe(self) -> str:
        """Human-readable plan for ``flowgraph validate --plan``."""
        lines = [f"graph {self.name!r} ({self.file}): {len(self.nodes)} nodes, {len(self.edges)} edges, "
                 f"{len(self.stages)} stages"]
        for stage, members in self.stages.items():
            first = self.nodes[members[0]]
            fused = f" (fused: {' -> '.join(members)})" if len(members) > 1 else ""
            lines.append(f"  stage {stage}: {first.mode} on {first.device}{fused}")
            for member in members:
                node = self.nodes[member]
                where = f"{node.device}; {node.device_why}; on_error={node.on_error.policy}"
                if node.nice:
                    where += f"; nice {node.nice}"
                lines.append(f"    {member}: {node.node_type} [{where}]")
        lines.append("  edges:")
        for e in self.edges:
            tags = [e.policy, f"queue {e.queue}"]
            if e.feedback:
                tags.append("feedback")
            if e.fused:
                tags.append("fused: called inline")
            why = f"  # {e.policy_why}" if e.policy_why else ""
            lines.append(f"    {e.label}  {e.type_name}  [{', '.join(tags)}]{why}")
        return "\n".join(lines)


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=3)
    if close:
        return "one of: " + ", ".join(close) + (" ..." if len(options) > 3 else "")
    return "one of: " + ", ".join(options) if options else "a registered node type"


def _mode(cls: type[Node], device: str) -> str:
    if device.startswith("cuda"):
        return "cuda"
    if cls.blocking():
        return "inline" if cls.cheap else "thread"
    return "async"


def compile_plan(spec: GraphSpec, registry: Registry | None = None) -> ExecutionPlan:
    """Check the spec against node types, params, ports, types, cycles and devices; place and fuse."""
    registry = registry or Registry.default()
    doc = spec.document
    errors: list[GraphError] = []
    enabled = {name: n for name, n in spec.nodes.items() if n.enabled}

    # 1. node types
    classes: dict[str, type[Node]] = {}
    for name, node in enabled.items():
        if node.type not in registry:
            errors.append(GraphError(f"unknown node type {node.type!r} for node {name!r}", node.type_loc,
                                     _suggest(node.type, registry.names())))
            continue
        try:
            classes[name] = registry.get(node.type)
        except Exception as exc:  # a broken plugin must be reported, not crash validation
            errors.append(GraphError(f"node type {node.type!r} failed to load: {exc}", node.type_loc,
                                     "an importable node class"))
    if errors:
        raise _bundle(errors)

    # 2. params and devices
    params: dict[str, Any] = {}
    placed: dict[str, tuple[str, str]] = {}
    for name, node in enabled.items():
        cls = classes[name]
        try:
            params[name] = validate_params(cls.Params, node.params)
        except ParamsError as exc:
            where = _params_location(doc, node, exc.path)
            errors.append(GraphError(f"node {name!r}: {exc.message}", where, exc.expected))
        try:
            placed[name] = devices.resolve(node.device, cls.gpu)
        except ValueError as exc:
            where = locate(doc, ["nodes", name, "device"]) or node.loc
            errors.append(GraphError(f"node {name!r}: {exc}", where,
                                     "auto or cpu" if not cls.gpu else "auto, cpu, or a CUDA device that exists"))
    if errors:
        raise _bundle(errors)

    # 3. wiring
    edges: list[EdgePlan] = []
    graph = nx.MultiDiGraph()
    graph.add_nodes_from(enabled)
    for name, node in enabled.items():
        cls = classes[name]
        unknown_port = False
        for port, wires in node.inputs.items():
            port_loc = locate(doc, ["nodes", name, "inputs", port], key=True) or node.loc
            if port not in cls.inputs:
                unknown_port = True
                errors.append(GraphError(f"node {name!r} ({node.type}) has no input {port!r}", port_loc,
                                         _ports(cls.inputs, "inputs")))
                continue
            if cls.handler_name(port) is None:
                errors.append(GraphError(f"node type {node.type!r} has no handler for input {port!r}", port_loc,
                                         f"an on_{port} or process method"))
                continue
            accepted = cls.inputs[port].type
            for wire in wires:
                edge = _edge(spec, enabled, classes, wire, accepted, errors)
                if edge is not None:
                    edges.append(edge)
                    graph.add_edge(edge.source, edge.target, feedback=edge.feedback, loc=wire.loc)
        for port, declared in cls.inputs.items():
            if declared.required and not node.inputs.get(port) and not unknown_port:
                errors.append(GraphError(f"node {name!r} ({node.type}): required input {port!r} is not connected",
                                         locate(doc, ["nodes", name], key=True) or node.loc,
                                         f"inputs: {{{port}: node/port}} carrying {declared.type.__name__}"))
    if errors:
        raise _bundle(errors)

    # 4. cycles (feedback edges excepted)
    forward = nx.DiGraph()
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
    order = list(nx.topological_sort(forward))

    # 5. placement and fusion
    nodes: dict[str, NodePlan] = {}
    for name in order:
        cls = classes[name]
        device, why = placed[name]
        nodes[name] = NodePlan(name=name, node_type=enabled[name].type, cls=cls, params=params[name], device=device,
                               device_why=why, mode=_mode(cls, device), stage=name,
                               on_error=enabled[name].on_error, source=cls.is_source(), nice=enabled[name].nice)
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

    return ExecutionPlan(name=spec.name, file=spec.file, nodes=nodes, edges=edges, order=order,
                         server=spec.server)


def _ports(ports: dict[str, Any], kind: str) -> str:
    if not ports:
        return f"a node type with {kind} (this one has none)"
    return "one of: " + ", ".join(f"{p} ({d.type.__name__})" for p, d in ports.items())


def _params_location(doc: Any, node: NodeSpec, path: tuple[str | int, ...]) -> Location:
    base = ["nodes", node.name, "params"]
    where = locate(doc, [*base, *path], key=True) if path else None
    return where or locate(doc, base) or locate(doc, ["nodes", node.name], key=True) or node.loc


def _edge(spec: GraphSpec, enabled: dict[str, NodeSpec], classes: dict[str, type[Node]], wire: Any,
          accepted: type[Message], errors: list[GraphError]) -> EdgePlan | None:
    if wire.source not in spec.nodes:
        errors.append(GraphError(f"input {wire.target}/{wire.target_port} names unknown node {wire.source!r}",
                                 wire.loc, _suggest(wire.source, list(spec.nodes))))
        return None
    if wire.source not in enabled:
        errors.append(GraphError(f"input {wire.target}/{wire.target_port} comes from disabled node {wire.source!r}",
                                 wire.loc, "an enabled node, or disable this one too"))
        return None
    source_cls = classes[wire.source]
    if wire.port not in source_cls.outputs:
        errors.append(GraphError(f"node {wire.source!r} ({source_cls.type_name}) has no output {wire.port!r}",
                                 wire.loc, _ports(source_cls.outputs, "outputs")))
        return None
    produced = effective_type(spec, enabled, classes, wire.source, wire.port, set())
    if not compatible(produced, accepted):
        errors.append(GraphError(
            f"type mismatch: {wire.source}/{wire.port} sends {produced.__name__} but "
            f"{wire.target}/{wire.target_port} takes {accepted.__name__}", wire.loc,
            f"an output carrying {accepted.__name__}"))
        return None
    defaults = spec.defaults
    if wire.policy is not None:
        policy, why = wire.policy, ""
    elif "policy" in defaults:
        policy, why = defaults["policy"], "graph default"
    elif issubclass(produced, LIVE_TYPES):
        policy, why = Policy.DROP_OLDEST.value, f"default for live {produced.__name__}"
    else:
        policy, why = Policy.BLOCK.value, "default: lossless"
    if policy == Policy.LATEST and wire.queue not in (None, 1):
        errors.append(GraphError(f"queue {wire.queue} contradicts policy 'latest' (always one message)", wire.loc,
                                 "no queue, or queue: 1, with policy latest"))
        return None
    queue = 1 if policy == Policy.LATEST else (wire.queue or defaults.get("queue") or DEFAULT_QUEUE)
    return EdgePlan(source=wire.source, source_port=wire.port, target=wire.target, target_port=wire.target_port,
                    type_name=produced.__name__, queue=int(queue), policy=policy, feedback=wire.feedback,
                    policy_why=why)


def effective_type(spec: GraphSpec, enabled: dict[str, NodeSpec], classes: dict[str, type[Node]], node: str,
                   port: str, visiting: set[tuple[str, str]]) -> type[Message]:
    """The type an output really carries: its declared type, or for ``follows`` outputs the most specific type
    common to everything wired into the followed input."""
    declared = classes[node].outputs[port]
    follows = declared.follows
    if follows is None or (node, port) in visiting:
        return declared.type
    visiting.add((node, port))
    types: list[type[Message]] = []
    for wire in enabled[node].inputs.get(follows, []):
        source_cls = classes.get(wire.source)
        if wire.source in enabled and source_cls is not None and wire.port in source_cls.outputs:
            types.append(effective_type(spec, enabled, classes, wire.source, wire.port, visiting))
    visiting.discard((node, port))
    if not types:
        return declared.type
    common = types[0]
    for other in types[1:]:
        common = next(base for base in common.__mro__ if issubclass(other, base))
    return common if issubclass(common, declared.type) else declared.type


def _bundle(errors: list[GraphError]) -> GraphError | GraphErrors:
    errors.sort(key=lambda e: (e.location.line, e.location.column) if e.location else (0, 0))
    return errors[0] if len(errors) == 1 else GraphErrors(errors)
