"""A worker process on this host: a Unix socket for messages, a shared-memory ring for pictures.

The worker is a fresh interpreter (``python -m flowgraph.island.worker``), not a fork: forking a process that
runs an event loop, threads and CUDA is unsafe. It runs in a session of its own, so a terminal's Ctrl-C reaches
only the graph, which then stops its workers in order; it dies with the graph process (``PR_SET_PDEATHSIG``) and
when its socket closes, so no worker outlives the graph, however the graph ends.

Priority: the worker lowers its own nice value after its start-up, which orders it below the graph wherever both
share a scheduling group (no autogroup; a systemd service's cgroup). Where the kernel groups tasks by session
(autogroup), the worker's own session keeps its CPU out of the graph's group: a CPU-bound worker inside the
graph's group would use up the group's share and make the graph's threads wait, however low its nice value.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
import subprocess
import sys
from typing import Any

from . import wire
from .cpu_group import GROUP
from .frames import FrameRing, dump_call, load_answer
from .transport import Answer, RemoteError, WorkerDied, WorkerSpec


class LocalProcess:
    """One worker process for one node (see :class:`~flowgraph.island.transport.Transport`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._ring = FrameRing(name)
        self.exit_code: int | None = None
        self.started = 0
        self._booting = False  # launched, READY not read yet
        self._in_call = False  # a call is reading the socket: it closes the socket itself once it sees EOF

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._sock is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def launch(self, spec: WorkerSpec) -> None:
        """Start the process and hand it the spec without waiting for it: workers boot side by side."""
        await self.close(timeout=2.0)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = _spawn(theirs.fileno())
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._ring = FrameRing(self.name)
        self.started += 1
        self._booting = True
        await wire.send(ours, wire.Kind.INIT, pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL))

    async def start(self, spec: WorkerSpec, timeout: float) -> dict[str, Any]:
        if not (self._booting and self.alive):
            await self.launch(spec)
        self._booting = False
        assert self._sock is not None
        try:
            kind, body = await asyncio.wait_for(wire.receive(self._sock), timeout)
        except TimeoutError:
            await self.close(timeout=0.5)
            raise RuntimeError(f"node {self.name!r}: its worker process did not start within {timeout:.0f}s") from None
        except (wire.Closed, OSError):
            code = await self._reap()
            raise RuntimeError(f"node {self.name!r}: its worker process exited during start-up (exit code {code})") \
                from None
        if kind is wire.Kind.FAILED:
            why = pickle.loads(body)
            await self.close(timeout=2.0)
            raise RuntimeError(f"node {self.name!r} failed to start in its worker process: {why}")
        info: dict[str, Any] = pickle.loads(body)
        info["cpu_group"] = GROUP.admit(info["pid"]) if spec.idle and self._proc is not None else None
        return info

    async def call(self, port: str, msg: Any) -> Answer:
        sock = self._sock
        if sock is None or not self.alive:
            raise WorkerDied(f"worker process of node {self.name!r} is not running")
        data, call = dump_call((port, msg), self._ring)
        pid = self.pid
        self._in_call = True
        try:
            if call.announcement is not None:
                assert self._ring.fd is not None
                await wire.send(sock, wire.Kind.RING, pickle.dumps(call.announcement), fds=[self._ring.fd])
            await wire.send(sock, wire.Kind.CALL, data)
            kind, body = await wire.receive(sock)
        except (wire.Closed, OSError) as exc:
            code = await self._reap()
            raise WorkerDied(f"worker process {pid} of node {self.name!r} ended (exit code {code}): {exc}") from None
        finally:
            self._in_call = False
            if self._sock is not sock:  # released meanwhile (worker gone, or stopped): ours to close now
                sock.close()
        if kind is wire.Kind.ANSWER:
            outputs, extras = load_answer(body, call)
            return Answer(outputs, extras)
        if kind is wire.Kind.ERROR:
            report = pickle.loads(body)
            raise RemoteError(report["error"], report.get("extras"))
        raise WorkerDied(f"worker process of node {self.name!r} answered with record {kind!r}")

    async def close(self, timeout: float) -> int | None:
        proc, sock = self._proc, self._sock
        if proc is None:
            return self.exit_code
        try:
            if sock is not None and proc.poll() is None:
                try:
                    await asyncio.wait_for(wire.send(sock, wire.Kind.EXIT), 0.5)
                except (OSError, TimeoutError, wire.Closed):
                    pass
                await _wait(proc, timeout)
            return await self._reap()
        except asyncio.CancelledError:  # a drain timeout cancelled the graceful stop: no worker is left behind
            self._kill_now()
            raise

    async def _reap(self) -> int | None:
        """Make sure the process is gone (killed if needed) and release the socket and the ring."""
        proc = self._proc
        self._release()
        if proc is None:
            return self.exit_code
        try:
            if not await _wait(proc, 1.0):
                proc.kill()
                await asyncio.to_thread(proc.wait)
        except asyncio.CancelledError:
            self._kill_now(proc)
            raise
        self.exit_code = proc.returncode
        GROUP.leave(proc.pid)
        return self.exit_code

    def _release(self) -> None:
        sock = self._sock
        self._proc = self._sock = None
        self._booting = False
        if sock is not None:
            # shutting down wakes a call waiting on the socket (it sees EOF); closing under it would not
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            if not self._in_call:
                sock.close()
        self._ring.close()

    def _kill_now(self, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Kill and reap at once (blocking for the few ms a SIGKILLed process takes to go)."""
        proc = proc or self._proc
        self._release()
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            self.exit_code = proc.wait()
            GROUP.leave(proc.pid)

    def stats(self) -> dict[str, Any]:
        return {"pid": self.pid, "frames_shared": self._ring.frames_written,
                "shared_mb": round(self._ring.bytes_written / 1e6, 1), "ring_slot_kb": self._ring.slot_size // 1024,
                "ring_slots": self._ring.slots}


def _spawn(fd: int) -> subprocess.Popen[bytes]:
    # A session of its own: with autogroup scheduling (on by default in many kernels) that is a scheduling group
    # of its own — the CPU the worker burns is not charged to the graph's group.
    return subprocess.Popen([sys.executable, "-m", "flowgraph.island.worker", str(fd)], pass_fds=(fd,),
                            stdin=subprocess.DEVNULL, start_new_session=True)


async def _wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``proc`` to end; True when it has."""
    if proc.poll() is not None:
        return True
    try:
        await asyncio.to_thread(proc.wait, timeout)
    except subprocess.TimeoutExpired:
        return False
    return True
