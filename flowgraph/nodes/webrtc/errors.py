"""Errors a viewer's request can cause; each maps to one HTTP status and says what was wrong."""

from __future__ import annotations


class ViewerRequestError(Exception):
    """A viewer's request cannot be served. ``status`` is the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadOffer(ViewerRequestError):
    """The SDP offer is malformed, too large, or cannot receive H.264 video."""

    status = 400


class UnknownStream(ViewerRequestError):
    status = 404


class UnknownViewer(ViewerRequestError):
    status = 404


class StreamFull(ViewerRequestError):
    """``max_viewers`` of a stream (or of the node) are already watching."""

    status = 503
