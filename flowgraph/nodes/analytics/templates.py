"""Rule description templates: ``str.format`` syntax, restricted to what a description needs.

A template comes from YAML, a rules file or ``PUT /api/streams/{id}/rules``, so it is peer input: plain
``str.format`` would let ``{rule.__class__.__init__.__globals__}`` walk attributes and ``{value:>20000000}`` make
20 MB per firing. Here a field is one of :data:`FIELDS` by name (no ``.attr``, no ``[index]``), a format spec is a
standard one with width at most :data:`MAX_WIDTH` and precision at most :data:`MAX_PRECISION` (no nested
fields), the template is at most :data:`MAX_TEMPLATE_CHARS` and what it renders is cut at
:data:`MAX_RENDERED_CHARS`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

FIELDS = ("rule", "type", "track_id", "stream_id", "metric", "value", "condition", "held_s", "threshold")
MAX_TEMPLATE_CHARS = 500
MAX_RENDERED_CHARS = 1_000
MAX_WIDTH = 64
MAX_PRECISION = 12
_SPEC = re.compile(r"(?:(?P<fill>[^{}])?(?P<align>[<>=^]))?[-+ ]?z?#?0?(?P<width>\d+)?[,_]?"
                   r"(?:\.(?P<precision>\d+))?[bcdeEfFgGnosxX%]?", re.DOTALL)


class TemplateError(ValueError):
    """A template asks for more than a description may: says what and what is allowed."""


def check(template: str) -> list[tuple[str, str | None, str | None, str | None]]:
    """Parse and check ``template``; returns its parts ``(literal, field, spec, conversion)``."""
    if len(template) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"the template is {len(template)} characters; at most {MAX_TEMPLATE_CHARS}")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"bad template: {exc}") from None
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in FIELDS:
            if field.split(".")[0].split("[")[0] in FIELDS:
                raise TemplateError(f"{{{field}}} reaches into a field: attributes and indexes are not allowed")
            raise TemplateError(f"unknown field {{{field}}}" if field else "positional fields {} are not allowed")
        if conversion not in (None, "r", "s"):
            raise TemplateError(f"conversion !{conversion} is not allowed (only !r and !s)")
        if spec:
            match = _SPEC.fullmatch(spec)
            if match is None:
                raise TemplateError(f"format spec {spec!r} of {{{field}}} is not a plain format spec "
                                    "(nested fields are not allowed)")
            if match["width"] and int(match["width"]) > MAX_WIDTH:
                raise TemplateError(f"width {match['width']} of {{{field}}} is over {MAX_WIDTH}")
            if match["precision"] and int(match["precision"]) > MAX_PRECISION:
                raise TemplateError(f"precision {match['precision']} of {{{field}}} is over {MAX_PRECISION}")
    return parts


def render(template: str, values: Mapping[str, Any]) -> str:
    """``template`` with ``values`` filled in (checked again: a template may have skipped the parser)."""
    out: list[str] = []
    for literal, field, spec, conversion in check(template):
        out.append(literal)
        if field is None:
            continue
        value = values[field]
        if conversion == "r":
            value = repr(value)
        elif conversion == "s":
            value = str(value)
        out.append(format(value, spec or ""))
    text = "".join(out)
    return text if len(text) <= MAX_RENDERED_CHARS else text[:MAX_RENDERED_CHARS - 1] + "…"
