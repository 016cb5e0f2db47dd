"""WebRTC viewers: ``webrtc_out`` fans H.264 packets out to browsers with an ``analytics`` data channel.

Modules by concept: :mod:`.node` (the graph node), :mod:`.hub` (viewers of one process), :mod:`.session` (one
viewer's peer connection), :mod:`.fanout` (per-stream packet fan-out, GOP cache, hold after a gap), :mod:`.feed`
(one viewer's frame queue and RTP timing), :mod:`.aiortc_adapter` (every hook into aiortc/aioice internals, version
checked), :mod:`.hdrext` (playout-delay header extension), :mod:`.signaling` (SDP checks and HTTP handlers),
:mod:`.abr` (bitrate controller), :mod:`.workers` / :mod:`.worker` / :mod:`.ipc` (viewer processes and the packet
pipe to them), :mod:`.stats` (per-viewer figures). H.264 helpers live in :mod:`flowgraph.nodes.media.h264`.
"""
