"""Throw-away redis-server and PostgreSQL instances for benchmarks, in temporary directories on free loopback ports
— the same :mod:`flowgraph.testservers` the analytics tests use, with benchmark settings (no Redis persistence,
PostgreSQL with its defaults and 128 MB of shared buffers), stopped by PID and their folders removed."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from _net import free_port  # noqa: F401  (re-exported for the benchmarks)

from flowgraph.testservers import PostgresServer, RedisServer, postgres_bin


def pg_bin() -> Path:
    """The newest installed PostgreSQL's bin directory."""
    found = postgres_bin()
    if found is None:
        raise FileNotFoundError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no pg_ctl on PATH)")
    return found


class Redis(RedisServer):
    def __init__(self) -> None:
        super().__init__(Path(tempfile.mkdtemp(prefix="bench-redis-")), durable=False)
        self.start()

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class Postgres(PostgresServer):
    def __init__(self) -> None:
        super().__init__(Path(tempfile.mkdtemp(prefix="bench-pg-")), fast=False, shared_buffers="128MB")
        self.init()
        self.start()

    def stop(self, mode: str = "fast") -> None:
        super().stop(mode)
        shutil.rmtree(self.directory, ignore_errors=True)
