"""Utility nodes that exercise the core without media: tick, passthrough, slow, collect."""
