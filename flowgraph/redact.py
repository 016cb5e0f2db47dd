"""Secrets never shown: URLs and settings as they may appear in the API, logs and error messages."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

MASK = "***"
#: Query parameters and setting names whose value is a secret (matched case-insensitively, as a substring).
SECRET_NAMES = ("token", "passphrase", "password", "passwd", "secret", "key", "credential", "auth", "sig",
                "pass", "pwd")
_SECRET = re.compile("|".join(SECRET_NAMES), re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET.search(name))


def redact_url(url: str) -> str:
    """``url`` without its secrets: the password, secret query values, and the stream key of an RTMP URL.

    ``rtmp://h/live/KEY`` → ``rtmp://h/live/***``, ``whip://?token=T`` → ``whip://?token=***``,
    ``srt://h:9000?passphrase=P`` → ``srt://h:9000?passphrase=***``, ``rtsp://u:P@h/`` → ``rtsp://u:***@h/``.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return MASK  # cannot tell the secret from the rest: show nothing
    netloc = parts.netloc
    if parts.password is not None:
        user_info, _, host = netloc.rpartition("@")
        user = user_info.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}"
    path = parts.path
    if parts.scheme.lower() in ("rtmp", "rtmps", "rtmpt", "rtmpe") and path.count("/") >= 2:
        path = path.rsplit("/", 1)[0] + "/" + MASK
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{quote(k, safe='')}={MASK if is_secret_name(k) else quote(v, safe='')}" for k, v in pairs)
    shown = urlunsplit((parts.scheme, netloc, path, query, parts.fragment))
    if not netloc and url.startswith(f"{parts.scheme}://") and not shown.startswith(f"{parts.scheme}://"):
        shown = f"{parts.scheme}://" + shown[len(parts.scheme) + 1:]  # keep whip:// as written
    return shown


def redact_mapping(value: Any) -> Any:
    """A copy of nested settings with every secret-named string value masked (for ``/api/graph`` and logs)."""
    if isinstance(value, Mapping):
        return {str(k): (MASK if is_secret_name(str(k)) and isinstance(v, str) and v else redact_mapping(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_mapping(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value
