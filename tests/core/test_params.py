"""Params dataclasses become JSON Schemas; values are validated with precise errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from flowgraph.errors import ParamsError
from flowgraph.params import param, schema_of, validate


@dataclass
class Inner:
    x: float = 1.0


@dataclass
class Params:
    hz: float = param(30.0, "rate", minimum=0)
    mode: Literal["a", "b"] = "a"
    points: list[tuple[float, float]] = param([], "pairs")
    name: str | None = None
    inner: Inner = field(default_factory=Inner)
    need: int = param(..., "required")  # type: ignore[arg-type]


@dataclass
class Required:
    need: int


def test_schema_shape() -> None:
    schema = schema_of(Params)
    props = schema["properties"]
    assert props["hz"] == {"type": "number", "minimum": 0, "description": "rate", "default": 30.0}
    assert props["mode"]["enum"] == ["a", "b"]
    assert props["points"]["items"]["prefixItems"] == [{"type": "number"}, {"type": "number"}]
    assert props["inner"]["properties"]["x"]["type"] == "number"
    assert schema["additionalProperties"] is False


def test_validate_builds_dataclass() -> None:
    value = validate(Params, {"hz": 5, "points": [[1, 2]], "need": 3})
    assert value.hz == 5 and value.points == [[1, 2]] and value.need == 3


@pytest.mark.parametrize(
    ("values", "message", "path"),
    [
        ({"hz": -1, "need": 1}, "bad value -1 for hz", ("hz",)),
        ({"mode": "c", "need": 1}, "bad value 'c' for mode", ("mode",)),
        ({"bogus": 1, "need": 1}, "unknown param 'bogus'", ("bogus",)),
        ({"points": [[1]], "need": 1}, "for points.0", ("points", 0)),
    ],
)
def test_errors_name_the_param(values: dict, message: str, path: tuple) -> None:
    with pytest.raises(ParamsError) as info:
        validate(Params, values)
    assert message in info.value.message
    assert info.value.path == path


def test_missing_required() -> None:
    with pytest.raises(ParamsError) as info:
        validate(Required, {})
    assert info.value.message == "missing required param 'need'"
    assert info.value.expected == "an integer"


def test_mutable_defaults_are_not_shared() -> None:
    a = validate(Params, {"need": 1})
    b = validate(Params, {"need": 1})
    a.points.append((1.0, 1.0))
    assert b.points == []
