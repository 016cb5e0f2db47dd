"""flowgraph's node library, installed as ``flowgraph.nodes`` (never a top-level ``nodes`` import)."""
