"""Node types by name: the built-in library plus any package's ``flowgraph.nodes`` entry points.

Names map to ``"module:Class"`` strings and are imported on first use, so listing and validating never import
the heavy libraries a node needs at run time (node modules import those inside ``start``).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from .node import Node

ENTRY_POINT_GROUP = "flowgraph.nodes"


class Registry:
    def __init__(self, targets: dict[str, str] | None = None) -> None:
        self._targets: dict[str, str] = {}
        self._loaded: dict[str, type[Node]] = {}
        if targets:
            self._targets.update(targets)

    @classmethod
    def default(cls) -> Registry:
        """Every node type installed under the ``flowgraph.nodes`` entry-point group, the built-in library
        included (it registers exactly as a third-party package does). Two packages claiming one name: the
        built-in library wins, otherwise the first one found."""
        registry = cls()
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: not ep.value.startswith("flowgraph.")):
            registry._targets.setdefault(ep.name, ep.value)
        return registry

    def names(self) -> list[str]:
        return sorted(set(self._targets) | set(self._loaded))

    def __contains__(self, name: str) -> bool:
        return name in self._targets or name in self._loaded

    def register(self, name: str, cls: type[Node]) -> None:
        """Register a class directly (tests, embedding applications)."""
        cls.type_name = name
        self._loaded[name] = cls

    def get(self, name: str) -> type[Node]:
        if name in self._loaded:
            return self._loaded[name]
        target = self._targets[name]
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        cls: Any = getattr(module, attr)
        if not (isinstance(cls, type) and issubclass(cls, Node)):
            raise TypeError(f"{target} is not a flowgraph Node subclass")
        cls.type_name = name
        self._loaded[name] = cls
        return cls
