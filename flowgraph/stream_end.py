"""How many copies of one stream's end marker each node waits for before it frees that stream's state.

A :class:`~flowgraph.messages.StreamEnd` leaves its origin (an ingest node) once and every node forwards it once on
each output, so it reaches a node once per input edge downstream of the origin. A node that joins branches (fuse:
tracks and poses; webrtc_out: video and analytics) may still get messages of the ended stream on one input after the
marker came on another; it frees the stream's state when the marker has come on *every* such edge, so no late
message re-creates state for a stream that is gone.
"""

from __future__ import annotations

from collections import defaultdict, deque

from .compile import ExecutionPlan
from .messages import StreamEnd

#: Markers a node remembers having acted on (a surplus copy arriving later is ignored).
REMEMBERED = 256
#: Markers waiting for their other copies, per node (bounded even if a branch never forwards its copy).
PENDING_MAX = 1024


def marker_fan_in(plan: ExecutionPlan) -> dict[str, dict[str, int]]:
    """``{node: {origin: input edges reachable from origin}}`` over forward (non-feedback) edges."""
    forward = [edge for edge in plan.edges if not edge.feedback]
    downstream: dict[str, set[str]] = defaultdict(set)
    for edge in forward:
        downstream[edge.source].add(edge.target)
    reach: dict[str, set[str]] = {}
    for origin in plan.nodes:
        seen = {origin}
        todo = [origin]
        while todo:
            for nxt in downstream[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        reach[origin] = seen
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for origin, nodes in reach.items():
        for edge in forward:
            if edge.source in nodes:
                counts[edge.target][origin] = counts[edge.target].get(origin, 0) + 1
    return dict(counts)


class MarkerGate:
    """One node's count of stream-end copies: :meth:`complete` is true once per marker, when its copy came on
    every input edge it reaches the node by (``expected``, from :func:`marker_fan_in`)."""

    def __init__(self) -> None:
        #: {origin node: input edges its markers arrive on}; 1 when not listed
        self.expected: dict[str, int] = {}
        self._pending: dict[int, tuple[StreamEnd, int]] = {}  # by identity: fan-out hands every edge one object
        self._done: deque[StreamEnd] = deque(maxlen=REMEMBERED)

    def complete(self, marker: StreamEnd) -> bool:
        if any(seen is marker for seen in self._done):
            return False
        _, arrived = self._pending.pop(id(marker), (marker, 0))
        if arrived + 1 < self.expected.get(marker.origin, 1):
            self._pending[id(marker)] = (marker, arrived + 1)
            while len(self._pending) > PENDING_MAX:
                self._pending.pop(next(iter(self._pending)))
            return False
        self._done.append(marker)
        return True
