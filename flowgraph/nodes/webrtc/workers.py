"""``workers: N``: viewers served by N worker processes, each receiving the packet stream once.

Python runs one core per process; past a few hundred viewers the graph process would spend its core on SRTP and
RTP for viewers. The pool starts N ``python -m flowgraph.nodes.webrtc.worker`` processes on Unix socket pairs,
sends every packet and analytics message to each once, and places each new viewer on the worker with the fewest
viewers. A worker that falls behind loses packets (its socket buffer is bounded, drops counted) and restarts its
viewers at the next keyframe; the graph never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket
import sys
from typing import Any

from flowgraph.messages import Packet

from . import ipc
from .errors import StreamFull, UnknownStream, UnknownViewer, ViewerRequestError
from .hub import HubConfig, KeyframeRequest
from .worker import CONFIG_ENV

log = logging.getLogger("flowgraph.webrtc.workers")

_WRITE_LIMIT = 8 << 20  # bytes queued to one worker before its packets are dropped
_ERRORS: dict[str, type[ViewerRequestError]] = {
    "UnknownStream": UnknownStream, "UnknownViewer": UnknownViewer, "StreamFull": StreamFull,
}


class Worker:
    """The graph side of one worker process."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.viewers: dict[str, str] = {}  # viewer_id -> stream_id
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.dropped_packets = 0
        self.gap: set[tuple[str, str]] = set()
        self.reader_task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None and self.writer is not None \
            and not self.writer.is_closing()

    def send(self, message: bytes, *, droppable: bool = False) -> bool:
        if not self.alive:
            return False
        assert self.writer is not None
        if droppable and self.writer.transport.get_write_buffer_size() > _WRITE_LIMIT:
            return False
        self.writer.write(message)
        return True


class WorkerPool:
    """Viewer workers behind the same interface as the in-process backend."""

    def __init__(self, count: int, config: HubConfig, request_keyframe: KeyframeRequest, declared: list[str],
                 *, loopback: bool = True) -> None:
        self.count = count
        self.config = config
        self._request_keyframe = request_keyframe
        self.declared = set(declared)
        self.loopback = loopback
        self.workers = [Worker(i) for i in range(count)]
        self.streams: set[str] = set()
        self._ids = itertools.count(1)
        self.viewers_total = 0

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.gather(*(self._spawn(w) for w in self.workers))

    async def _spawn(self, worker: Worker) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        args = [sys.executable, "-m", "flowgraph.nodes.webrtc.worker", "--fd", str(child.fileno())]
        if self.loopback:
            args.append("--loopback")
        # the config holds TURN credentials: in the environment (readable by this user only), never on the
        # command line that every user of the machine can list
        env = {**os.environ, CONFIG_ENV: ipc.config_to_json(self.config)}
        try:
            worker.process = await asyncio.create_subprocess_exec(*args, pass_fds=(child.fileno(),), env=env)
        finally:
            child.close()
        worker.reader, worker.writer = await asyncio.open_unix_connection(sock=parent)
        worker.reader_task = asyncio.create_task(self._read(worker), name=f"webrtc-worker-{worker.index}")
        if self.declared:
            worker.send(ipc.encode({"op": "declare", "streams": sorted(self.declared)}))

    async def stop(self) -> None:
        for worker in self.workers:
            if worker.writer is not None:
                worker.writer.close()  # the worker exits when its socket closes
        for worker in self.workers:
            process = worker.process
            if process is not None and process.returncode is None:
                try:
                    await asyncio.wait_for(process.wait(), 5)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            if worker.reader_task is not None:
                worker.reader_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker.reader_task

    async def _read(self, worker: Worker) -> None:
        assert worker.reader is not None
        try:
            while True:
                header, _ = await ipc.read(worker.reader)
                op = header.get("op")
                if op == "keyframe":
                    self._request_keyframe(header["stream_id"], header["rendition"], header["why"])
                elif op == "closed":
                    worker.viewers.pop(header["viewer_id"], None)
                else:
                    waiter = worker.pending.pop(header.get("req", -1), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(header)
        except (asyncio.IncompleteReadError, ConnectionError):
            log.warning("viewer worker %d ended", worker.index)
        finally:
            worker.viewers.clear()
            for waiter in worker.pending.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError(f"viewer worker {worker.index} ended"))

    async def _call(self, worker: Worker, header: dict[str, Any], body: bytes = b"",
                    timeout: float = 15.0) -> dict[str, Any]:
        req = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        worker.pending[req] = waiter
        if not worker.send(ipc.encode({**header, "req": req}, body)):
            worker.pending.pop(req, None)
            raise ConnectionError(f"viewer worker {worker.index} is not running")
        reply = await asyncio.wait_for(waiter, timeout)
        if reply.get("op") == "error":
            error = _ERRORS.get(reply.get("kind", ""), ViewerRequestError)(reply["message"])
            error.status = reply.get("status", 400)
            raise error
        return reply

    # -- media in -------------------------------------------------------------------------------------------
    def push_packet(self, msg: Packet, rendition: str) -> None:
        """Send the packet to every worker once; a worker whose socket is full loses it, and its next packet tells
        it so (``lost_before``), so it holds its viewers at the next keyframe."""
        self.streams.add(msg.stream_id)
        key = (msg.stream_id, rendition)
        plain: bytes | None = None
        for worker in self.workers:
            if key in worker.gap:
                if worker.send(ipc.encode_packet(ipc.PacketDelivery(msg, rendition, lost_before=True)),
                               droppable=True):
                    worker.gap.discard(key)
                else:
                    worker.dropped_packets += 1
                continue
            if plain is None:
                plain = ipc.encode_packet(ipc.PacketDelivery(msg, rendition))
            if not worker.send(plain, droppable=True):
                worker.dropped_packets += 1
                worker.gap.add(key)

    def push_analytics(self, stream_id: str, text: str) -> None:
        message = ipc.encode({"op": "analytics", "stream_id": stream_id}, text.encode())
        for worker in self.workers:
            if any(s == stream_id for s in worker.viewers.values()):
                worker.send(message, droppable=True)

    async def end_stream(self, stream_id: str, reason: str = "") -> int:
        """The stream ended: every worker frees its fan-outs (GOP caches), meters and keyframe timers and closes
        its viewers, as the in-process hub does. Returns how many viewers were closed."""
        self.streams.discard(stream_id)
        for worker in self.workers:
            worker.gap = {key for key in worker.gap if key[0] != stream_id}
        replies = await asyncio.gather(*(self._call(w, {"op": "end_stream", "stream_id": stream_id, "reason": reason})
                                         for w in self.workers if w.alive), return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException):
                log.warning("stream %s ended, but a viewer worker did not free it: %s", stream_id, reply)
        return sum(int(reply.get("closed", 0)) for reply in replies if isinstance(reply, dict))

    # -- viewers --------------------------------------------------------------------------------------------
    def known(self, stream_id: str) -> bool:
        return stream_id in self.streams or stream_id in self.declared

    def stream_ids(self) -> list[str]:
        return sorted(self.streams | self.declared)

    def viewers_of(self, stream_id: str) -> int:
        return sum(1 for w in self.workers for s in w.viewers.values() if s == stream_id)

    def has_viewer(self, viewer_id: str) -> bool:
        return any(viewer_id in w.viewers for w in self.workers)

    async def connect(self, offer_sdp: str, stream_id: str, known: bool = False) -> tuple[str, str]:
        if not known and not self.known(stream_id):
            raise UnknownStream(f"unknown stream {stream_id!r}")
        alive = [w for w in self.workers if w.alive]
        if not alive:
            raise StreamFull("no viewer worker is running")
        worker = min(alive, key=lambda w: len(w.viewers))
        viewer_id = f"w{worker.index}-{secrets.token_hex(6)}"
        worker.viewers[viewer_id] = stream_id  # counted now, so concurrent joins spread out
        try:
            reply = await self._call(worker, {"op": "connect", "stream": stream_id, "viewer_id": viewer_id},
                                     offer_sdp.encode())
        except BaseException:
            worker.viewers.pop(viewer_id, None)
            raise
        self.viewers_total += 1
        return viewer_id, str(reply["answer"])

    async def disconnect(self, viewer_id: str) -> None:
        for worker in self.workers:
            if viewer_id in worker.viewers:
                await self._call(worker, {"op": "disconnect", "viewer_id": viewer_id})
                worker.viewers.pop(viewer_id, None)
                return
        raise UnknownViewer(f"no viewer {viewer_id!r}")

    async def stats(self) -> dict[str, Any]:
        replies = await asyncio.gather(*(self._call(w, {"op": "stats"}, timeout=5) for w in self.workers
                                         if w.alive), return_exceptions=True)
        merged: dict[str, Any] = {"streams": {}, "viewers": [], "workers": []}
        for worker, reply in zip([w for w in self.workers if w.alive], replies, strict=False):
            if isinstance(reply, BaseException):
                merged["workers"].append({"index": worker.index, "error": str(reply)})
                continue
            stats = reply["stats"]
            for stream_id, entry in stats["streams"].items():
                into = merged["streams"].setdefault(stream_id, {**entry, "viewers": 0})
                into["viewers"] += entry["viewers"]
            for viewer in stats["viewers"]:
                viewer["worker"] = worker.index
            merged["viewers"].extend(stats["viewers"])
            merged["workers"].append({"index": worker.index, "pid": worker.process.pid if worker.process else None,
                                      "viewers": len(worker.viewers), "dropped_packets": worker.dropped_packets,
                                      "keyframe_requests": stats["keyframe_requests"],
                                      "renditions": {sid: sorted(entry["renditions"])
                                                     for sid, entry in stats["streams"].items()}})
        return merged

    def counters(self) -> dict[str, Any]:
        return {"viewers": sum(len(w.viewers) for w in self.workers), "viewers_total": self.viewers_total,
                "workers_alive": sum(1 for w in self.workers if w.alive),
                "worker_dropped_packets": sum(w.dropped_packets for w in self.workers)}
