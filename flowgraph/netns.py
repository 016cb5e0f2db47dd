"""Linux network namespaces for tests and benchmarks that start servers which listen on every interface (Ray).

Ray binds all interfaces whatever address it is given; inside a network namespace whose only interface is ``lo``
nothing it opens is reachable from outside the namespace. :func:`inside` moves the *calling thread* into such a
namespace (``setns``): sockets it opens, threads it starts and processes it spawns from then on live there, and
the thread returns to its own namespace afterwards. Needs root (CAP_SYS_ADMIN) and ``ip`` from iproute2.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import threading
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000


class NetnsUnavailable(RuntimeError):
    """A network namespace cannot be made here (not root, no iproute2, no kernel support); says why."""


def create(name: str, *, local_address: str | None = None) -> None:
    """A namespace ``name`` with its loopback up. ``local_address`` (``10.213.0.1/24``) adds a veth pair whose
    both ends stay inside the namespace, one with that address — an interface reachable only from inside: WebRTC
    peers (Chromium) gather no candidate on a host whose only interface is loopback."""
    commands = [["ip", "netns", "add", name], ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"]]
    if local_address:
        inside_ns = ["ip", "netns", "exec", name, "ip"]
        commands += [[*inside_ns, "link", "add", "fg0", "type", "veth", "peer", "name", "fg1"],
                     [*inside_ns, "addr", "add", local_address, "dev", "fg0"],
                     [*inside_ns, "link", "set", "fg0", "up"], [*inside_ns, "link", "set", "fg1", "up"]]
    try:
        for command in commands:
            subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise NetnsUnavailable(f"iproute2's 'ip' is not installed: {exc}") from None
    except subprocess.CalledProcessError as exc:
        delete(name)
        raise NetnsUnavailable(f"'{' '.join(exc.cmd)}' failed: {exc.stderr.strip()}") from None


def delete(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise NetnsUnavailable(f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the body with the calling thread in namespace ``name``; back to where it was afterwards."""
    own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
