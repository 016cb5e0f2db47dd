"""The JSON Schemas of the public analytics messages (``flowgraph/nodes/analytics/contract/*.json``) and a validator."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

#: The analytics message types of the public contract, one JSON Schema each.
ANALYTICS_TYPES = ("detection", "pose", "speed", "betting_opportunity")


@cache
def schema(message_type: str) -> dict[str, Any]:
    """The JSON Schema of one analytics message type (``detection``, ``pose``, ``speed``, ``betting_opportunity``)."""
    if message_type not in ANALYTICS_TYPES:
        raise KeyError(f"unknown analytics type {message_type!r} (expected one of {', '.join(ANALYTICS_TYPES)})")
    text = resources.files("flowgraph.nodes.analytics").joinpath("contract", f"{message_type}.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator(message_type: str) -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(schema(message_type))


def problems(message: dict[str, Any]) -> list[str]:
    """Everything wrong with a wire message ``{"type", "payload"}``; an empty list when it is valid."""
    kind = message.get("type") if isinstance(message, dict) else None
    if kind not in ANALYTICS_TYPES:
        return [f"type {kind!r} is not one of {', '.join(ANALYTICS_TYPES)}"]
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in _validator(str(kind)).iter_errors(message)]


def check(message: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first problems when ``message`` does not match its schema."""
    found = problems(message)
    if found:
        raise ValueError(f"{message.get('type')!r} message does not match its schema: " + "; ".join(found[:3]))
