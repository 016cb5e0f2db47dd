"""``flowgraph nodes``: node types with their ports, message types and params."""

from __future__ import annotations

import json
from typing import Any

from .node import Node
from .params import schema_of
from .registry import Registry


def node_info(cls: type[Node]) -> dict[str, Any]:
    return {
        "name": cls.type_name,
        "summary": cls.summary(),
        "source": cls.is_source(),
        "gpu": cls.gpu,
        "mode": "inline" if cls.blocking() and cls.cheap else ("thread" if cls.blocking() else "async"),
        #: messages per ``process_batch`` call unless the graph sets ``max_batch`` (None: no batch handler)
        "max_batch": cls.max_batch if cls.batch_ports() else None,
        "inputs": {p: {"type": i.type.__name__, "required": i.required, "doc": i.doc} for p, i in cls.inputs.items()},
        "outputs": {p: {"type": o.type.__name__, "doc": o.doc} for p, o in cls.outputs.items()},
        "params": schema_of(cls.Params),
    }


def _param_line(name: str, prop: dict[str, Any], required: bool) -> str:
    kind = prop.get("type") or ("enum" if "enum" in prop else "any")
    if "enum" in prop:
        kind = "|".join(map(str, prop["enum"]))
    default = "" if required or "default" not in prop else f" = {prop['default']!r}"
    doc = f"  {prop['description']}" if prop.get("description") else ""
    return f"      {name}: {kind}{default}{' (required)' if required else ''}{doc}"


def describe_nodes(name: str | None = None, *, as_json: bool = False, registry: Registry | None = None) -> str:
    registry = registry or Registry.default()
    names = registry.names()
    if name is not None:
        if name not in registry:
            raise KeyError(f"unknown node type {name!r} (known: {', '.join(names)})")
        names = [name]
    infos = []
    for type_name in names:
        try:
            infos.append(node_info(registry.get(type_name)))
        except Exception as exc:  # one broken plugin must not hide the others
            infos.append({"name": type_name, "error": f"{type(exc).__name__}: {exc}"})
    if as_json:
        return json.dumps(infos if name is None else infos[0], indent=2)
    lines = []
    for info in infos:
        if "error" in info:
            lines.append(f"{info['name']}: failed to load ({info['error']})")
            continue
        flags = [info["mode"]] + (["source"] if info["source"] else []) + (["gpu"] if info["gpu"] else [])
        if info["max_batch"] is not None:
            flags.append(f"batches up to {info['max_batch']}")
        lines.append(f"{info['name']}  [{', '.join(flags)}]  {info['summary']}")
        for port, i in info["inputs"].items():
            optional = "" if i["required"] else " (optional)"
            lines.append(f"    in  {port}: {i['type']}{optional}")
        for port, o in info["outputs"].items():
            lines.append(f"    out {port}: {o['type']}")
        props = info["params"].get("properties", {})
        if props and (name is not None or len(props) <= 8):
            lines.append("    params:")
            required = set(info["params"].get("required", []))
            lines.extend(_param_line(k, v, k in required) for k, v in props.items())
        elif props:
            lines.append(f"    params: {', '.join(props)}  (flowgraph nodes {info['name']} for details)")
    return "\n".join(lines)
