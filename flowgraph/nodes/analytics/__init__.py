"""The analytics path: ``fuse`` (join + ring buffer + betting rules), ``ws_out`` (WebSocket push), ``store``
(SQLite / Redis / PostgreSQL with an on-disk spool) and the REST API under ``/api/streams``.

Node modules import nothing heavy at top level; the store backends import their drivers when they connect.
"""
