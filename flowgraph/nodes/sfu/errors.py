"""Errors of the SFU tier (kept apart so that importing the node does not import aiohttp)."""

from __future__ import annotations


class JanusError(RuntimeError):
    """A Janus instance refused a request, did not answer, or could not start."""
