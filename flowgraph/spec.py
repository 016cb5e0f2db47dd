"""Graph files: safe YAML with a location for every key and value, checked against ``graph.schema.json``.

The loader refuses what YAML would silently accept or what would hurt: duplicate keys, alias expansion past a
budget ("billion laughs"), files over a size limit, unset ``${ENV}`` variables. Every error is a
:class:`~flowgraph.errors.GraphError` that names ``file:line:column``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import GraphError, GraphErrors, Location

MAX_FILE_BYTES = 1 << 20
MAX_EXPANDED_NODES = 100_000
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class LocMap(dict[str, Any]):
    """A mapping that remembers where each key and value was written."""

    loc: Location
    key_locs: dict[str, Location]
    value_locs: dict[str, Location]


class LocList(list[Any]):
    """A sequence that remembers where each item was written."""

    loc: Location
    item_locs: list[Location]


def _location(file: str, mark: yaml.Mark) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types: Any at the boundary
    """SafeLoader that builds LocMap/LocList, rejects duplicate keys, substitutes ${ENV}, counts aliases."""

    file = "<graph>"
    env: dict[str, str] = {}
    first_alias: Location | None = None

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent) and self.first_alias is None:
            self.first_alias = _location(self.file, self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LocMap:
        self.flatten_mapping(node)
        result = LocMap()
        result.loc = _location(self.file, node.start_mark)
        result.key_locs = {}
        result.value_locs = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            where = _location(self.file, key_node.start_mark)
            if not isinstance(key, str | int | float | bool) or key is None:
                raise GraphError("mapping keys must be plain scalars", where, "a name")
            key = str(key)
            if key in result:
                first = result.key_locs[key]
                raise GraphError(f"duplicate key {key!r} (first defined at line {first.line})", where,
                                 "each key once per mapping")
            result[key] = self.construct_object(value_node, deep=True)
            result.key_locs[key] = where
            result.value_locs[key] = _location(self.file, value_node.start_mark)
        return result

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LocList:
        result = LocList(self.construct_object(child, deep=True) for child in node.value)
        result.loc = _location(self.file, node.start_mark)
        result.item_locs = [_location(self.file, child.start_mark) for child in node.value]
        return result

    def construct_yaml_str(self, node: yaml.ScalarNode) -> Any:
        value = self.construct_scalar(node)
        if "${" not in value:
            return value
        where = _location(self.file, node.start_mark)
        substituted = _substitute(value, self.env, where)
        if node.style is None and substituted and _ENV.fullmatch(value):
            tag = self.resolve(yaml.ScalarNode, substituted, (True, False))
            if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
                       "tag:yaml.org,2002:null"):
                return self.construct_object(yaml.ScalarNode(tag, substituted), deep=True)
        return substituted


_Loader.add_constructor("tag:yaml.org,2002:str", _Loader.construct_yaml_str)
_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_sequence)


def _substitute(text: str, env: dict[str, str], where: Location) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise GraphError(f"environment variable {name} is not set", where,
                         f"{name} in the environment, or a default: ${{{name}:-value}}")

    return _ENV.sub(replace, text)


def _count_nodes(value: Any, budget: int) -> int:
    """Walk the document as a consumer would; shared (aliased) subtrees count every time they appear."""
    stack = [value]
    seen = 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > budget:
            return seen
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return seen


def load_yaml(text: str, file: str = "<graph>", env: dict[str, str] | None = None) -> Any:
    """Parse YAML text into LocMap/LocList; raise GraphError with a location on any problem."""
    loader = _Loader(text)
    loader.file = file
    loader.env = dict(os.environ if env is None else env)
    try:
        try:
            document = loader.get_single_data()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = _location(file, mark) if mark else Location(file, 1, 1)
            problem = exc.problem or exc.context or "invalid YAML"
            raise GraphError(f"YAML syntax error: {problem}", where, "valid YAML") from None
        except yaml.YAMLError as exc:
            raise GraphError(f"YAML error: {exc}", Location(file, 1, 1), "valid YAML") from None
    finally:
        loader.dispose()
    if loader.first_alias is not None and _count_nodes(document, MAX_EXPANDED_NODES) > MAX_EXPANDED_NODES:
        raise GraphError(f"aliases expand the document past {MAX_EXPANDED_NODES} values (alias bomb?)",
                         loader.first_alias, "a graph without runaway anchors/aliases")
    return document


def read_graph_file(path: str | Path) -> tuple[str, str]:
    """Read a graph file as text, refusing oversize and non-UTF-8 files; returns (display name, text)."""
    path = Path(path)
    name = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise GraphError(f"cannot read graph file: {exc.strerror}", Location(name, 1, 1), "a readable file") from None
    if size > MAX_FILE_BYTES:
        raise GraphError(f"file is {size / 1e6:.1f} MB", Location(name, 1, 1),
                         f"a graph file of at most {MAX_FILE_BYTES // 1024} KiB")
    data = path.read_bytes()
    try:
        return name, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise GraphError("file is not UTF-8 text", Location(name, line, 1), "UTF-8 YAML") from None


@cache
def graph_schema() -> dict[str, Any]:
    text = resources.files("flowgraph").joinpath("schemas/graph.schema.json").read_text()
    result: dict[str, Any] = json.loads(text)
    return result


def locate(document: Any, path: list[Any] | tuple[Any, ...], *, key: bool = False) -> Location | None:
    """The location of the value (or, with ``key``, of the key) at ``path`` inside a loaded document."""
    best: Location | None = getattr(document, "loc", None)
    node = document
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, LocMap) and str(part) in node:
            part = str(part)
            best = node.key_locs[part] if (key and last) else node.value_locs[part]
            node = node[part]
        elif isinstance(node, LocList) and isinstance(part, int) and 0 <= part < len(node):
            best = node.item_locs[part]
            node = node[part]
        else:
            break
    return best


_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "null"}


def _schema_error_text(error: jsonschema.ValidationError) -> tuple[str, str, bool]:
    """(what is wrong, what was expected, whether to point at the key) for one schema error."""
    path = "/".join(str(p) for p in error.absolute_path) or "graph"
    validator = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    if validator == "additionalProperties":
        allowed = ", ".join(schema.get("properties", {})) or "nothing else"
        extra = sorted(set(error.instance) - set(schema.get("properties", {})))
        return f"unknown key {extra[0]!r} in {path}", f"one of: {allowed}", True
    if validator == "required":
        return f"{path}: {error.message}", "the key to be present", False
    if validator == "enum":
        return f"bad value {error.instance!r} for {path}", "one of " + ", ".join(map(repr, schema["enum"])), False
    if validator == "pattern":
        pattern = schema["pattern"]
        if "cuda" in pattern:
            what = "auto, cpu, cuda or cuda:N"
        elif "/" in pattern:
            what = "node/port"
        else:
            what = "a name of letters, digits, _ or -, starting with a letter or _"
        if path == "nodes":
            return f"bad node name {error.instance!r}", what, False
        return f"bad value {error.instance!r} for {path}", what, False
    if validator == "type":
        return f"bad value {error.instance!r} for {path}", _TYPE_NAMES.get(str(schema["type"]), "another type"), False
    if validator == "minProperties" and path == "nodes":
        return "the graph has no nodes", "at least one node under nodes:", False
    if validator in ("minimum", "maximum", "exclusiveMinimum"):
        return f"bad value {error.instance!r} for {path}", f"{validator} {schema[validator]}", False
    if validator == "oneOf":
        return f"bad value for {path}", _one_of_hint(path), False
    return f"{path}: {error.message}", "a value matching the graph schema", False


def _one_of_hint(path: str) -> str:
    if "/inputs/" in f"/{path}/":
        return "'node/port', {from: node/port, queue: N, policy: P}, or a list of those"
    if path.endswith("on_error"):
        return "skip_message, restart, stop, or {policy: ..., max_restarts: N, backoff_s: S}"
    return "one of the forms the graph schema allows"


def check_schema(document: Any, file: str) -> None:
    """Validate a loaded document against graph.schema.json; raise the most relevant error."""
    if not isinstance(document, dict):
        where = getattr(document, "loc", Location(file, 1, 1))
        raise GraphError("a graph file must be a mapping with a 'nodes' key", where, "name: ..., nodes: {...}")
    validator = jsonschema.Draft202012Validator(graph_schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if not errors:
        return
    error = jsonschema.exceptions.best_match(errors, key=jsonschema.exceptions.relevance)
    # oneOf wrapping hides the useful leaf; descend while there is exactly one path of context
    while error.context and error.validator == "oneOf":
        deeper = [e for e in error.context if len(e.absolute_path) > len(error.absolute_path)]
        if not deeper:
            break
        error = jsonschema.exceptions.best_match(deeper)
    if error.validator == "propertyNames":
        bad = error.instance
        parent = list(error.absolute_path)
        where = locate(document, [*parent, bad], key=True) or locate(document, parent)
        raise GraphError(f"bad name {bad!r}", where, "letters, digits, _ or -, starting with a letter or _")
    message, expected, at_key = _schema_error_text(error)
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        path = [*path, extra[0]]
    where = locate(document, path, key=at_key) or Location(file, 1, 1)
    raise GraphError(message, where, expected)


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
        if parts[1] in ("device", "on_error", "enabled", "node") and len(parts) == 2:
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
        nodes[name] = NodeSpec(
            name=name,
            type=body["node"],
            params=dict(body.get("params") or {}),
            inputs=inputs,
            device=body.get("device", defaults.get("device", "auto")),
            on_error=_error_policy(body.get("on_error", defaults.get("on_error"))),
            enabled=bool(body.get("enabled", True)),
            nice=int(body.get("nice", defaults.get("nice", 0))),
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
