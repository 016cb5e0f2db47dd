"""Janus (WebRTC server, Debian package ``janus``) from flowgraph's side: generated configurations and local
processes, and a client for its WebSocket API (one connection per instance carries every request, the events
of all the sessions it created, and the health checks).

Settings chosen for a low-delay, many-viewer audience tier (each is in :func:`write_config`):

* ``ice_lite``: Janus answers connectivity checks and never sends its own, so a viewer connects in one round
  trip and the browser (a full agent) stays controlling even though both sides think they made the offer
  (flowgraph's page offers; Janus's Streaming plugin offers too; :mod:`.sdp` bridges the two).
* a wide ``rtp_port_range``: every viewer holds a port per host interface; the earlier baseline's 100-port range
  ran out after ~50 viewers on a two-interface host.
* ``event_loops`` = CPU count: by default every viewer gets its own thread and event loop.
* ``session_timeout = 0``: flowgraph holds no per-viewer keep-alive; sessions end with their WebSocket (a
  flowgraph restart ends them all) or when Janus reports a hang-up.
* ``no_media_timer = 1``, ``min_nack_queue = 200`` (retransmissions cover 200 ms, matching a low-delay jitter
  buffer), ``dtls_mtu = 1200``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from .errors import JanusError

__all__ = ["JanusClient", "JanusError", "JanusSettings", "LocalJanus", "new_secret", "write_config"]

log = logging.getLogger("flowgraph.sfu.janus")

LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
PLUGINS_OFF = ("audiobridge", "duktape", "lua", "nosip", "recordplay", "sip", "textroom", "videocall",
               "videoroom", "voicemail", "echotest")
TRANSPORTS_OFF = ("mqtt", "nanomsg", "pfunix", "rabbitmq", "http")


def janus_binary() -> str:
    found = shutil.which("janus")
    if not found:
        raise JanusError("janus is not installed: apt-get install janus (./quickstart installs it)")
    return found


def lib_dir() -> Path:
    for candidate in (LIB, Path("/usr/lib/janus"), Path("/usr/local/lib/janus")):
        if (candidate / "plugins" / "libjanus_streaming.so").exists():
            return candidate
    raise JanusError(f"no Janus streaming plugin under {LIB}/plugins (is the janus package complete?)")


@dataclass
class JanusSettings:
    """What a generated configuration says (also what the node's ``spawn`` and the tests use)."""

    ws_port: int
    api_secret: str = ""
    admin_key: str = ""
    rtp_port_range: str = "20000-40000"
    event_loops: int = 0            # 0 = CPU count, -1 = Janus's default (a thread per viewer)
    ice_enforce_list: str = ""      # e.g. "lo" to gather on loopback only (tests)
    ice_lite: bool = True
    debug_level: int = int(os.environ.get("FLOWGRAPH_JANUS_DEBUG", "3"))
    bind_ip: str = "127.0.0.1"
    http_port: int = 0              # > 0: also the HTTP API (benchmarks' bare-Janus baseline)


def write_config(folder: Path, s: JanusSettings) -> Path:
    """Write janus.jcfg and the WebSocket transport and Streaming plugin configurations into ``folder``."""
    lib = lib_dir()
    folder.mkdir(parents=True, exist_ok=True)
    loops = s.event_loops or (os.cpu_count() or 2)
    loops_line = f", event_loops = {loops}" if loops > 0 else ""
    secret = f'api_secret = "{s.api_secret}", ' if s.api_secret else ""
    enforce = f', ice_enforce_list = "{s.ice_enforce_list}"' if s.ice_enforce_list else ""
    transports_off = [n for n in TRANSPORTS_OFF if not (n == "http" and s.http_port)]
    (folder / "janus.jcfg").write_text(
        f'general: {{ configs_folder = "{folder}", plugins_folder = "{lib}/plugins",\n'
        f'  transports_folder = "{lib}/transports", events_folder = "{lib}/events",\n'
        f'  loggers_folder = "{lib}/loggers", debug_level = {s.debug_level}, {secret}\n'
        f'  session_timeout = 0{loops_line}, protected_folders = [] }}\n'
        "certificates: {}\n"
        f'media: {{ rtp_port_range = "{s.rtp_port_range}", no_media_timer = 1, min_nack_queue = 200,'
        " dtls_mtu = 1200 }\n"
        f"nat: {{ nice_debug = false, ice_lite = {str(s.ice_lite).lower()}, ice_tcp = false,"
        f" full_trickle = false, ignore_mdns = true{enforce} }}\n"
        f'plugins: {{ disable = "{",".join(f"libjanus_{n}.so" for n in PLUGINS_OFF)}" }}\n'
        f'transports: {{ disable = "{",".join(f"libjanus_{n}.so" for n in transports_off)}" }}\n'
        "events: { broadcast = false }\n"
        'loggers: { disable = "libjanus_jsonlog.so" }\n')
    (folder / "janus.transport.websockets.jcfg").write_text(
        f'general: {{ json = "compact", ws = true, ws_port = {s.ws_port}, ws_ip = "{s.bind_ip}", wss = false,'
        ' ws_logging = "err" }\n'
        "admin: { admin_ws = false }\n")
    if s.http_port:
        (folder / "janus.transport.http.jcfg").write_text(
            f'general: {{ json = "compact", base_path = "/janus", http = true, port = {s.http_port},'
            f' ip = "{s.bind_ip}", https = false }}\nadmin: {{ admin_http = false }}\ncors: {{ allow_origin = "*" }}\n')
    admin = f'admin_key = "{s.admin_key}", ' if s.admin_key else ""
    (folder / "janus.plugin.streaming.jcfg").write_text(f"general: {{ {admin}events = false }}\n")
    return folder / "janus.jcfg"


class LocalJanus:
    """A Janus process on this host with a generated configuration, stopped by its pid."""

    def __init__(self, folder: Path, settings: JanusSettings) -> None:
        self.folder = folder
        self.settings = settings
        self.config = write_config(folder, settings)
        self.log_path = folder / "janus.log"
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.settings.bind_ip}:{self.settings.ws_port}"

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> None:
        with open(self.log_path, "wb") as out:
            self.popen = subprocess.Popen([janus_binary(), "-C", str(self.config), "-F", str(self.folder),
                                           "-o"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    async def wait_ready(self, timeout: float = 20.0) -> None:
        """Until the WebSocket API answers ``info``; a process that exits first raises with its log's end."""
        deadline = time.monotonic() + timeout
        while True:
            if self.popen is not None and self.popen.poll() is not None:
                raise JanusError(f"janus exited with status {self.popen.returncode} at start "
                                 f"({self.config}): {self.log_tail()}")
            with contextlib.suppress(OSError, aiohttp.ClientError, JanusError, TimeoutError):
                client = JanusClient(self.url, api_secret=self.settings.api_secret)
                try:
                    await client.connect(timeout=1.0)
                    await client.request({"janus": "info"}, timeout=1.0)
                    return
                finally:
                    await client.close()
            if time.monotonic() > deadline:
                raise JanusError(f"janus at {self.url} did not answer within {timeout:.0f}s: {self.log_tail()}")
            await asyncio.sleep(0.1)

    def log_tail(self, lines: int = 6) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        wanted = [line for line in text if "[ERR]" in line or "rror" in line] or text
        return " | ".join(wanted[-lines:])

    def stop(self) -> None:
        popen = self.popen
        if popen is None or popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(5)

    def kill(self) -> None:
        """SIGKILL (tests: an instance dying without saying goodbye)."""
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def new_secret() -> str:
    return secrets.token_urlsafe(18)


EventHandler = Callable[[dict[str, Any]], None]


class JanusClient:
    """Requests over one WebSocket (subprotocol ``janus-protocol``); events routed by session id."""

    def __init__(self, url: str, *, api_secret: str = "") -> None:
        self.url = url
        self.api_secret = api_secret
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self.on_event: EventHandler | None = None
        self.closed = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed and not self.closed.is_set()

    async def connect(self, timeout: float = 2.0) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=timeout))
        try:
            self._ws = await asyncio.wait_for(self._http.ws_connect(
                self.url, protocols=("janus-protocol",), heartbeat=None, max_msg_size=4 * 2**20,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=1.0)), timeout)
        except BaseException:
            await self._http.close()
            raise
        self.closed.clear()
        self._reader = asyncio.create_task(self._read(), name=f"janus-ws {self.url}")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._http is not None:
            await self._http.close()
        self._fail_all(JanusError(f"connection to {self.url} closed"))
        self.closed.set()

    def _fail_all(self, exc: Exception) -> None:
        for table in (self._pending, self._acks):
            for fut in table.values():
                if not fut.done():
                    fut.set_exception(exc)
            table.clear()

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    body = json.loads(msg.data)
                except ValueError:
                    continue
                self._dispatch(body)
        except (aiohttp.ClientError, OSError) as exc:
            log.debug("janus %s: websocket error %r", self.url, exc)
        finally:
            self._fail_all(JanusError(f"connection to {self.url} lost"))
            self.closed.set()

    def _dispatch(self, body: dict[str, Any]) -> None:
        kind = body.get("janus")
        tx = body.get("transaction")
        if kind == "ack" and tx in self._acks:
            fut = self._acks.pop(tx)
            if not fut.done():
                fut.set_result(body)
            return
        if tx in self._pending and kind != "ack":
            fut = self._pending.pop(tx)
            self._acks.pop(tx, None)
            if not fut.done():
                fut.set_result(body)
            return
        if self.on_event is not None and kind not in ("ack", "success"):
            self.on_event(body)

    async def request(self, body: dict[str, Any], *, timeout: float = 3.0) -> dict[str, Any]:
        """Send ``body``; return the final reply (``success``/``event`` — after an ``ack`` for async plugin
        requests). An ``error`` reply, or a plugin error, raises :class:`JanusError`."""
        if not self.connected:
            raise JanusError(f"not connected to {self.url}")
        assert self._ws is not None
        tx = f"t{next(self._ids)}"
        msg = {**body, "transaction": tx}
        if self.api_secret:
            msg["apisecret"] = self.api_secret
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[tx] = fut
        if body.get("janus") == "message":
            self._acks[tx] = loop.create_future()
        try:
            await self._ws.send_str(json.dumps(msg))
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError as exc:
            raise JanusError(f"{self.url}: no reply to {body.get('janus')} within {timeout}s") from exc
        finally:
            self._pending.pop(tx, None)
            ack = self._acks.pop(tx, None)
            if ack is not None and not ack.done():
                ack.cancel()
        if reply.get("janus") == "error":
            err = reply.get("error", {})
            raise JanusError(f"{self.url}: {body.get('janus')} refused: {err.get('code')} {err.get('reason')}")
        data = reply.get("plugindata", {}).get("data", {})
        if isinstance(data, dict) and data.get("error"):
            raise JanusError(f"{self.url}: {data.get('error_code')} {data['error']}")
        return reply
