"""``fuse``: joins vibrio and moriarty per frame, emits the public analytics messages, keeps them in a ring per
stream, and fires betting opportunities from declarative rules.

YAML::

    fuse:
      node: fuse
      inputs: {tracks: vibrio/tracks, poses: moriarty/poses}
      params:
        join: exact            # exact | nearest | latest
        deadline_ms: 100       # a branch later than this yields a partial result (payload "partial": true)
        buffer_frames: 900     # ring per stream: N frames ...
        buffer_seconds: 30     # ... and at most T seconds
        rules:
          - {id: sprint, type: high_speed, metric: speed_kmh, above: 20, for_s: 0.5}

Rules can be changed while the graph runs: ``PUT /api/streams/{id}/rules`` (per stream) or by editing
``rules_file`` (reloaded when it changes; a broken file is reported and the previous rules stay).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any, Literal

from flowgraph.access import Surface
from flowgraph.context import NodeContext
from flowgraph.errors import GraphError, ParamsError
from flowgraph.messages import Analytics, Message, StreamEnd
from flowgraph.node import Node
from flowgraph.nodes.analytics.schemas import ANALYTICS_TYPES
from flowgraph.nodes.moriarty.messages import Poses
from flowgraph.nodes.vibrio.messages import Tracks
from flowgraph.params import param
from flowgraph.ports import Input, Output
from flowgraph.streams import ReportThrottle

from . import payloads
from .join import Joined, Joiner
from .ring import RingRegistry, rings
from .rule_engine import RuleBook, RuleEngine
from .rules import Rule, load_rules_file, parse_rules

BRANCHES = ("tracks", "poses")


class Fuse(Node):
    """Joins tracks and poses per frame into analytics messages, buffers them per stream, fires opportunities."""

    tracks = Input(Tracks, "vibrio's tracks (anchor of the join)", required=False)
    poses = Input(Poses, "moriarty's poses", required=False)
    extra = Input(Analytics, "any other analytics: forwarded and buffered as they are", required=False)
    analytics = Output(Analytics, "detection | pose | speed | betting_opportunity")

    @dataclass
    class Params:
        join: Literal["exact", "nearest", "latest"] = param("exact", "how parts of one frame are matched")
        key: Literal["frame_id", "pts"] = param("frame_id", "join key of the exact policy")
        tolerance_ms: float = param(50.0, "nearest/latest: largest time gap between joined parts", minimum=0)
        deadline_ms: float = param(100.0, "wait this long for a missing branch, then emit partial", minimum=0)
        max_pending: int = param(64, "frames waiting for a join, per stream (oldest emitted partial beyond)",
                                 minimum=1, maximum=100_000)
        branches: list[str] = param([], "expected branches (default: the connected ones among tracks, poses)",
                                    schema={"type": "array", "items": {"enum": list(BRANCHES)}, "uniqueItems": True})
        emit: list[str] = param(list(ANALYTICS_TYPES), "message types to emit",
                                schema={"type": "array", "items": {"enum": list(ANALYTICS_TYPES)}})
        late: Literal["emit", "drop"] = param("emit", "a part whose frame was already emitted: send it marked "
                                                      "late, or drop it (counted either way)")
        buffer_frames: int = param(900, "ring buffer per stream: frames kept", minimum=1, maximum=1_000_000)
        buffer_seconds: float = param(30.0, "ring buffer per stream: seconds kept", exclusiveMinimum=0)
        buffer_messages: int = param(20_000, "ring buffer per stream: messages kept at most", minimum=1)
        # structure only here: parse_rules checks each rule with errors that point at the offending key
        rules: list[dict[str, Any]] = param([], "betting-opportunity rules (see flowgraph.nodes.analytics.rules)",
                                            schema={"type": "array", "items": {"type": "object"}})
        rules_file: str = param("", "YAML/JSON file of rules, reloaded when it changes ('' = none)")
        reload_s: float = param(1.0, "how often rules_file is checked for changes", exclusiveMinimum=0)
        api_token: str = param("", "bearer token required to change rules over REST ('' = server.token; "
                                   "neither: open, allowed on loopback only unless server.open lists rules)")

        def __post_init__(self) -> None:
            if self.rules and self.rules_file:
                raise ParamsError("give rules or rules_file, not both", ("rules_file",), "one source of rules")
            self.parsed_rules: tuple[Rule, ...] = parse_rules(self.rules, ("rules",))
            if self.rules_file:
                try:
                    self.parsed_rules = load_rules_file(self.rules_file)
                except GraphError as exc:
                    raise ParamsError(f"rules file: {exc}", ("rules_file",), "a valid rules file") from None

    @classmethod
    def surfaces(cls, params: Any) -> list[Surface]:
        return [Surface("rules", "changing rules (PUT/DELETE /api/streams/{id}/rules)", params.api_token,
                        ("api_token",))]

    def __init__(self, ctx: NodeContext, params: Fuse.Params | None = None) -> None:
        super().__init__(ctx, params)
        p = self.params
        registry: RingRegistry = rings(self.ctx)
        registry.configure(max_frames=p.buffer_frames, max_seconds=p.buffer_seconds, max_messages=p.buffer_messages)
        self.rings = registry
        self.book = RuleBook(p.parsed_rules, "file" if p.rules_file else "graph")
        self.engine = RuleEngine(self.book)
        self.joiner = Joiner(self._branches(), policy=p.join, key=p.key, tolerance_s=p.tolerance_ms / 1000,
                             deadline_s=p.deadline_ms / 1000, max_pending=p.max_pending)
        self._emit_types = frozenset(p.emit)
        self._lock = asyncio.Lock()  # keeps ring order == send order between the handlers and the timer
        self._changed = asyncio.Event()
        self._seen: set[str] = set()
        self._reports = ReportThrottle(0.5)
        self.late_emitted = 0
        self.late_dropped = 0
        self.rules_errors = 0
        self.rules_error: str | None = None
        self._rules_mtime = _mtime(p.rules_file) if p.rules_file else None
        self._tasks: list[asyncio.Task[None]] = []

    async def setup(self) -> None:
        from .api import api_for

        api_for(self.ctx).add_fuse(self)

    async def start(self) -> None:
        p = self.params
        self._tasks = [asyncio.create_task(self._deadlines(), name=f"{self.name}:deadlines")]
        if p.rules_file:
            self._tasks.append(asyncio.create_task(self._watch_rules(), name=f"{self.name}:rules"))

    def _branches(self) -> tuple[str, ...]:
        if self.params.branches:
            return tuple(b for b in BRANCHES if b in self.params.branches)
        connected = self.ctx.inputs
        if connected is not None:
            found = tuple(b for b in BRANCHES if b in connected)
            if found:
                return found
        return BRANCHES

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # -- inputs ---------------------------------------------------------------------------------------------
    async def on_tracks(self, msg: Tracks) -> None:
        await self._part("tracks", msg)

    async def on_poses(self, msg: Poses) -> None:
        await self._part("poses", msg)

    async def on_extra(self, msg: Analytics) -> None:
        if msg.type in self._emit_types:
            async with self._lock:
                await self._send(payloads.restamp(msg, time.time()))

    async def _part(self, branch: str, msg: Message) -> None:
        if branch not in self.joiner.branches:
            return  # a branch the join was told not to expect
        ready, late = self.joiner.add(branch, msg, time.monotonic())
        async with self._lock:
            for joined in ready:
                await self._emit(joined)
            for part in late:
                await self._late(branch, part)
        if self.joiner.pending():
            self._changed.set()

    async def end_stream(self, end: StreamEnd) -> None:
        """The stream ended: what is still pending for it goes out (partial), then its join, rule windows and
        ring are freed."""
        async with self._lock:
            for joined in self.joiner.end(end.stream_id):
                await self._emit(joined)
            self.engine.forget(end.stream_id)
            self._seen.discard(end.stream_id)
            self._reports.forget(end.stream_id)
            self.rings.drop(end.stream_id)

    async def flush(self) -> None:
        async with self._lock:
            for joined in self.joiner.drain():
                await self._emit(joined)

    # -- output ---------------------------------------------------------------------------------------------
    async def _emit(self, joined: Joined) -> None:
        now = time.time()
        out: list[Analytics] = []
        tracks, poses = joined.parts.get("tracks"), joined.parts.get("poses")
        size: tuple[int | None, int | None] = (None, None)
        if isinstance(tracks, Tracks):
            size = payloads.frame_size(tracks)
            if "detection" in self._emit_types:
                out.append(payloads.detection(tracks, now, partial=joined.partial))
            if "speed" in self._emit_types:
                out.extend(payloads.speeds(tracks, now, partial=joined.partial))
        if isinstance(poses, Poses) and "pose" in self._emit_types:
            out.append(payloads.pose(poses, now, partial=joined.partial, size=size))
        if "betting_opportunity" in self._emit_types:
            for record in self.engine.evaluate(joined, now):
                out.append(payloads.opportunity(joined.anchor, now, record, partial=joined.partial))
        for msg in out:
            await self._send(msg)
        self._report(joined.stream_id)

    async def _late(self, branch: str, part: Message) -> None:
        if self.params.late == "drop":
            self.late_dropped += 1
            return
        now = time.time()
        out: list[Analytics] = []
        if isinstance(part, Tracks):
            if "detection" in self._emit_types:
                out.append(payloads.detection(part, now, late=True))
            if "speed" in self._emit_types:
                out.extend(payloads.speeds(part, now, late=True))
        elif isinstance(part, Poses) and "pose" in self._emit_types:
            out.append(payloads.pose(part, now, late=True))
        self.late_emitted += len(out)
        if "betting_opportunity" in self._emit_types:
            # its frame went out without this part: the rules that read it still get to see it, once
            alone = Joined(part.stream_id, part, {branch: part}, True, tuple(b for b in self.joiner.branches
                                                                              if b != branch))
            for record in self.engine.evaluate(alone, now):
                out.append(payloads.opportunity(part, now, record, partial=True))
        for msg in out:
            await self._send(msg)

    async def _send(self, msg: Analytics) -> None:
        self._seen.add(msg.stream_id)
        self.rings.ensure(msg.stream_id).append(msg)
        await self.analytics.send(msg)

    def _report(self, stream_id: str) -> None:
        """Tell the stream registry how this stream's analytics are doing (at most twice a second)."""
        if not self._reports.due(stream_id):
            return
        ring = self.rings.ensure(stream_id)
        self.ctx.streams.update(stream_id, "analytics", fps=ring.fps(), last_seq=ring.last_seq,
                                          node=self.name, partial=self.joiner.partial, late=self.joiner.late)

    # -- background -----------------------------------------------------------------------------------------
    async def _deadlines(self) -> None:
        """Emit slots whose deadline passed; sleeps until the next deadline or until a slot opens."""
        loop = asyncio.get_running_loop()
        while True:
            due = self.joiner.next_deadline()
            timeout = None if due is None else max(0.0, due - time.monotonic())
            self._changed.clear()
            if timeout is None or timeout > 0:
                # a timer instead of asyncio.wait_for, which on 3.11 can swallow a cancel that meets a wake-up
                timer = None if timeout is None else loop.call_later(timeout, self._changed.set)
                try:
                    await self._changed.wait()
                finally:
                    if timer is not None:
                        timer.cancel()
                continue
            expired = self.joiner.expire(time.monotonic())
            if expired:
                async with self._lock:
                    for joined in expired:
                        await self._emit(joined)

    async def _watch_rules(self) -> None:
        path = self.params.rules_file
        while not await self.wait_stopping(self.params.reload_s):
            mtime = _mtime(path)
            if mtime == self._rules_mtime:
                continue
            self._rules_mtime = mtime
            self.reload_rules_file()

    def reload_rules_file(self) -> bool:
        """Re-read ``rules_file``; on error keep the rules in force and report it. Returns success."""
        try:
            rules = load_rules_file(self.params.rules_file)
        except GraphError as exc:
            self.rules_errors += 1
            self.rules_error = str(exc)
            self.log.error("rules file not reloaded, previous rules stay: %s", exc)
            return False
        self.book.set_default(rules, "file")
        self.rules_error = None
        self.log.info("rules reloaded from %s: %d rules", self.params.rules_file, len(rules))
        return True

    def counters(self) -> dict[str, Any]:
        return {**self.joiner.counters(), **self.engine.counters(), "late_emitted": self.late_emitted,
                "late_dropped": self.late_dropped, "rules_version": self.book.version,
                "rules_errors": self.rules_errors, "streams": len(self._seen)}

    def handles(self, stream_id: str) -> bool:
        """Whether this node has produced analytics for ``stream_id``."""
        return stream_id in self._seen


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None
