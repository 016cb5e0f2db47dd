"""Who may do what to a running graph: the listen/credential check made before start, and bearer tokens.

A graph is secure by default. Everything listens on loopback unless the YAML says otherwise; a graph whose HTTP
server or RTMP ingest listens on any other address refuses to start unless every surface that changes state has a
credential, or ``server.open`` says explicitly that it is open::

    server:
      host: 0.0.0.0
      token: ${ADMIN_TOKEN}        # control: viewer stats and kicking viewers; rules when the fuse node has none
      read_token: ${READ_TOKEN}    # optional: the read API (streams, history, metrics, graph) and WS analytics
      open: [ws]                   # surfaces deliberately left open: true (all) or a list of SURFACES
      tls: {cert: /etc/flowgraph/cert.pem, key: /etc/flowgraph/key.pem}

The surfaces (each node type declares its own with :meth:`flowgraph.node.Node.surfaces`):

``publish``  RTMP stream keys and WHIP bearer tokens (``ingest``)
``rules``    ``PUT``/``DELETE /api/streams/{id}/rules`` (``fuse.api_token``, else ``server.token``)
``viewers``  ``GET /api/webrtc/stats`` (lists viewer ids) and kicking viewers (``server.token``)
``ws``       ``WS /stream/{id}/analytics`` (``ws_out.token``, else ``server.read_token``)

A credential guarding a non-loopback listener must be at least :data:`MIN_CREDENTIAL_CHARS` characters: a
well-known key such as ``live`` is no credential. Errors name the YAML key (``file:line:col``).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import GraphError, GraphErrors, Location

if TYPE_CHECKING:
    from aiohttp import web

    from .compile import ExecutionPlan

SURFACES = ("publish", "rules", "viewers", "ws")
MIN_CREDENTIAL_CHARS = 12
#: Server-level credentials that stand in for a surface whose node names none.
FALLBACK = {"rules": "token", "viewers": "token", "ws": "read_token"}
HOW_TO = 'generate one with: python3 -c "import secrets; print(secrets.token_urlsafe(18))"'


@dataclass(frozen=True)
class Surface:
    """Something a node serves that a peer can use to change state.

    ``listener`` is ``None`` for the graph's HTTP server, else the address of the node's own socket (RTMP).
    ``param`` is the key path inside the node's params that holds the credential (for error locations).
    """

    kind: str
    what: str
    credential: str | None
    param: tuple[str | int, ...] = ()
    listener: str | None = None
    host: str | None = None


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname (or '') may resolve to anything: treat it as exposed


def open_surfaces(server: dict[str, Any]) -> frozenset[str]:
    """The surfaces ``server.open`` declares deliberately open."""
    value = server.get("open", False)
    if value is True:
        return frozenset(SURFACES)
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    return frozenset()


def check_exposure(plan: ExecutionPlan, host: str | None = None, *, where_host: Location | None = None) -> None:
    """Refuse a graph that listens beyond loopback with a state-changing surface nobody has to prove a right to.

    ``host`` overrides the server address in the plan (``flowgraph run --host``). Raises GraphError(s).
    """
    from .graph_schema import locate

    server = plan.server
    doc = plan.document
    server_host = host or str(server.get("host", "127.0.0.1"))
    server_loc = where_host or locate(doc, ["server", "host"]) or locate(doc, ["server"], key=True)
    opened = open_surfaces(server)
    errors: list[GraphError] = []
    for name in plan.order:
        node = plan.nodes[name]
        for surface in node.cls.surfaces(node.params):
            listen = surface.host if surface.listener is not None else server_host
            if listen is None or is_loopback(listen) or surface.kind in opened:
                continue
            credential = surface.credential or ""
            fallback = FALLBACK.get(surface.kind)
            if not credential and fallback:
                credential = str(server.get(fallback) or "")
            where = _where(doc, name, surface)
            if surface.listener is None:
                listening = f"the graph server listens on {listen}" + (f" ({server_loc})" if server_loc else "")
            else:
                listening = f"{surface.listener} listens on {listen}"
            if not credential:
                errors.append(GraphError(
                    f"{listening}, but {surface.what} of node {name!r} needs no credential", where,
                    f"a credential from the environment in {_param_names(surface, fallback)}, a loopback "
                    f"address, or server: {{open: [{surface.kind}]}} to leave it open on purpose"))
            elif len(credential) < MIN_CREDENTIAL_CHARS:
                errors.append(GraphError(
                    f"{listening}, but the credential for {surface.what} of node {name!r} has only "
                    f"{len(credential)} characters: guessable", where,
                    f"at least {MIN_CREDENTIAL_CHARS} characters; {HOW_TO}"))
    if errors:
        errors.sort(key=lambda e: (e.location.line, e.location.column) if e.location else (0, 0))
        raise errors[0] if len(errors) == 1 else GraphErrors(errors)


def _param_names(surface: Surface, fallback: str | None) -> str:
    names = [".".join(str(p) for p in surface.param)] if surface.param else []
    if fallback:
        names.append(f"server.{fallback}")
    return " or ".join(names) or "a token"


def _where(doc: Any, node: str, surface: Surface) -> Location | None:
    """The YAML key to point at: the credential param when written, else the server key for a server-level
    credential, else the node's params (or the node)."""
    from .graph_schema import locate

    if surface.param and _written(doc, ["nodes", node, "params", *surface.param]):
        return locate(doc, ["nodes", node, "params", *surface.param])
    if not surface.param and surface.listener is None:
        found = locate(doc, ["server"], key=True)
        if found is not None:
            return found
    return locate(doc, ["nodes", node, "params"], key=True) or locate(doc, ["nodes", node], key=True)


def _written(doc: Any, path: list[Any]) -> bool:
    node = doc
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return False
    return True


# -- bearer tokens at request time ---------------------------------------------------------------------------------
def bearer(request: web.Request, *, query: bool = False) -> str:
    """The bearer token a request presents (``Authorization: Bearer``; with ``query`` also ``?token=``)."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.query.get("token", "") if query else ""


def token_matches(given: str, tokens: Iterable[str]) -> bool:
    """Constant-time comparison against each non-empty accepted token."""
    ok = False
    for token in tokens:
        if token and hmac.compare_digest(given.encode(), token.encode()):
            ok = True
    return ok


def unauthorized(realm: str, expected: str = "Authorization: Bearer <token>") -> web.Response:
    from .server import json_error

    response = json_error(401, "missing or wrong bearer token", expected=expected)
    response.headers["WWW-Authenticate"] = f'Bearer realm="{realm}"'
    return response
