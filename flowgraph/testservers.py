"""Throw-away redis-server and PostgreSQL instances for tests and benchmarks.

One implementation for the analytics test fixtures (``tests/nodes/analytics/conftest.py``) and the benchmarks
(``tools/bench/_servers.py``, ``tools/bench/chaos.py``): temporary directories, free loopback ports, started and
stopped — or SIGKILLed, as a crash — by the PIDs these objects started. When run as root, PostgreSQL runs as the
unprivileged ``postgres`` user (initdb refuses root).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Return once something accepts connections on ``127.0.0.1:port``; raise ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/<major>/bin), else the directory
    of ``pg_ctl`` on PATH when ``initdb`` sits beside it; None when PostgreSQL is not installed."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    if found:
        return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1)
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path and (Path(on_path).parent / "initdb").exists() else None


class RedisServer:
    """A real redis-server on a free loopback port, its files in ``directory`` (which must exist).

    ``durable``: AOF with ``appendfsync always`` — an acknowledged write survives ``kill -9`` and a restart on the
    same directory and port; otherwise nothing is persisted (benchmarks).
    """

    def __init__(self, directory: Path, *, durable: bool = True) -> None:
        self.directory = directory
        self.durable = durable
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--save", "", *persistence, "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, timeout)

    def kill(self) -> None:
        """SIGKILL (a crash); :meth:`start` brings it back on the same port and data."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


class PostgresServer:
    """A real PostgreSQL cluster in ``directory`` (created by :meth:`init`) on a free loopback port.

    ``fast``: ``fsync=off`` and ``full_page_writes=off`` (a killed server still recovers: its writes sit in the OS
    page cache; only a machine crash could lose them) — for tests; benchmarks keep PostgreSQL's defaults.
    """

    def __init__(self, directory: Path, *, fast: bool = True, shared_buffers: str = "32MB",
                 timeout_s: float = 60.0) -> None:
        found = postgres_bin()
        if found is None:
            raise FileNotFoundError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no pg_ctl "
                                    "with initdb on PATH)")
        self.bin = found
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.fast = fast
        self.shared_buffers = shared_buffers
        self.timeout_s = timeout_s
        self.root = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        prefix = ["runuser", "-u", "postgres", "--"] if self.root else []
        return subprocess.run([*prefix, *args], check=check, capture_output=True, timeout=self.timeout_s)

    def init(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.root:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                   f"-c shared_buffers={self.shared_buffers}")
        if self.fast:
            options += " -c fsync=off -c full_page_writes=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"),
                  "-w", "-t", str(int(self.timeout_s)), "start")
        wait_port(self.port, self.timeout_s)

    def pid(self) -> int | None:
        """The postmaster's PID while the cluster runs (from ``postmaster.pid``), else None."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend (a crash, not a shutdown); :meth:`start` recovers it."""
        pid = self.pid()
        if pid is None:
            return
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        for child in [pid, *map(int, children)]:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def stop(self, mode: str = "immediate") -> None:
        """``pg_ctl stop -m mode`` when it runs (``immediate`` for tests, ``fast`` for a clean shutdown)."""
        if self.pid() is not None:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)
