"""Ray placement, decided at compile time (no Ray import): which nodes run in Ray actors, checked before start.

A graph that names a ``cluster: {engine: ray, address: …}`` may give any node that can leave the graph's process a
``placement: {replicas, resources, shard_by}``. Checked here, each with the YAML's ``file:line:col``:

* a placement needs a cluster;
* sources stay in the graph's process (no placement, no replicas), and so do nodes that serve the graph's clients
  (they register routes in ``setup``) and cheap inline nodes;
* a resource is ``CPU``, ``GPU``, ``memory`` or a custom name listed in ``cluster.resources``;
* a GPU request must fit somewhere: a private Ray (``address: local``) offers this host's CUDA devices (or
  ``cluster.num_gpus``), so more than that per replica can never be placed. A joined cluster is checked against
  its live nodes when the graph connects, before any node starts (:func:`flowgraph.island.ray.open_cluster`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import devices
from ..errors import GraphError
from ..graph_schema import locate
from ..node import Node

#: Resources every Ray node knows without declaring them.
BUILTIN_RESOURCES = ("CPU", "GPU", "memory")
SHARDINGS = ("stream_id", "round_robin")


@dataclass
class Placement:
    """A node's placement on Ray, as the runtime uses it."""

    replicas: int = 1
    resources: dict[str, float] = field(default_factory=lambda: {"CPU": 1.0})
    shard_by: str = "stream_id"

    def describe(self) -> str:
        asks = ", ".join(f"{k} {v:g}" for k, v in self.resources.items()) or "nothing"
        sharding = f", shard_by {self.shard_by}" if self.replicas > 1 else ""
        return f"Ray: {self.replicas} actor(s), each {asks}{sharding}"


def cluster_address(cluster: dict[str, Any], environ: dict[str, str]) -> str:
    """The address the graph joins: the YAML's, else ``RAY_ADDRESS``, else ``local`` (a private Ray)."""
    return str(cluster.get("address") or environ.get("RAY_ADDRESS") or "local")


def why_not(cls: type[Node], mode: str) -> str | None:
    """Why a node cannot run in a Ray actor (None when it can)."""
    if cls.is_source():
        return "a source runs in the graph's process (sources feed the graph; place their consumers instead)"
    if mode == "inline":
        return "a cheap node runs inline on the graph's loop"
    if cls.setup is not Node.setup:
        return "the node registers routes in setup() and needs the graph's HTTP server"
    return None


def check_placement(name: str, cls: type[Node], mode: str, body: Any, doc: Any, environ: dict[str, str],
                    errors: list[GraphError]) -> Placement | None:
    """The node's placement, or None after appending what is wrong with it to ``errors``."""
    where = locate(doc, ["nodes", name, "placement"], key=True)
    given = body.get("placement") or {}
    cluster = doc.get("cluster")
    if not cluster:
        errors.append(GraphError(f"node {name!r} has a placement but the graph has no cluster", where,
                                 "a top-level 'cluster: {engine: ray, address: local}' (or no placement)"))
        return None
    if "replicas" in given and cls.is_source():
        errors.append(GraphError(f"node {name!r} is a source: replicas of a source would each produce the "
                                 f"whole stream", locate(doc, ["nodes", name, "placement", "replicas"], key=True),
                                 "no replicas (and no placement) on a source; place its consumers"))
        return None
    problem = why_not(cls, mode)
    if problem is not None:
        errors.append(GraphError(f"node {name!r} ({cls.type_name}) cannot run on Ray: {problem}", where,
                                 "placement only on nodes that process messages (decode, vibrio, moriarty, …)"))
        return None
    if body.get("isolation") in ("thread", "process"):
        errors.append(GraphError(f"node {name!r} has both isolation: {body['isolation']} and a placement",
                                 locate(doc, ["nodes", name, "isolation"], key=True),
                                 "one of them: placement runs the node in Ray actors"))
        return None
    declared = set(BUILTIN_RESOURCES) | set(cluster.get("resources") or ())
    resources = {str(k): float(v) for k, v in (given.get("resources") or {"CPU": 1}).items()}
    for resource in resources:
        if resource not in declared:
            custom = ", ".join(cluster.get("resources") or ()) or "none declared"
            errors.append(GraphError(
                f"node {name!r} asks Ray for unknown resource {resource!r}",
                locate(doc, ["nodes", name, "placement", "resources", resource], key=True) or where,
                f"CPU, GPU, memory or a custom resource listed in cluster.resources ({custom})"))
            return None
    gpus = resources.get("GPU", 0.0)
    if gpus > 0 and cluster_address(cluster, environ) == "local":
        offered = cluster.get("num_gpus")
        have = int(offered) if offered is not None else devices.cuda_device_count()
        if gpus > have:
            origin = "cluster.num_gpus" if offered is not None else "this host's CUDA devices"
            errors.append(GraphError(
                f"node {name!r} asks for GPU {gpus:g} per replica, but the private Ray (address: local) offers "
                f"{have} GPU(s) ({origin}): no Ray node can ever run it",
                locate(doc, ["nodes", name, "placement", "resources", "GPU"]) or where,
                (f"GPU ≤ {have}" if have else "no GPU") + ", or a cluster address whose nodes have GPUs"))
            return None
    return Placement(replicas=int(given.get("replicas", 1)), resources=resources,
                     shard_by=str(given.get("shard_by", "stream_id")))





def describe_cluster(plan: Any, environ: dict[str, str] | None = None) -> str:
    """One line for ``validate --plan``: which Ray, and which nodes run on it."""
    import os

    address = cluster_address(plan.cluster, dict(os.environ) if environ is None else environ)
    which = ("a private Ray started for this graph and stopped with it" if address == "local"
             else f"joins the running cluster at {address}")
    placed = [name for name in plan.order if plan.nodes[name].placement is not None]
    here = [name for name in plan.order if plan.nodes[name].placement is None]
    return (f"cluster: Ray, address {address} ({which}); in Ray actors: {', '.join(placed) or 'none'}; "
            f"in this process: {', '.join(here) or 'none'}")
