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


class TooManyViewers(ViewerRequestError):
    """One client address opened ``limits.viewers_per_address`` viewers within the window and keeps them."""

    status = 429


#: What aiortc raises on an SDP offer it cannot parse or answer (peer input, so a 400, never a 500).
#: (found by tests/fuzz: ``assert m`` in its SDP parser, StopIteration surfacing as RuntimeError)
OFFER_PARSE_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError, AssertionError, RuntimeError)


def bad_offer(exc: BaseException) -> BadOffer:
    """A parse failure inside aiortc as the viewer's error, its text cut short."""
    return BadOffer(f"cannot answer this offer: {type(exc).__name__}: {str(exc)[:160]}")
