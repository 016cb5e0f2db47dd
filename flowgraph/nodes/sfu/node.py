"""``sfu_out``: viewers through SFU instances (``backend: janus``), fed once per stream; flowgraph keeps the
signalling (``POST /api/stream/connect`` and WHEP answer with the SFU's SDP), so the viewer page is the same.

Per stream, H.264 RTP is built once and sent to a Streaming-plugin RTP mountpoint on every healthy instance
(keyframe buffering on, so a joining viewer starts at once); analytics go to the mountpoint's data channel;
keyframe requests that Janus forwards from viewers (RTCP PLI/FIR, to the address our RTCP came from) come back
out of ``control``. A viewer is placed on the least-loaded healthy instance; instances are health-checked and a
dead one gets no new viewers (the page moves its viewers: it reconnects when the picture stalls).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from flowgraph.messages import Analytics, Control, Packet
from flowgraph.nodes.webrtc.viewer_node import ViewerNode, ViewerParams
from flowgraph.params import param
from flowgraph.ports import Input, Output

from .errors import JanusError

if TYPE_CHECKING:
    from flowgraph.context import NodeContext

    from .janus import JanusClient, LocalJanus

_INSTANCE_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "url": {"type": "string", "pattern": "^wss?://"},
            "name": {"type": "string"},
            "media_host": {"type": "string"},
        },
        "required": ["url"],
        "additionalProperties": False,
    },
}
#: Janus reads data-channel datagrams into 1,500-byte buffers: longer analytics messages are dropped (counted).
MAX_DATA_DATAGRAM = 1400
CLOCK = 90_000


@dataclass
class Mount:
    id: int
    video: tuple[str, int]
    rtcp: tuple[str, int] | None
    data: tuple[str, int] | None
    pt: int


@dataclass
class Viewer:
    id: str
    stream: str
    instance: Instance
    session: int
    handle: int
    since: float = field(default_factory=time.monotonic)


class Instance:
    """One Janus server: its API connection, health, mountpoints and viewer count."""

    def __init__(self, name: str, url: str, media_host: str, api_secret: str, admin_key: str) -> None:
        self.name = name
        self.url = url
        self.media_host = media_host
        self.api_secret = api_secret
        self.admin_key = admin_key
        self.client: JanusClient | None = None
        self.healthy = False
        self.viewers = 0
        self.mounts: dict[tuple[str, int], Mount] = {}
        self.admin: tuple[int, int] | None = None      # session, handle used for mountpoint requests
        self.failures = 0
        self.last_error = ""
        self.generation = 0
        self._mount_lock = asyncio.Lock()

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "healthy": self.healthy, "viewers": self.viewers,
                "mountpoints": len(self.mounts), "failures": self.failures, "last_error": self.last_error}


class StreamFeed:
    """RTP of one stream, built once, sent to each mountpoint (payload type patched per mountpoint)."""

    def __init__(self, stream_id: str, on_keyframe_request: Any) -> None:
        self.stream_id = stream_id
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.setblocking(False)
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts_offset = random.getrandbits(32)
        self.config: bytes | None = None
        self.frames = 0
        self.packets = 0
        self.send_errors = 0
        self.analytics_sent = 0
        self.analytics_oversize = 0
        self.keyframe_requests = 0
        self.octets = 0
        self.last_ts = 0
        self._on_request = on_keyframe_request
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ICMP unreachable from a dead instance surfaces here
            if is_keyframe_request(data):
                self.keyframe_requests += 1
                self._on_request(self.stream_id)

    def send_frame(self, msg: Packet, mounts: list[Mount]) -> None:
        from flowgraph.nodes.media.h264 import decodable_nals
        from flowgraph.nodes.webrtc.aiortc_adapter import rtp_payloads

        if msg.config:
            self.config = msg.config
        if msg.pts is not None and msg.time_base is not None:
            ts90 = int(msg.pts * msg.time_base * CLOCK)
        else:
            ts90 = int(msg.t_capture * CLOCK)
        ts = (ts90 + self.ts_offset) & 0xFFFFFFFF
        self.last_ts = ts
        payloads = rtp_payloads(decodable_nals(msg, self.config))
        self.frames += 1
        by_pt: dict[int, list[tuple[str, int]]] = {}
        for mount in mounts:
            by_pt.setdefault(mount.pt, []).append(mount.video)
        for i, payload in enumerate(payloads):
            marker = 0x80 if i == len(payloads) - 1 else 0
            packet = bytearray(struct.pack("!BBHII", 0x80, marker, self.seq, ts, self.ssrc))
            packet += payload
            self.seq = (self.seq + 1) & 0xFFFF
            self.packets += 1
            self.octets += len(payload)
            for pt, addrs in by_pt.items():
                packet[1] = marker | pt
                for addr in addrs:
                    try:
                        self.sock.sendto(packet, addr)
                    except OSError:
                        self.send_errors += 1

    def send_report(self, mounts: list[Mount]) -> None:
        """An RTCP sender report to each mountpoint's RTCP port: Janus sends viewers' PLI back to its source."""
        now = time.time()
        ntp = int((now + 2_208_988_800) * (1 << 32))
        sr = struct.pack("!BBHIIIIII", 0x80, 200, 6, self.ssrc, ntp >> 32, ntp & 0xFFFFFFFF, self.last_ts,
                         self.packets & 0xFFFFFFFF, self.octets & 0xFFFFFFFF)
        for mount in mounts:
            if mount.rtcp is not None:
                with contextlib.suppress(OSError):
                    self.sock.sendto(sr, mount.rtcp)

    def send_data(self, text: bytes, mounts: list[Mount]) -> None:
        if len(text) > MAX_DATA_DATAGRAM:
            self.analytics_oversize += 1
            return
        self.analytics_sent += 1
        for mount in mounts:
            if mount.data is not None:
                try:
                    self.sock.sendto(text, mount.data)
                except OSError:
                    self.send_errors += 1


def is_keyframe_request(data: bytes) -> bool:
    """Whether an RTCP compound packet holds a PLI (206/1) or FIR (206/4)."""
    offset = 0
    while offset + 4 <= len(data):
        first, pt, length = data[offset], data[offset + 1], struct.unpack_from("!H", data, offset + 2)[0]
        if first >> 6 != 2:
            return False
        if pt == 206 and (first & 0x1F) in (1, 4):
            return True
        offset += (length + 1) * 4
    return False


class SfuOut(ViewerNode):
    """Viewers through Janus SFU instances, fed once per stream; same viewer API and page as webrtc_out."""

    video = Input(Packet, "H.264 Annex-B access units; one RTP feed per stream_id to every instance")
    analytics = Input(Analytics, "analytics for the viewers of the message's stream_id (mountpoint data channel)",
                      required=False)
    control = Output(Control, "keyframe requests from viewers (command 'keyframe'); wire back with feedback: true")

    @dataclass
    class Params(ViewerParams):
        backend: Literal["janus"] = param("janus", "SFU software (Janus Streaming plugin, 1.1 or later)")
        instances: list[dict[str, Any]] = param(
            [], "Janus instances on any host: {url: ws://host:8188, name?, media_host?} (RTP goes to media_host, "
                "default the url's host)", schema=_INSTANCE_SCHEMA)
        spawn: int = param(0, "Janus processes this node starts on this host with generated configurations",
                           minimum=0, maximum=16)
        spawn_rtp_port_range: str = param("20000-40000", "viewer-side RTP port range of spawned instances",
                                          pattern=r"^\d+-\d+$")
        spawn_ice_enforce_list: str = param("", "interfaces spawned instances gather ICE candidates on ('' = all)")
        api_secret_env: str = param("JANUS_API_SECRET", "environment variable holding the instances' API secret")
        admin_key_env: str = param("JANUS_ADMIN_KEY", "environment variable holding the Streaming plugin admin key")
        health_interval_s: float = param(0.5, "seconds between health checks of each instance", minimum=0.05)
        request_timeout_s: float = param(2.0, "a Janus request not answered within this marks the instance "
                                              "unhealthy", minimum=0.1)
        max_viewers_per_instance: int = param(5000, "viewers one instance takes before it counts as full",
                                              minimum=1)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def __init__(self, ctx: NodeContext, params: Any = None) -> None:
        super().__init__(ctx, params)
        #: Resources, filled by start() and emptied by stop(): spawned Janus processes, the instances in use,
        #: one feed per stream, the viewers connected through us.
        self.local: list[LocalJanus] = []
        self.instances: list[Instance] = []
        self.feeds: dict[str, StreamFeed] = {}
        self.viewers: dict[str, Viewer] = {}
        self.pts_wanted: set[int] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        #: Kept across restarts.
        self.declared = set(self.params.streams)
        self._controls: asyncio.Queue[Control] = asyncio.Queue(maxsize=32)
        self.counts = {"control_dropped": 0, "viewers_total": 0, "connect_failures": 0, "hangups": 0,
                       "instance_deaths": 0}

    async def start(self) -> None:
        from .janus import JanusSettings, LocalJanus, new_secret

        p = self.params
        if p.backend != "janus":
            raise ValueError(f"sfu_out {self.name!r}: backend {p.backend!r} is not supported (only 'janus')")
        if not p.instances and not p.spawn:
            raise ValueError(f"sfu_out {self.name!r}: no SFU instances: list them in 'instances' or set 'spawn'")
        api_secret = os.environ.get(p.api_secret_env, "")
        admin_key = os.environ.get(p.admin_key_env, "")
        self.local = []
        self.instances = []
        self.viewers = {}
        self.pts_wanted = set()
        if p.spawn:
            self._spawn_dir = Path(tempfile.mkdtemp(prefix=f"fg-janus-{self.name}-"))
            secret, key = api_secret or new_secret(), admin_key or new_secret()
            for i in range(p.spawn):
                sock = socket.socket()
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
                sock.close()
                local = LocalJanus(self._spawn_dir / f"janus{i}", JanusSettings(
                    ws_port=port, api_secret=secret, admin_key=key, rtp_port_range=p.spawn_rtp_port_range,
                    ice_enforce_list=p.spawn_ice_enforce_list))
                local.start()
                self.local.append(local)
                self.instances.append(Instance(f"local{i}", local.url, "127.0.0.1", secret, key))
            try:
                await asyncio.gather(*(lj.wait_ready() for lj in self.local))
            except JanusError:
                await self.stop()
                raise
        for i, spec in enumerate(p.instances):
            url = spec["url"]
            host = spec.get("media_host") or urlparse(url).hostname or "127.0.0.1"
            self.instances.append(Instance(spec.get("name") or f"janus{i}", url, host, api_secret, admin_key))
        # a bad configuration (wrong url, secret or admin key) fails here, naming the instance
        try:
            await asyncio.gather(*(self._bring_up(inst, probe=True) for inst in self.instances))
        except JanusError:
            await self.stop()
            raise
        self._tasks.append(asyncio.create_task(self._watch(), name=f"{self.name}:health"))
        self._tasks.append(asyncio.create_task(self._send_controls(), name=f"{self.name}:control"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for inst in self.instances:
            if inst.client is not None:
                await inst.client.close()
                inst.client = None
        for feed in self.feeds.values():
            feed.close()
        self.feeds = {}
        for local in self.local:
            await asyncio.to_thread(local.stop)
        self.local = []

    # -- instances ------------------------------------------------------------------------------------------
    async def _bring_up(self, inst: Instance, *, probe: bool = False) -> None:
        """Connect, open the admin session, and (re)create every known mountpoint."""
        from .janus import JanusClient

        timeout = self.params.request_timeout_s
        client = JanusClient(inst.url, api_secret=inst.api_secret)
        try:
            await asyncio.wait_for(client.connect(timeout=timeout), timeout)
        except (OSError, TimeoutError, Exception) as exc:
            await client.close()
            raise JanusError(f"sfu_out {self.name!r}: instance {inst.name} ({inst.url}) unreachable: {exc}") \
                from exc
        client.on_event = lambda ev, inst=inst: self._on_event(inst, ev)
        try:
            info = await client.request({"janus": "info"}, timeout=timeout)
            if "janus.plugin.streaming" not in info.get("plugins", {}):
                raise JanusError(f"instance {inst.name} ({inst.url}) has no Streaming plugin loaded")
            session = (await client.request({"janus": "create"}, timeout=timeout))["data"]["id"]
            handle = (await client.request({"janus": "attach", "session_id": session,
                                            "plugin": "janus.plugin.streaming"}, timeout=timeout))["data"]["id"]
        except JanusError as exc:
            await client.close()
            raise JanusError(f"sfu_out {self.name!r}: instance {inst.name}: {exc}") from exc
        if inst.client is not None:
            await inst.client.close()
        inst.client, inst.admin = client, (session, handle)
        inst.mounts = {}
        inst.generation += 1
        try:
            if probe:   # the admin key is only checked when a mountpoint is created: try one now
                mount = await self._create_mount(inst, "probe", 96)
                await self._plugin(inst, {"request": "destroy", "id": mount.id, "permanent": False})
            for stream_id, pt in sorted({(s, pt) for s in self._stream_ids() for pt in self.pts_wanted}):
                await self._ensure_mount(inst, stream_id, pt)
        except JanusError as exc:
            await client.close()
            inst.client = None
            raise JanusError(f"sfu_out {self.name!r}: instance {inst.name}: {exc}") from exc
        inst.healthy = True
        inst.failures = 0
        self.log.info("sfu instance %s (%s) is up", inst.name, inst.url)

    async def _plugin(self, inst: Instance, body: dict[str, Any]) -> dict[str, Any]:
        if inst.client is None or inst.admin is None:
            raise JanusError(f"instance {inst.name} is not connected")
        session, handle = inst.admin
        reply = await inst.client.request({"janus": "message", "session_id": session, "handle_id": handle,
                                           "body": body}, timeout=self.params.request_timeout_s)
        data: dict[str, Any] = reply.get("plugindata", {}).get("data", {})
        return data

    async def _create_mount(self, inst: Instance, stream_id: str, pt: int) -> Mount:
        body = {"request": "create", "type": "rtp", "description": f"flowgraph {stream_id} pt{pt}",
                "permanent": False, "playoutdelay_ext": True,
                "media": [{"type": "video", "mid": "v", "port": 0, "rtcpport": 0, "pt": pt, "codec": "h264",
                           "fmtp": "profile-level-id=42e01f;packetization-mode=1", "bufferkf": True},
                          {"type": "data", "mid": "d", "port": 0, "datatype": "text"}]}
        if inst.admin_key:
            body["admin_key"] = inst.admin_key
        data = await self._plugin(inst, body)
        stream = data.get("stream", {})
        video = rtcp = dport = None
        for port in stream.get("ports", []):
            if port.get("type") == "video":
                video = (inst.media_host, int(port["port"]))
                if port.get("rtcp_port"):
                    rtcp = (inst.media_host, int(port["rtcp_port"]))
            elif port.get("type") == "data":
                dport = (inst.media_host, int(port["port"]))
        if video is None or "id" not in stream:
            raise JanusError(f"mountpoint for {stream_id!r} created without a video port: {data}")
        return Mount(int(stream["id"]), video, rtcp, dport, pt)

    async def _ensure_mount(self, inst: Instance, stream_id: str, pt: int) -> Mount:
        async with inst._mount_lock:
            mount = inst.mounts.get((stream_id, pt))
            if mount is None:
                mount = await self._create_mount(inst, stream_id, pt)
                inst.mounts[(stream_id, pt)] = mount
                feed = self.feeds.get(stream_id)
                if feed is not None:
                    feed.send_report([mount])
            return mount

    def _mark_dead(self, inst: Instance, why: str) -> None:
        if inst.healthy:
            self.counts["instance_deaths"] += 1
            self.log.warning("sfu instance %s (%s) is down: %s", inst.name, inst.url, why)
        inst.healthy = False
        inst.last_error = why
        inst.mounts = {}
        for vid in [v for v, viewer in self.viewers.items() if viewer.instance is inst]:
            del self.viewers[vid]
        inst.viewers = 0

    async def _watch(self) -> None:
        """Health checks; reports to each mountpoint's RTCP port; reconnection of lost instances."""
        interval = self.params.health_interval_s
        last_report = 0.0
        while True:
            await asyncio.sleep(interval)
            checks = []
            for inst in self.instances:
                if inst.healthy and inst.client is not None and inst.client.connected:
                    checks.append(self._check(inst))
                else:
                    checks.append(self._revive(inst))
            await asyncio.gather(*checks)
            now = time.monotonic()
            if now - last_report >= 1.0:
                last_report = now
                for stream_id, feed in self.feeds.items():
                    feed.send_report(self._mounts_of(stream_id))
                for stream_id in self._stream_ids():
                    self._report(stream_id)

    async def _check(self, inst: Instance) -> None:
        assert inst.client is not None
        try:
            await inst.client.request({"janus": "ping"}, timeout=max(self.params.request_timeout_s / 2, 0.2))
        except JanusError as exc:
            inst.failures += 1
            self._mark_dead(inst, str(exc))
            await inst.client.close()
            inst.client = None

    async def _revive(self, inst: Instance) -> None:
        if inst.healthy:   # connection dropped between checks
            self._mark_dead(inst, "API connection lost")
        try:
            await self._bring_up(inst)
        except JanusError as exc:
            inst.last_error = str(exc)

    def _on_event(self, inst: Instance, event: dict[str, Any]) -> None:
        kind = event.get("janus")
        if kind in ("hangup", "detached", "timeout"):
            session = event.get("session_id")
            for vid, viewer in list(self.viewers.items()):
                if viewer.instance is inst and viewer.session == session:
                    self.counts["hangups"] += 1
                    asyncio.get_running_loop().create_task(self.disconnect(vid))

    # -- Backend protocol (the signalling router calls these; ViewerNode answers max_sdp_bytes, default_stream) -
    def _stream_ids(self) -> list[str]:
        return sorted(self.declared | set(self.feeds))

    def known(self, stream_id: str) -> bool:
        return stream_id in self._stream_ids()

    def stream_ids(self) -> list[str]:
        return self._stream_ids()

    def viewers_of(self, stream_id: str) -> int:
        return sum(1 for v in self.viewers.values() if v.stream == stream_id)

    def has_viewer(self, viewer_id: str) -> bool:
        return viewer_id in self.viewers

    def page_config(self) -> dict[str, Any]:
        return {"ice_servers": [], "default_stream": self.params.default_stream}

    def _pick(self, tried: set[str]) -> Instance:
        from flowgraph.nodes.webrtc.errors import StreamFull

        healthy = [i for i in self.instances if i.healthy and i.name not in tried]
        if not healthy:
            raise StreamFull("no healthy SFU instance is available; try again shortly")
        best = min(healthy, key=lambda i: i.viewers)
        if best.viewers >= self.params.max_viewers_per_instance:
            raise StreamFull(f"every SFU instance has {self.params.max_viewers_per_instance} viewers")
        return best

    async def connect(self, offer_sdp: str, stream_id: str) -> tuple[str, str]:
        from . import sdp

        offer = sdp.parse(offer_sdp)
        choice = sdp.h264_choice(offer)
        self.pts_wanted.add(choice.pt)
        tried: set[str] = set()
        while True:
            inst = self._pick(tried)
            try:
                return await self._connect_on(inst, offer, choice, stream_id)
            except JanusError as exc:
                self.counts["connect_failures"] += 1
                tried.add(inst.name)
                self.log.warning("viewer could not join on %s: %s; trying another instance", inst.name, exc)
                if inst.client is None or not inst.client.connected:
                    self._mark_dead(inst, str(exc))

    async def _connect_on(self, inst: Instance, offer: Any, choice: Any, stream_id: str) -> tuple[str, str]:
        from . import sdp

        mount = await self._ensure_mount(inst, stream_id, choice.pt)
        client = inst.client
        if client is None:
            raise JanusError(f"instance {inst.name} is not connected")
        timeout = self.params.request_timeout_s
        session = (await client.request({"janus": "create"}, timeout=timeout))["data"]["id"]
        try:
            handle = (await client.request({"janus": "attach", "session_id": session,
                                            "plugin": "janus.plugin.streaming"}, timeout=timeout))["data"]["id"]
            base = {"janus": "message", "session_id": session, "handle_id": handle}
            watched = await client.request({**base, "body": {"request": "watch", "id": mount.id}}, timeout=timeout)
            jsep = watched.get("jsep")
            if not jsep or jsep.get("type") != "offer":
                raise JanusError(f"instance {inst.name} sent no offer for mountpoint {mount.id}")
            viewer_answer, janus_answer = sdp.bridge(offer, sdp.parse(jsep["sdp"]), choice)
            await client.request({**base, "body": {"request": "start"},
                                  "jsep": {"type": "answer", "sdp": janus_answer}}, timeout=timeout)
            delay = self.params.playout_delay_ms
            if delay:
                await client.request({**base, "body": {"request": "configure", "min_delay": delay[0] // 10,
                                                       "max_delay": max(delay[1] // 10, delay[0] // 10)}},
                                     timeout=timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await client.request({"janus": "destroy", "session_id": session}, timeout=timeout)
            raise
        viewer_id = f"sfu-{inst.name}-{session}"
        self.viewers[viewer_id] = Viewer(viewer_id, stream_id, inst, session, handle)
        inst.viewers += 1
        self.counts["viewers_total"] += 1
        self._report(stream_id)
        return viewer_id, viewer_answer

    async def disconnect(self, viewer_id: str) -> None:
        viewer = self.viewers.pop(viewer_id, None)
        if viewer is None:
            return
        viewer.instance.viewers = max(0, viewer.instance.viewers - 1)
        client = viewer.instance.client
        if client is not None and client.connected:
            with contextlib.suppress(JanusError):
                await client.request({"janus": "destroy", "session_id": viewer.session},
                                     timeout=self.params.request_timeout_s)

    async def viewer_stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"streams": {}, "viewers": [], "backend": "janus",
                               "instances": [i.as_dict() for i in self.instances], **self.counts}
        for stream_id in self._stream_ids():
            feed = self.feeds.get(stream_id)
            out["streams"][stream_id] = {
                "viewers": self.viewers_of(stream_id), "sfu": True,
                "renditions": {"src": {"frames": feed.frames if feed else 0,
                                       "packets": feed.packets if feed else 0}},
                "keyframe_requests": feed.keyframe_requests if feed else 0,
                "analytics_sent": feed.analytics_sent if feed else 0,
                "analytics_oversize_dropped": feed.analytics_oversize if feed else 0,
                "send_errors": feed.send_errors if feed else 0}
        now = time.monotonic()
        out["viewers"] = [{"viewer_id": v.id, "stream_id": v.stream, "instance": v.instance.name,
                           "age_s": round(now - v.since, 1)} for v in self.viewers.values()]
        return out

    # -- media and analytics in -----------------------------------------------------------------------------
    def _mounts_of(self, stream_id: str) -> list[Mount]:
        return [m for inst in self.instances if inst.healthy for (s, _), m in inst.mounts.items()
                if s == stream_id]

    def _feed(self, stream_id: str) -> StreamFeed:
        feed = self.feeds.get(stream_id)
        if feed is None:
            feed = self.feeds[stream_id] = StreamFeed(stream_id, self._keyframe_wanted)
        return feed

    async def on_video(self, msg: Packet) -> None:
        if msg.codec != "h264":
            raise ValueError(f"sfu_out sends H.264 only; stream {msg.stream_id!r} carries {msg.codec!r}")
        from flowgraph.nodes.media.h264 import with_facts

        self._feed(msg.stream_id).send_frame(with_facts(msg), self._mounts_of(msg.stream_id))

    async def on_analytics(self, msg: Analytics) -> None:
        wire = msg.to_wire()
        payload = wire["payload"]
        if "frame_id" not in payload or "pts" not in payload:
            wire["payload"] = {**msg.meta(), **payload}
        text = json.dumps(wire, separators=(",", ":"), default=str).encode()
        self._feed(msg.stream_id).send_data(text, self._mounts_of(msg.stream_id))

    # -- keyframe requests out ------------------------------------------------------------------------------
    def _keyframe_wanted(self, stream_id: str) -> None:
        control = Control(command="keyframe", stream_id=stream_id, args={"why": "sfu viewer PLI"})
        try:
            self._controls.put_nowait(control)
        except asyncio.QueueFull:
            self.counts["control_dropped"] += 1

    async def _send_controls(self) -> None:
        while True:
            await self.control.send(await self._controls.get())

    def _report(self, stream_id: str) -> None:
        self.ctx.streams.update(stream_id, "sfu_out", node=self.name,
                                          viewers=self.viewers_of(stream_id), whep=f"/whep/{stream_id}")

    def counters(self) -> dict[str, Any]:
        feeds = self.feeds
        return {**self.counts, "viewers": len(self.viewers),
                "healthy_instances": sum(1 for i in self.instances if i.healthy),
                "rtp_packets": sum(f.packets for f in feeds.values()),
                "keyframe_requests": sum(f.keyframe_requests for f in feeds.values()),
                "analytics_oversize_dropped": sum(f.analytics_oversize for f in feeds.values()),
                "send_errors": sum(f.send_errors for f in feeds.values())}
