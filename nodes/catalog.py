"""The built-in node types, by the name a graph file uses. Values are ``module:Class`` (imported lazily)."""

BUILTIN: dict[str, str] = {
    # core utilities (no media)
    "tick": "flowgraph.nodes.core.utility:Tick",
    "passthrough": "flowgraph.nodes.core.utility:Passthrough",
    "slow": "flowgraph.nodes.core.utility:Slow",
    "collect": "flowgraph.nodes.core.utility:Collect",
    "log": "flowgraph.nodes.core.utility:Log",
    "fail": "flowgraph.nodes.core.utility:Fail",
    "frames": "flowgraph.nodes.core.utility:Frames",
    "frame_probe": "flowgraph.nodes.core.utility:FrameProbe",
    # analysis
    "vibrio": "flowgraph.nodes.vibrio.node:Vibrio",
    "moriarty": "flowgraph.nodes.moriarty.node:Moriarty",
    # analytics
    "fuse": "flowgraph.nodes.analytics.fuse:Fuse",
    "ws_out": "flowgraph.nodes.analytics.ws_out:WsOut",
    "store": "flowgraph.nodes.analytics.store:Store",
    # viewers
    "webrtc_out": "flowgraph.nodes.webrtc.node:WebRTCOut",
    # media
    "ingest": "flowgraph.nodes.media.ingest:Ingest",
    "decode": "flowgraph.nodes.media.decode:Decode",
    "encode": "flowgraph.nodes.media.encode:Encode",
    "record": "flowgraph.nodes.media.record:Record",
}
