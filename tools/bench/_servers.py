"""Throw-away redis-server and PostgreSQL instances for benchmarks: temporary directories, free loopback ports,
stopped by their PID (PostgreSQL runs as the unprivileged ``postgres`` user when started as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from _net import free_port, wait_port


def pg_bin() -> Path:
    """The newest installed PostgreSQL's bin directory (/usr/lib/postgresql/<major>/bin, else pg_ctl on PATH)."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    if found:
        return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1)
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise FileNotFoundError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no pg_ctl on PATH)")


PG_BIN = pg_bin() if Path("/usr/lib/postgresql").exists() or shutil.which("pg_ctl") else Path("/nonexistent")


class Redis:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
        self.port = free_port()
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                                      str(self.dir), "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Postgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        self.port = free_port()
        root = os.geteuid() == 0
        if root:
            shutil.chown(self.dir, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"] if root else []
        data = self.dir / "data"
        subprocess.run([*prefix, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                        "--no-sync"], check=True, capture_output=True)
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c shared_buffers=128MB"
        subprocess.run([*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                        str(self.dir / "log"), "-w", "start"], check=True, capture_output=True)
        wait_port(self.port)
        self._stop = [*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        subprocess.run(self._stop, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
