"""A loaded graph document checked against ``graph.schema.json``; errors point at the offending line."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from .errors import GraphError, Location
from .yaml_loader import LocList, LocMap


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
