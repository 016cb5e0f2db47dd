"""SFU tier: ``sfu_out`` feeds Janus instances once per stream; flowgraph keeps the viewer signalling."""
