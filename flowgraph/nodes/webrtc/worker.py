"""A viewer worker process: one :class:`~.hub.ViewerHub` fed over a Unix socket by the graph process.

Run by :class:`~.workers.WorkerPool` as ``python -m flowgraph.nodes.webrtc.worker --fd N --config JSON``; it exits
when the socket closes, so a dead graph process never leaves workers behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

from . import ipc
from .aiortc_adapter import allow_loopback_candidates
from .errors import OFFER_PARSE_ERRORS, ViewerRequestError, bad_offer
from .hdrext import register_playout_delay
from .hub import ViewerHub

log = logging.getLogger("flowgraph.webrtc.worker")


class WorkerServer:
    def __init__(self, sock: socket.socket, config_json: str, loopback: bool) -> None:
        self.sock = sock
        self.config = ipc.config_from_json(config_json)
        self.loopback = loopback
        self.writer: asyncio.StreamWriter | None = None
        self.hub: ViewerHub | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, header: dict[str, Any]) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(ipc.encode(header))

    async def run(self) -> None:
        register_playout_delay()
        if self.loopback:
            allow_loopback_candidates()
        reader, self.writer = await asyncio.open_unix_connection(sock=self.sock)
        self.hub = hub = ViewerHub(self.config, self._keyframe)
        hub.on_closed = lambda viewer_id: self.send({"op": "closed", "viewer_id": viewer_id})
        hub.start()
        try:
            while True:
                header, body = await ipc.read(reader)
                op = header.get("op")
                if op == "packet":
                    delivery = ipc.decode_packet(header, body)
                    hub.push_packet(delivery.packet, delivery.rendition, lost_before=delivery.lost_before)
                elif op == "analytics":
                    hub.push_analytics(header["stream_id"], body.decode())
                elif op == "declare":
                    hub.declared.update(header["streams"])
                else:
                    self._spawn(self._request(header, body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the graph process went away
        finally:
            for task in list(self._tasks):
                task.cancel()
            await hub.stop()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _request(self, header: dict[str, Any], body: bytes) -> None:
        assert self.hub is not None
        req = header.get("req")
        op = header.get("op")
        try:
            if op == "connect":
                viewer_id, answer = await self.hub.connect(body.decode(), header["stream"],
                                                           viewer_id=header.get("viewer_id"), known=True)
                self.send({"op": "answer", "req": req, "viewer_id": viewer_id, "answer": answer})
            elif op == "disconnect":
                await self.hub.disconnect(header["viewer_id"])
                self.send({"op": "ok", "req": req})
            elif op == "stats":
                self.send({"op": "stats", "req": req, "stats": self.hub.stats()})
            elif op == "end_stream":  # after the stream's last packet: they come in order on this socket
                closed = await self.hub.end_stream(str(header["stream_id"]), str(header.get("reason", "")))
                self.send({"op": "ok", "req": req, "closed": closed})
            else:
                self.send({"op": "error", "req": req, "status": 400, "message": f"unknown op {op!r}"})
        except ViewerRequestError as exc:
            self.send({"op": "error", "req": req, "status": exc.status, "message": exc.message,
                       "kind": type(exc).__name__})
        except OFFER_PARSE_ERRORS as exc:
            if op != "connect":
                raise
            error = bad_offer(exc)
            self.send({"op": "error", "req": req, "status": error.status, "message": error.message,
                       "kind": type(error).__name__})
        except Exception as exc:  # one viewer's failure is that viewer's answer, never the worker's end
            log.exception("worker request %s failed", op)
            self.send({"op": "error", "req": req, "status": 500, "message": f"{type(exc).__name__}: {exc}"})

    def _keyframe(self, stream_id: str, rendition: str, why: str) -> None:
        self.send({"op": "keyframe", "stream_id": stream_id, "rendition": rendition, "why": why})


#: Where the parent passes the hub config (it holds TURN credentials, so not on the command line).
CONFIG_ENV = "FLOWGRAPH_WEBRTC_WORKER_CONFIG"


def main() -> None:
    parser = argparse.ArgumentParser(description="flowgraph webrtc_out viewer worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--config", default=None, help=f"the hub config as JSON (default: ${CONFIG_ENV})")
    parser.add_argument("--loopback", action="store_true")
    args = parser.parse_args()
    config = args.config if args.config is not None else os.environ.pop(CONFIG_ENV, None)
    if config is None:
        parser.error(f"no config: pass --config or set {CONFIG_ENV}")
    logging.basicConfig(level=logging.WARNING, format="worker %(process)d %(name)s: %(message)s")
    sock = socket.socket(fileno=args.fd)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(WorkerServer(sock, config, args.loopback).run())


if __name__ == "__main__":
    main()
