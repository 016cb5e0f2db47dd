"""What every node that serves viewers through the signalling router shares (``webrtc_out``, ``sfu_out``).

:class:`ViewerParams` holds the params both nodes take (one definition, one schema, one validation);
:class:`ViewerNode` registers the node with the router and answers the router's questions about those params.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from flowgraph.node import Node
from flowgraph.params import param

if TYPE_CHECKING:
    from .signaling import Backend, Router

PLAYOUT_DELAY_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "null"},
              {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 40950},
               "minItems": 2, "maxItems": 2}],
}


@dataclass
class ViewerParams:
    """The viewer-facing params of a node that serves viewers (a node's own ``Params`` extends this)."""

    default_stream: str = param("", "stream a viewer gets when it names none ('' = the first stream seen)")
    streams: list[str] = param([], "stream ids viewers may join before their first packet arrives")
    playout_delay_ms: list[int] | None = param(
        [0, 100], "playout-delay RTP header extension [min, max] ms sent to viewers (null = off)",
        schema=PLAYOUT_DELAY_SCHEMA)
    max_sdp_bytes: int = param(65_536, "largest SDP offer accepted", minimum=1024, maximum=262_144)
    page: bool = param(True, "serve the viewer page at / (and /watch)")


class ViewerNode(Node):
    """A node whose viewers connect through the shared signalling router (``POST /api/stream/connect``, WHEP)."""

    router: Router

    async def setup(self) -> None:
        from .signaling import install_routes

        self.router = install_routes(self.ctx.server, self.ctx, page=self.params.page)
        self.router.add(cast("Backend", self))  # each subclass supplies the rest of the Backend protocol

    # -- the router's Backend protocol: the params half -------------------------------------------------------
    @property
    def max_sdp_bytes(self) -> int:
        return int(self.params.max_sdp_bytes)

    @property
    def default_stream(self) -> str:
        return str(self.params.default_stream)
