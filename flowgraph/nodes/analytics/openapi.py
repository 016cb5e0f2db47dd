"""The OpenAPI 3.1 description served at ``/api/openapi.json`` (message bodies reuse the analytics schemas)."""

from __future__ import annotations

from typing import Any

from flowgraph.nodes.analytics.schemas import ANALYTICS_TYPES

from .rules import RULES_SCHEMA
from .schemas import schema

_ERROR = {"type": "object", "required": ["error"],
          "properties": {"error": {"type": "string"}, "param": {"type": "string"}, "expected": {"type": "string"},
                         "path": {"type": "array", "items": {"type": ["string", "integer"]}}}}
_STREAM_ID = {"name": "stream_id", "in": "path", "required": True, "schema": {"type": "string"}}
_TIME = {"oneOf": [{"type": "number", "description": "unix seconds"},
                   {"type": "string", "format": "date-time", "description": "ISO 8601 (UTC when no offset)"}]}
_FROM = {"name": "from", "in": "query", "schema": _TIME, "description": "oldest timestamp (inclusive)"}
_TO = {"name": "to", "in": "query", "schema": _TIME, "description": "newest timestamp (inclusive)"}


def _limit(default: int) -> dict[str, Any]:
    return {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10_000,
                                                        "default": default}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "bad query parameter or body", 401: "missing or wrong bearer token", 404: "unknown stream",
            503: "the store is unreachable"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": {"$ref":
            "#/components/schemas/Error"}}}} for c in codes}


def _json(schema_ref: dict[str, Any], description: str) -> dict[str, Any]:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema_ref}}}}


def document(with_ws: bool = True) -> dict[str, Any]:
    """The whole API description."""
    message = {"oneOf": [{"$ref": f"#/components/schemas/{t}"} for t in ANALYTICS_TYPES]}
    rules_body = {"type": "object", "properties": {
        "stream_id": {"type": "string"}, "origin": {"enum": ["graph", "file", "api"]},
        "version": {"type": "integer"}, "rules": {"$ref": "#/components/schemas/Rules"}}}
    paths: dict[str, Any] = {
        "/api/streams": {"get": {
            "summary": "Live streams with viewers, fps and health",
            "responses": _json({"type": "object", "properties": {"streams": {"type": "array", "items": {
                "$ref": "#/components/schemas/Stream"}}, "time": {"type": "number"}}}, "the streams"),
        }},
        "/api/streams/{stream_id}": {"get": {
            "summary": "One live stream", "parameters": [_STREAM_ID],
            "responses": {**_json({"$ref": "#/components/schemas/Stream"}, "the stream"), **_errors(404)},
        }},
        "/api/streams/{stream_id}/analytics": {"get": {
            "summary": "Stored analytics of a stream (from the store; from the ring buffer without one)",
            "parameters": [_STREAM_ID, _FROM, _TO, {
                "name": "type", "in": "query", "description": "comma-separated message types",
                "schema": {"type": "string", "example": "speed,betting_opportunity"}}, _limit(1000)],
            "responses": {**_json({"type": "object", "properties": {
                "stream_id": {"type": "string"}, "source": {"type": "string"}, "count": {"type": "integer"},
                "items": {"type": "array", "items": message}}}, "messages, oldest first"),
                **_errors(400, 404, 503)},
        }},
        "/api/streams/{stream_id}/opportunities": {"get": {
            "summary": "Betting opportunities of a stream",
            "parameters": [_STREAM_ID, _FROM, _TO, {"name": "active", "in": "query", "schema": {"type": "boolean"},
                                                    "description": "only those not yet expired"}, _limit(100)],
            "responses": {**_json({"type": "object", "properties": {
                "stream_id": {"type": "string"}, "source": {"type": "string"}, "count": {"type": "integer"},
                "items": {"type": "array", "items": {
                    "$ref": "#/components/schemas/betting_opportunity/properties/payload"}}}},
                "opportunity records, oldest first"), **_errors(400, 404, 503)},
        }},
        "/api/streams/{stream_id}/rules": {
            "get": {"summary": "Rules in force for a stream", "parameters": [_STREAM_ID],
                    "responses": {**_json(rules_body, "the rules"), **_errors(404)}},
            "put": {"summary": "Replace the stream's rules while it runs (next frame on)", "parameters": [_STREAM_ID],
                    "security": [{"bearer": []}, {}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/Rules"},
                        {"type": "object", "properties": {"rules": {"$ref": "#/components/schemas/Rules"}}}]}}}},
                    "responses": {**_json(rules_body, "the rules now in force"), **_errors(400, 401, 404)}},
            "delete": {"summary": "Back to the graph's rules", "parameters": [_STREAM_ID],
                       "security": [{"bearer": []}, {}],
                       "responses": {**_json(rules_body, "the rules now in force"), **_errors(401, 404)}},
        },
        "/healthz": {"get": {"summary": "200 while no node has failed, else 503",
                             "responses": {"200": {"description": "healthy"}, "503": {"description": "failed"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format"}}}},
        "/api/metrics": {"get": {"summary": "Per-node and per-edge figures (JSON)",
                                 "responses": {"200": {"description": "snapshot"}}}},
    }
    if with_ws:
        paths["/stream/{stream_id}/analytics"] = {"get": {
            "summary": "WebSocket: live analytics {type, payload, seq}",
            "description": "Upgrade to a WebSocket. Messages: the analytics types; 'gap' and 'pong' only in answer "
                           "to since= or {op: ping}. Client may send {op: subscribe, types: [...]} or {op: ping}. "
                           "Close codes: 1003 binary frame, 1007 not a JSON object, 1008 bad op, 1009 too large.",
            "parameters": [_STREAM_ID,
                           {"name": "types", "in": "query", "schema": {"type": "string"}},
                           {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0},
                            "description": "replay the ring buffer after this seq, then go live"},
                           {"name": "token", "in": "query", "schema": {"type": "string"}}],
            "responses": {"101": {"description": "switching protocols"}, **_errors(400, 401, 404),
                          "403": {"description": "origin not allowed"}, "503": {"description": "too many clients"}},
        }}
    schemas: dict[str, Any] = {t: _strip(schema(t)) for t in ANALYTICS_TYPES}
    schemas["Error"] = _ERROR
    schemas["Rules"] = RULES_SCHEMA
    schemas["Stream"] = {"type": "object", "properties": {
        "stream_id": {"type": "string"}, "health": {"enum": ["ok", "stale", "down", "idle"]},
        "age_s": {"type": ["number", "null"]}, "fps": {"type": ["number", "null"]},
        "viewers": {"type": "object", "properties": {"ws": {"type": "integer"}, "other": {"type": "integer"},
                                                     "total": {"type": "integer"}}},
        "analytics": {"type": ["object", "null"]}, "roles": {"type": "object"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "flowgraph analytics API", "version": "1.0.0",
                 "description": "Morphine contracts: REST over the graph server, WebSocket push of analytics."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _strip(message_schema: dict[str, Any]) -> dict[str, Any]:
    """A message schema as an OpenAPI component: local ``$ref``s rebased, ``$schema``/``$id`` dropped."""
    import json

    name = message_schema["title"]
    text = json.dumps({k: v for k, v in message_schema.items() if k not in ("$schema", "$id")})
    rebased: dict[str, Any] = json.loads(text.replace('"#/$defs/', f'"#/components/schemas/{name}/$defs/'))
    return rebased
