"""Node params: a dataclass per node, turned into a JSON Schema and validated before anything starts.

A node declares ``Params`` as a dataclass. Field types become JSON Schema types; extra constraints go in the
field's metadata with :func:`param`::

    @dataclass
    class Params:
        hz: float = param(30.0, "ticks per second", minimum=0.001)
        mode: Literal["a", "b"] = "a"

Anything the type hints cannot say (nested rule objects, say) goes in ``metadata["schema"]``, which replaces the
derived schema for that field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import jsonschema

from .errors import ParamsError


def param(default: Any = dataclasses.MISSING, doc: str = "", *, schema: dict[str, Any] | None = None,
          **constraints: Any) -> Any:
    """A dataclass field with a description and JSON Schema constraints (``minimum``, ``pattern`` ...)."""
    metadata: dict[str, Any] = {"doc": doc, "constraints": constraints}
    if schema is not None:
        metadata["schema"] = schema
    if isinstance(default, list | dict | set):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class NoParams:
    """For nodes without params."""


def _type_schema(tp: Any) -> dict[str, Any]:
    origin = get_origin(tp)
    if tp is Any or tp is object:
        return {}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if tp is type(None):
        return {"type": "null"}
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin in (Union, types.UnionType):
        options = [_type_schema(a) for a in get_args(tp)]
        return {"anyOf": options}
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        args = get_args(tp)
        schema: dict[str, Any] = {"type": "array"}
        if origin is tuple and args and args[-1] is not Ellipsis:
            schema["prefixItems"] = [_type_schema(a) for a in args]
            schema["minItems"] = schema["maxItems"] = len(args)
        elif args:
            schema["items"] = _type_schema(args[0])
        return schema
    if origin is dict or tp is dict:
        args = get_args(tp)
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = _type_schema(args[1])
        return schema
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return schema_of(tp)
    return {}


def schema_of(params_cls: type) -> dict[str, Any]:
    """The JSON Schema of a params dataclass (strict: unknown keys are errors)."""
    hints = typing.get_type_hints(params_cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(params_cls):
        if "schema" in f.metadata:
            prop = dict(f.metadata["schema"])
        else:
            prop = _type_schema(hints[f.name])
            prop.update(f.metadata.get("constraints", {}))
        if f.metadata.get("doc"):
            prop["description"] = f.metadata["doc"]
        if f.default is not dataclasses.MISSING and _jsonable(f.default):
            prop["default"] = f.default
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
        properties[f.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _describe(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_describe(s) for s in schema["anyOf"])
    kind = schema.get("type")
    bounds = [f"{k} {schema[k]}" for k in ("minimum", "maximum", "exclusiveMinimum", "minLength") if k in schema]
    text = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
            "array": "a list", "object": "a mapping", "null": "null"}.get(str(kind), "a value")
    return text + (" (" + ", ".join(bounds) + ")" if bounds else "")


def validate(params_cls: type, values: dict[str, Any] | None) -> Any:
    """Check ``values`` against the params schema and build the dataclass; raise :class:`ParamsError`."""
    values = dict(values or {})
    schema = schema_of(params_cls)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(values))
    if error is not None:
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties":
            unknown = sorted(set(error.instance) - set(schema["properties"]))
            known = ", ".join(schema["properties"]) or "no params"
            raise ParamsError(f"unknown param {unknown[0]!r}", (*path, unknown[0]), known)
        if error.validator == "required":
            missing = error.message.split("'")[1]
            # The error may come from a nested object (e.g. an item of a list param): describe from its schema.
            where = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            raise ParamsError(f"missing required param {missing!r}", path, _describe(where.get(missing, {})))
        sub = error.schema if isinstance(error.schema, dict) else {}
        name = ".".join(str(p) for p in path) or "params"
        raise ParamsError(f"bad value {error.instance!r} for {name}", path, _describe(sub) or error.message)
    try:
        return params_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ParamsError(str(exc)) from exc
