"""Betting-opportunity rules: the declarative form written in graph YAML, parsed and checked before start.

A rule watches one metric per track (or per stream) and fires a ``betting_opportunity`` when a condition holds::

    rules:
      - id: sprint                  # unique name; also the default opportunity type
        type: high_speed            # opportunity type in the record
        metric: speed_kmh           # see METRICS; joint_angles.<name> and metrics.<name> come from poses
        above: 20                   # exactly one of: above, below, outside [lo, hi], inside [lo, hi], change {...}
        for_s: 0.5                  # the condition must hold this long (media time)
        cooldown_s: 10              # no new firing for the same track this soon after one
        expires_s: 30               # the record's expires_at = created_at + expires_s
      - id: knee_extreme
        type: extreme_pose
        metric: joint_angles.left_knee
        outside: [60, 178]
      - id: burst
        metric: speed_kmh
        change: {window_s: 1.0, by: 8, direction: rise}   # a trailing-window change

Errors are :class:`~flowgraph.errors.ParamsError` with the key path inside the node's params, which the compiler
turns into ``file:line:col``. The same parser checks rules sent to ``PUT /api/streams/{id}/rules`` and rules
files (errors there name the file's line).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowgraph.errors import GraphError, ParamsError

from . import templates

#: Per-track metrics read from vibrio's Track.
TRACK_METRICS = ("speed_kmh", "speed_mps", "distance_m", "heading_deg", "track_confidence", "score")
#: Per-stream metrics.
STREAM_METRICS = ("people",)
#: Per-track metrics read from moriarty's Pose (``joint_angles.left_knee``, ``metrics.cadence_spm`` ...).
POSE_PREFIXES = ("joint_angles.", "metrics.")
CONDITIONS = ("above", "below", "outside", "inside", "change")
DIRECTIONS = ("rise", "fall", "any")
TEMPLATE_FIELDS = templates.FIELDS
#: Caps on what one rules body may hold (every field of a rule is peer input over REST).
MAX_RULES = 200
MAX_NAME_CHARS = 64
MAX_METRIC_CHARS = 128
MAX_STREAMS = 256
DEFAULT_DESCRIPTION = "{type}: track {track_id} {metric} = {value:.2f} ({condition}) for {held_s:.1f}s"
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
METRICS_HINT = ", ".join((*TRACK_METRICS, *STREAM_METRICS, "joint_angles.<name>", "metrics.<name>"))

_NUMBER = {"type": "number"}
_RANGE = {"type": "array", "items": _NUMBER, "minItems": 2, "maxItems": 2}
#: JSON Schema of one rule (structure only; :func:`parse_rules` checks the meaning).
RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "metric"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": _ID.pattern, "description": "unique rule name"},
        "type": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS,
                 "description": "opportunity type (default: id)"},
        "metric": {"type": "string", "maxLength": MAX_METRIC_CHARS, "description": "what to watch: " + METRICS_HINT},
        "above": _NUMBER, "below": _NUMBER, "outside": _RANGE, "inside": _RANGE,
        "change": {
            "type": "object", "additionalProperties": False, "required": ["window_s", "by"],
            "properties": {"window_s": {"type": "number", "exclusiveMinimum": 0}, "by": {"type": "number"},
                           "direction": {"enum": list(DIRECTIONS)}},
        },
        "for_s": {"type": "number", "minimum": 0, "description": "the condition must hold this long"},
        "cooldown_s": {"type": "number", "minimum": 0, "description": "quiet time per track after firing"},
        "expires_s": {"type": "number", "exclusiveMinimum": 0, "description": "lifetime of the opportunity"},
        "min_confidence": {"type": "number", "minimum": 0, "maximum": 1,
                           "description": "ignore samples whose own confidence is lower (speed metrics)"},
        "max_gap_s": {"type": "number", "exclusiveMinimum": 0,
                      "description": "a track unseen this long starts a new episode"},
        "description": {"type": "string", "maxLength": templates.MAX_TEMPLATE_CHARS,
                        "description": "template: " + ", ".join(TEMPLATE_FIELDS)},
        "streams": {"type": "array", "maxItems": MAX_STREAMS, "items": {"type": "string", "maxLength": 128},
                    "description": "only these stream ids"},
        "enabled": {"type": "boolean"},
    },
}
RULES_SCHEMA: dict[str, Any] = {"type": "array", "maxItems": MAX_RULES, "items": RULE_SCHEMA}


@dataclass(frozen=True, slots=True)
class Rule:
    """One parsed rule. Frozen and hashable: engine state is keyed by the rule itself, so an edited rule
    starts fresh while unchanged rules keep their episodes across a reload."""

    id: str
    type: str
    metric: str
    condition: str  # above | below | outside | inside | change
    low: float | None = None
    high: float | None = None
    window_s: float = 0.0
    by: float = 0.0
    direction: str = "rise"
    for_s: float = 0.0
    cooldown_s: float = 10.0
    expires_s: float = 30.0
    min_confidence: float = 0.0
    max_gap_s: float = 1.0
    description: str = DEFAULT_DESCRIPTION
    streams: tuple[str, ...] | None = None
    enabled: bool = True

    @property
    def source(self) -> str:
        """Where samples come from: ``track`` (vibrio), ``pose`` (moriarty) or ``stream``."""
        if self.metric in STREAM_METRICS:
            return "stream"
        return "pose" if self.metric.startswith(POSE_PREFIXES) else "track"

    @property
    def threshold(self) -> float | tuple[float, float]:
        if self.condition == "above":
            return float(self.low or 0.0)
        if self.condition == "below":
            return float(self.high or 0.0)
        if self.condition == "change":
            return self.by
        return (float(self.low or 0.0), float(self.high or 0.0))

    def describe(self) -> str:
        """The condition in words, e.g. ``speed_kmh > 20``."""
        m = self.metric
        if self.condition == "above":
            return f"{m} > {self.low:g}"
        if self.condition == "below":
            return f"{m} < {self.high:g}"
        if self.condition == "outside":
            return f"{m} outside [{self.low:g}, {self.high:g}]"
        if self.condition == "inside":
            return f"{m} inside [{self.low:g}, {self.high:g}]"
        return f"{m} {self.direction} by >= {self.by:g} within {self.window_s:g}s"

    def applies_to(self, stream_id: str) -> bool:
        return self.enabled and (self.streams is None or stream_id in self.streams)

    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON form this rule was written in (round-trips through :func:`parse_rules`)."""
        out: dict[str, Any] = {"id": self.id, "type": self.type, "metric": self.metric}
        if self.condition == "above":
            out["above"] = self.low
        elif self.condition == "below":
            out["below"] = self.high
        elif self.condition in ("outside", "inside"):
            out[self.condition] = [self.low, self.high]
        else:
            out["change"] = {"window_s": self.window_s, "by": self.by, "direction": self.direction}
        out.update(for_s=self.for_s, cooldown_s=self.cooldown_s, expires_s=self.expires_s,
                   min_confidence=self.min_confidence, max_gap_s=self.max_gap_s, description=self.description,
                   enabled=self.enabled)
        if self.streams is not None:
            out["streams"] = list(self.streams)
        return out


def parse_rules(raw: Any, path: tuple[str | int, ...] = ("rules",)) -> tuple[Rule, ...]:
    """Check and build rules from their YAML/JSON form; ``path`` prefixes error locations."""
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise ParamsError("rules must be a list", path, "a list of rule mappings")
    if len(raw) > MAX_RULES:
        raise ParamsError(f"{len(raw)} rules; at most {MAX_RULES}", path, f"at most {MAX_RULES} rules")
    _check_schema(raw, path)
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        rule = _parse_one(item, (*path, index))
        if rule.id in seen:
            raise ParamsError(f"duplicate rule id {rule.id!r} (first used by rule {seen[rule.id]})",
                              (*path, index, "id"), "a unique id per rule")
        seen[rule.id] = index
        rules.append(rule)
    return tuple(rules)


def _check_schema(raw: Any, path: tuple[str | int, ...]) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(RULES_SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(_plain(raw)))
    if error is None:
        return
    where = (*path, *error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(schema.get("properties", {})))[0]
        raise ParamsError(f"unknown rule key {unknown!r}", (*where, unknown), ", ".join(schema["properties"]))
    if error.validator == "required":
        missing = error.message.split("'")[1]
        raise ParamsError(f"rule is missing {missing!r}", where, f"a {missing!r} key")
    if error.validator == "pattern":
        raise ParamsError(f"bad rule id {_short(error.instance)}", where, "1-64 letters, digits, '_', '.' or '-'")
    expected = schema.get("description") or error.message
    if "type" in schema and error.validator == "type":
        expected = {"number": "a number", "string": "a string", "array": "a list", "object": "a mapping",
                    "boolean": "true or false"}.get(str(schema["type"]), expected)
    elif error.validator == "maxLength":
        expected = f"at most {schema['maxLength']} characters"
    elif error.validator == "maxItems" and schema.get("maxItems", 2) > 2:
        expected = f"at most {schema['maxItems']} items"
    elif error.validator in ("minItems", "maxItems"):
        expected = "a list [low, high] of two numbers"
    elif error.validator in ("minimum", "maximum", "exclusiveMinimum"):
        expected = f"{error.validator} {schema[error.validator]}"
    raise ParamsError(f"bad value {_short(error.instance)} for {'.'.join(map(str, where))}", where, expected)


def _short(value: Any, limit: int = 80) -> str:
    """A value as an error message may quote it: repr, cut (a rules body is peer input of up to 256 KiB)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _parse_one(item: Mapping[str, Any], path: tuple[str | int, ...]) -> Rule:
    metric = str(item["metric"])
    _check_metric(metric, (*path, "metric"))
    given = [c for c in CONDITIONS if c in item]
    if len(given) != 1:
        what = "no condition" if not given else "several conditions (" + ", ".join(given) + ")"
        raise ParamsError(f"rule {item['id']!r} has {what}", path,
                          "exactly one of above, below, outside [lo, hi], inside [lo, hi], change {window_s, by}")
    condition = given[0]
    fields: dict[str, Any] = {}
    if condition == "above":
        fields["low"] = _finite(item["above"], (*path, "above"))
    elif condition == "below":
        fields["high"] = _finite(item["below"], (*path, "below"))
    elif condition in ("outside", "inside"):
        low, high = (_finite(v, (*path, condition, i)) for i, v in enumerate(item[condition]))
        if not low < high:
            raise ParamsError(f"empty range [{low:g}, {high:g}] in rule {item['id']!r}", (*path, condition),
                              "[low, high] with low < high")
        fields.update(low=low, high=high)
    else:
        change = item["change"]
        by = _finite(change["by"], (*path, "change", "by"))
        if by <= 0:
            raise ParamsError(f"change.by must be positive in rule {item['id']!r}", (*path, "change", "by"),
                              "a positive amount (use direction: fall for decreases)")
        fields.update(window_s=float(change["window_s"]), by=by, direction=str(change.get("direction", "rise")))
    for key in ("for_s", "cooldown_s", "expires_s", "min_confidence", "max_gap_s"):
        if key in item:
            fields[key] = _finite(item[key], (*path, key))
    streams = item.get("streams")
    rule = Rule(id=str(item["id"]), type=str(item.get("type") or item["id"]), metric=metric, condition=condition,
                description=str(item.get("description", DEFAULT_DESCRIPTION)),
                streams=None if streams is None else tuple(str(s) for s in streams),
                enabled=bool(item.get("enabled", True)), **fields)
    if rule.condition == "change" and rule.max_gap_s < rule.window_s:
        rule = _replace_gap(rule)
    _check_template(rule.description, (*path, "description"))
    return rule


def _replace_gap(rule: Rule) -> Rule:
    # a change window longer than the gap tolerance could never fill: let the gap follow the window
    from dataclasses import replace

    return replace(rule, max_gap_s=rule.window_s)


def _check_metric(metric: str, path: tuple[str | int, ...]) -> None:
    if metric in TRACK_METRICS or metric in STREAM_METRICS:
        return
    for prefix in POSE_PREFIXES:
        if metric.startswith(prefix) and len(metric) > len(prefix):
            return
    raise ParamsError(f"unknown metric {metric!r}", path, "one of " + METRICS_HINT)


def _finite(value: Any, path: tuple[str | int, ...]) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ParamsError(f"bad value {value!r}", path, "a finite number")
    return number


def _check_template(template: str, path: tuple[str | int, ...]) -> None:
    try:
        templates.check(template)
    except templates.TemplateError as exc:
        raise ParamsError(f"bad description template: {exc}", path,
                          "text with {field} placeholders among " + ", ".join(TEMPLATE_FIELDS)) from None
    sample = {"rule": "r", "type": "t", "track_id": 1, "stream_id": "s", "metric": "m", "value": 1.0,
              "condition": "c", "held_s": 0.0, "threshold": 1.0}
    try:
        templates.render(template, sample)
    except (ValueError, TypeError) as exc:
        raise ParamsError(f"bad description template: {exc}", path, "valid str.format placeholders") from None


def _plain(value: Any) -> Any:
    """LocMap/LocList (and any Mapping/Sequence) as plain dicts and lists, for jsonschema."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


def load_rules_file(path: str | Path) -> tuple[Rule, ...]:
    """Rules from a YAML or JSON file (a list, or a mapping with a ``rules`` list).

    Raises :class:`~flowgraph.errors.GraphError` naming ``file:line:col`` of the offending key.
    """
    from flowgraph.errors import Location
    from flowgraph.graph_schema import locate
    from flowgraph.yaml_loader import load_yaml

    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GraphError(f"cannot read rules file: {exc}", Location(name, 1, 1), "a readable UTF-8 file") from None
    document = load_yaml(text, name)
    base: tuple[str | int, ...] = ("rules",) if isinstance(document, Mapping) else ()
    raw = document.get("rules") if isinstance(document, Mapping) else document
    try:
        return parse_rules(raw, base)
    except ParamsError as exc:
        where = locate(document, list(exc.path), key=True) or Location(name, 1, 1)
        raise GraphError(exc.message, where, exc.expected) from None
