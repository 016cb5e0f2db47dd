"""Every exception flowgraph raises on purpose lives here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a source file something was written (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class FlowgraphError(Exception):
    """Base of all flowgraph errors."""


class GraphError(FlowgraphError):
    """A graph description is wrong. ``str()`` is one line: ``file:line:col: what is wrong (expected ...)``."""

    def __init__(self, message: str, location: Location | None = None, expected: str | None = None) -> None:
        self.message = message
        self.location = location
        self.expected = expected
        super().__init__(self.line())

    def line(self) -> str:
        text = self.message
        if self.expected:
            text += f" (expected {self.expected})"
        return f"{self.location}: {text}" if self.location else text


class GraphErrors(FlowgraphError):
    """Several :class:`GraphError` found in one pass, reported together."""

    def __init__(self, errors: list[GraphError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.line() for e in errors))


class ParamsError(FlowgraphError):
    """Params given to a node do not fit its schema; ``path`` is the offending key path inside ``params``."""

    def __init__(self, message: str, path: tuple[str | int, ...] = (), expected: str | None = None) -> None:
        self.message = message
        self.path = path
        self.expected = expected
        super().__init__(message)


class NodeError(FlowgraphError):
    """A node failed while running; carries the node name and the frame it was working on."""

    def __init__(self, node: str, frame_id: int | None, cause: BaseException) -> None:
        self.node = node
        self.frame_id = frame_id
        self.cause = cause
        where = f"node {node!r}" + (f" frame_id={frame_id}" if frame_id is not None and frame_id >= 0 else "")
        super().__init__(f"{where}: {type(cause).__name__}: {cause}")


class PermanentError(FlowgraphError):
    """A failure no retry can mend (a source file that does not exist): the graph stops with this message,
    whatever the node's ``on_error`` says, instead of restarting the node forever."""


class DeviceError(FlowgraphError):
    """A requested device does not exist on this machine."""
