"""Fixtures shared by every test: free loopback ports, temporary graph files."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest


def free_port_number() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_port_number()


@pytest.fixture
def graph_file(tmp_path: Path) -> Callable[[str], Path]:
    """Write YAML text to a temporary ``graph.yaml`` and return its path."""

    def write(text: str, name: str = "graph.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
