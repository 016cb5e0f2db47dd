"""One wire of the YAML checked and resolved into an edge: its source exists, its types agree, and its policy and
queue are chosen (the YAML's, the graph's default, or the default for live media)."""

from __future__ import annotations

import difflib
from typing import Any

from .channel import Policy
from .errors import GraphError
from .messages import Control, Message, Packet, VideoFrame, compatible
from .node import Node
from .plan import EdgePlan
from .spec import GraphSpec, NodeSpec

DEFAULT_QUEUE = 8
#: Live media (and control requests flowing against it) default to dropping the oldest message, so a forgotten
#: policy can never make the stream wait; everything else is lossless unless the YAML says so.
LIVE_TYPES: tuple[type[Message], ...] = (Packet, VideoFrame, Control)


def suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=3)
    if close:
        return "one of: " + ", ".join(close) + (" ..." if len(options) > 3 else "")
    return "one of: " + ", ".join(options) if options else "a registered node type"


def port_list(ports: dict[str, Any], kind: str) -> str:
    if not ports:
        return f"a node type with {kind} (this one has none)"
    return "one of: " + ", ".join(f"{p} ({d.type.__name__})" for p, d in ports.items())


def wire_edge(spec: GraphSpec, enabled: dict[str, NodeSpec], classes: dict[str, type[Node]], wire: Any,
          accepted: type[Message], errors: list[GraphError]) -> EdgePlan | None:
    if wire.source not in spec.nodes:
        errors.append(GraphError(f"input {wire.target}/{wire.target_port} names unknown node {wire.source!r}",
                                 wire.loc, suggest(wire.source, list(spec.nodes))))
        return None
    if wire.source not in enabled:
        errors.append(GraphError(f"input {wire.target}/{wire.target_port} comes from disabled node {wire.source!r}",
                                 wire.loc, "an enabled node, or disable this one too"))
        return None
    source_cls = classes[wire.source]
    if wire.port not in source_cls.outputs:
        errors.append(GraphError(f"node {wire.source!r} ({source_cls.type_name}) has no output {wire.port!r}",
                                 wire.loc, port_list(source_cls.outputs, "outputs")))
        return None
    produced = effective_type(spec, enabled, classes, wire.source, wire.port, set())
    if not compatible(produced, accepted):
        errors.append(GraphError(
            f"type mismatch: {wire.source}/{wire.port} sends {produced.__name__} but "
            f"{wire.target}/{wire.target_port} takes {accepted.__name__}", wire.loc,
            f"an output carrying {accepted.__name__}"))
        return None
    defaults = spec.defaults
    if wire.policy == Policy.LATEST and issubclass(produced, Packet):
        errors.append(GraphError(
            f"policy 'latest' on {wire.source}/{wire.port} → {wire.target}/{wire.target_port} ({produced.__name__}): "
            "replacing a queued packet with the next one breaks the video until its next keyframe", wire.loc,
            "policy: drop_oldest (it keeps a stream's keyframe), or latest on decoded frames"))
        return None
    if wire.policy is not None:
        policy, why = wire.policy, ""
    elif "policy" in defaults and not (defaults["policy"] == Policy.LATEST and issubclass(produced, Packet)):
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
