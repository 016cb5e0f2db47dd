"""What the compiler produces and the runtime runs: nodes placed on devices and stages, edges with their queues."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .island.cpus import describe as describe_cpus
from .node import Node
from .redact import redact_mapping
from .spec import ErrorPolicy

if TYPE_CHECKING:
    from .island.ray_plan import Placement


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
    #: ``nice: idle``: a worker process in the idle CPU group (a thread: nice 19)
    idle: bool = False
    #: thread | process (flowgraph.island: a worker process, ``cls`` is then the graph-side stand-in)
    isolation: str = "thread"
    #: ``isolation == "ray"``: replicas, resources and sharding of the node's Ray actors
    placement: Placement | None = None
    #: ``isolation == "process"``: the CPUs its worker runs on (None: every CPU the graph may use)
    cpus: tuple[int, ...] | None = None
    #: Messages per ``process_batch`` call (1: the node takes one message at a time), and how long to wait for more
    max_batch: int = 1
    batch_wait_ms: float = 0.0


@dataclass
class ExecutionPlan:
    name: str
    file: str
    nodes: dict[str, NodePlan]
    edges: list[EdgePlan]
    order: list[str]
    server: dict[str, Any] = field(default_factory=dict)
    #: The loaded YAML (with locations), for errors found after compiling (e.g. the listen/credential check).
    document: Any = field(default=None, repr=False)
    #: ``cluster:`` of the graph file (Ray); None: every node runs on this host
    cluster: dict[str, Any] | None = None

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
                    "stage": n.stage, "source": n.source, "on_error": n.on_error.policy,
                    "nice": "idle" if n.idle else n.nice,
                    "isolation": n.isolation, "max_batch": n.max_batch,
                    **({"cpus": describe_cpus(n.cpus)} if n.isolation == "process" else {}),
                    **({"placement": {"replicas": n.placement.replicas, "resources": n.placement.resources,
                                      "shard_by": n.placement.shard_by}} if n.placement else {}),
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
            "server": redact_mapping(self.server),
            **({"cluster": redact_mapping(self.cluster)} if self.cluster else {}),
        }

    def describe(self) -> str:
        """Human-readable plan for ``flowgraph validate --plan``."""
        lines = [f"graph {self.name!r} ({self.file}): {len(self.nodes)} nodes, {len(self.edges)} edges, "
                 f"{len(self.stages)} stages"]
        if self.cluster:
            from .island.ray_plan import describe_cluster

            lines.append(f"  {describe_cluster(self)}")
        for stage, members in self.stages.items():
            first = self.nodes[members[0]]
            fused = f" (fused: {' -> '.join(members)})" if len(members) > 1 else ""
            lines.append(f"  stage {stage}: {first.mode} on {first.device}{fused}")
            for member in members:
                node = self.nodes[member]
                where = f"{node.device}; {node.device_why}; on_error={node.on_error.policy}"
                if node.isolation == "process":
                    where += "; own process, idle CPU group" if node.idle else f"; own process, nice {node.nice}"
                    where += f", CPUs {describe_cpus(node.cpus)}"
                elif node.placement is not None:
                    where += f"; {node.placement.describe()}"
                elif node.nice:
                    where += f"; nice {node.nice}"
                if node.max_batch > 1:
                    wait = f", waits up to {node.batch_wait_ms:g} ms" if node.batch_wait_ms else ""
                    where += f"; batches up to {node.max_batch}{wait}"
                lines.append(f"    {member}: {node.node_type} [{where}]")
                lines.extend(f"      {note}" for note in node.cls.plan_notes(node.params, node.device))
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
