"""WebRTC viewers: ``webrtc_out`` fans H.264 packets out to browsers with an ``analytics`` data channel.

Modules by concept: :mod:`.node` (the graph node), :mod:`.hub` (viewers of one process), :mod:`.session` (one
viewer's peer connection), :mod:`.fanout` (per-stream packet fan-out and GOP cache), :mod:`.feed` (one viewer's
frame queue and RTP hooks), :mod:`.h264` (Annex-B helpers), :mod:`.hdrext` (playout-delay header extension and
loopback candidates), :mod:`.signaling` (SDP checks and HTTP handlers), :mod:`.abr` (bitrate controller),
:mod:`.workers` (viewer processes), :mod:`.stats` (per-viewer figures).
"""
