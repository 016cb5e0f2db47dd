"""Media nodes: ingest (RTMP, WHIP, pull, camera, file, synthetic), decode, encode, record.

Everything that moves compressed video between them is an H.264 Annex-B :class:`flowgraph.messages.Packet`. Node
modules import PyAV/aiortc lazily; the helper modules they load at run time (``h264``, ``encoder``, ``pull`` ...)
may import them at the top.
"""
