"""Safe YAML with a location for every key and value.

The loader refuses what YAML would silently accept or what would hurt: duplicate keys, alias expansion past a
budget ("billion laughs"), files over a size limit, unset ``${ENV}`` variables. Every error is a
:class:`~flowgraph.errors.GraphError` that names ``file:line:column``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import GraphError, Location

MAX_FILE_BYTES = 1 << 20
MAX_EXPANDED_NODES = 100_000
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class EnvInt(int):
    """An integer that came from ``${NAME}``: it shows as ``${NAME}`` in error messages, never as its value."""

    source: str

    def __new__(cls, value: int, source: str) -> EnvInt:
        self = super().__new__(cls, value)
        self.source = source
        return self

    def __repr__(self) -> str:
        return self.source

    __str__ = int.__repr__  # the value where it is used (ports, f-strings); the name where it is shown


class EnvFloat(float):
    """A number that came from ``${NAME}``; shown as ``${NAME}`` (see :class:`EnvInt`)."""

    source: str

    def __new__(cls, value: float, source: str) -> EnvFloat:
        self = super().__new__(cls, value)
        self.source = source
        return self

    def __repr__(self) -> str:
        return self.source

    __str__ = float.__repr__


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
        whole = _ENV.fullmatch(value)
        if node.style is None and substituted and whole:
            tag = self.resolve(yaml.ScalarNode, substituted, (True, False))
            if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
                       "tag:yaml.org,2002:null"):
                typed = self.construct_object(yaml.ScalarNode(tag, substituted), deep=True)
                # an unquoted ${TOKEN} that happens to be numeric must not be echoed by a type error
                if isinstance(typed, int) and not isinstance(typed, bool):
                    return EnvInt(typed, whole.group(0))
                if isinstance(typed, float):
                    return EnvFloat(typed, whole.group(0))
                return typed
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
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters before parsing starts
        position = int(getattr(exc, "position", 0) or 0)
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        character = getattr(exc, "character", None)
        code = ord(character) if isinstance(character, str) and character else character
        what = f"character U+{code:04X}" if isinstance(code, int) else "a character"
        raise GraphError(f"YAML error: {what} is not allowed in YAML text", Location(file, line, column),
                         "printable text (tabs, newlines and Unicode are fine)") from None
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
