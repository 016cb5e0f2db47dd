"""One running node: its task, its worker thread, its inputs, and its failure policy.

The runner owns everything it starts (STYLE: every task has an owner): the consume/source task, the node's
single worker thread (blocking and CUDA work), and the CUDA stream of a GPU stage. ``stop`` is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .channel import EMPTY, Channel
from .compile import NodePlan
from .context import NodeContext
from .errors import NodeError
from .messages import Message, StreamEnd
from .metrics import BatchStats, NodeStats
from .node import Node
from .stream_end import MarkerGate
from .supervisor import Fatal, Supervisor

frames_log = logging.getLogger("flowgraph.frames")
_DONE = object()


class NodeRunner:
    def __init__(self, plan: NodePlan, ctx: NodeContext, on_fatal: Callable[[NodeError], None]) -> None:
        self.plan = plan
        self.name = plan.name
        self.ctx = ctx
        ctx.offloader = self.offload
        self.node: Node = plan.cls(ctx, plan.params)
        self.stats = NodeStats()
        self.inputs: list[tuple[str, Channel, bool]] = []
        self.supervisor = Supervisor(self.name, plan.on_error, self.stats, on_fatal)
        self._executor: ThreadPoolExecutor | None = None
        self._cuda: Any = None
        self._wakeup: asyncio.Future[None] | None = None
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._async_handlers: set[str] = set()
        self._sync = plan.cls.blocking()
        self._inline = plan.mode == "inline"
        self._default_output = next(iter(plan.cls.outputs)) if len(plan.cls.outputs) == 1 else None
        self.task: asyncio.Task[None] | None = None
        #: Runners fused into this one's stage: called inline, finished when this one finishes.
        self.fused_consumers: list[NodeRunner] = []
        self.fused = False
        self.stopped = False
        #: Set by a live edit that replaces this node: its outputs are handed to the successor, not closed.
        self.handover = False
        self._log_frames = False
        #: Feedback input ports: a stream-end marker coming back on one is ignored (no loops).
        self._feedback_ports: set[str] = set()
        #: Stream-end copies counted per marker (the runtime sets ``markers.expected``; see stream_end.py).
        self.markers = MarkerGate()
        #: Input ports whose queued messages go to ``process_batch`` together (empty: one message per call).
        self._batch_ports = plan.cls.batch_ports() if plan.max_batch > 1 else frozenset()
        if self._batch_ports:
            self.stats.batch = BatchStats(plan.max_batch)

    # -- wiring ---------------------------------------------------------------------------------------------
    def attach_input(self, port: str, channel: Channel, feedback: bool = False) -> None:
        channel.on_ready(self._notify)
        self.inputs.append((port, channel, feedback))
        if feedback:
            self._feedback_ports.add(port)

    def detach_input(self, channel: Channel) -> None:
        """Stop reading ``channel`` (live re-wiring); its queued messages stay in it for whoever attaches next."""
        self.inputs = [entry for entry in self.inputs if entry[1] is not channel]
        self._notify()

    def _notify(self) -> None:
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- worker thread --------------------------------------------------------------------------------------
    def _thread_init(self) -> None:
        if self.plan.nice:
            # Linux schedules threads individually: lowering this one leaves the video path's threads alone
            try:
                process_nice = os.getpriority(os.PRIO_PROCESS, 0)
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, process_nice + self.plan.nice))
            except OSError as exc:
                self.node.log.warning("could not lower worker thread priority: %s", exc)
        if self._cuda is not None:
            self._cuda.bind_thread()

    async def offload(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if self._executor is None:
            if self.plan.device.startswith("cuda"):
                from .gpu import CudaStage

                self._cuda = CudaStage(self.plan.device)
                self.ctx.cuda_stream = self._cuda.stream
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"fg-{self.name}",
                                                initializer=self._thread_init)
        call = functools.partial(fn, *args, **kwargs) if kwargs else (functools.partial(fn, *args) if args else fn)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def setup(self) -> None:
        self._handlers = {port: getattr(self.node, self.plan.cls.handler_name(port) or "process")
                          for port in self.plan.cls.inputs}
        self._async_handlers = {port for port, handler in self._handlers.items()
                                if inspect.iscoroutinefunction(handler)}
        from .server import SETTING_UP

        token = SETTING_UP.set(self.name)
        try:
            await self.node.setup()
        finally:
            SETTING_UP.reset(token)

    async def start(self) -> None:
        self.stats.state = "starting"
        await self.node.start()
        self.stats.state = "running"
        self._log_frames = frames_log.isEnabledFor(logging.DEBUG)

    def launch(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self._main(), name=f"node:{self.name}")
        return self.task

    async def _main(self) -> None:
        natural = False
        try:
            if self.plan.source:
                await self._run_source()
            elif self._batch_ports:
                await self._consume_batches()
            else:
                await self._consume()
            natural = True
        except Fatal:
            pass
        finally:
            await self.finish(natural)

    async def finish(self, natural: bool) -> None:
        """End of this node's stream: flush (when it ended naturally), close outputs, stop; then the same for
        the nodes fused into this one's stage, which have no task of their own."""
        try:
            if natural:
                try:
                    await self.node.flush()
                except Exception as exc:
                    self.node.log.error("flush() failed: %s", exc, exc_info=exc)
        finally:
            if not self.handover:
                for output in self.node._outputs.values():
                    output.close()
            if natural:
                self.stats.state = "finished"
            elif self.stats.state != "failed":
                self.stats.state = "stopped"
            await self.stop()
            for consumer in self.fused_consumers:
                await consumer.finish(natural)

    async def stop(self) -> None:
        """Stop the node and release the worker thread. Idempotent."""
        if self.stopped:
            return
        self.stopped = True
        try:
            await self.node.stop()
        except Exception:
            self.node.log.exception("stop() failed")
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def request_stop(self) -> None:
        self.node._stopping.set()
        self._notify()

    # -- consuming ------------------------------------------------------------------------------------------
    async def _consume(self, forever: bool = False) -> None:
        """Handle queued input messages until every input ended (or, ``forever``, until cancelled)."""
        loop = asyncio.get_running_loop()
        handle = self.handle
        turn = 0
        while True:
            inputs = self.inputs  # a live edit may replace the list between passes
            count = len(inputs)
            if count == 1:  # the common case, without the round-robin bookkeeping
                port, channel, _ = inputs[0]
                msg = channel.take()
                if msg is not EMPTY:
                    await handle(port, msg)
                    continue
            elif count:
                progressed = False
                for i in range(count):  # one message per input per pass: no input starves another
                    port, channel, _ = inputs[(turn + i) % count]
                    msg = channel.take()
                    if msg is not EMPTY:
                        progressed = True
                        await handle(port, msg)
                turn += 1
                if progressed:
                    continue
            if not forever and _all_ended(inputs):
                return
            self._wakeup = waiter = loop.create_future()
            await waiter
            self._wakeup = None

    async def _consume_batches(self) -> None:
        """``_consume`` for a node with ``process_batch``: from an input that ``process`` serves, every message
        already queued there (up to ``max_batch``; on a ``latest`` edge the newest frame of each stream; from every
        wire into that port) goes to the node in one call. A lone message goes to ``process`` as on any node;
        markers are handled in their place."""
        loop = asyncio.get_running_loop()
        batch_ports, limit, stats = self._batch_ports, self.plan.max_batch, self.stats.batch
        assert stats is not None
        turn = 0
        while True:
            inputs = self.inputs  # a live edit may replace the list between passes
            count = len(inputs)
            progressed = False
            for i in range(count):  # one batch per input per pass: no input starves another
                port, channel, _ = inputs[(turn + i) % count]
                if port not in batch_ports:
                    msg = channel.take()
                    if msg is not EMPTY:
                        progressed = True
                        await self.handle(port, msg)
                    continue
                batch = channel.take_batch(limit)
                if not batch:
                    continue
                progressed = True
                if type(batch[0]) is StreamEnd:
                    await self.handle(port, batch[0])
                    continue
                if len(batch) < limit and count > 1:  # several wires into this port: their messages join too
                    self._top_up(port, batch, limit)
                if self.plan.batch_wait_ms and len(batch) < limit:
                    await self._fill(port, batch, limit)
                started = time.perf_counter()
                if len(batch) == 1:
                    await self.handle(port, batch[0])
                else:
                    await self.handle_batch(port, batch)
                stats.add(len(batch), time.perf_counter() - started)
            turn += 1
            if progressed:
                continue
            if _all_ended(inputs):
                return
            self._wakeup = waiter = loop.create_future()
            await waiter
            self._wakeup = None

    def _top_up(self, port: str, batch: list[Any], limit: int) -> bool:
        """Add to ``batch`` what is queued on every wire into ``port`` (markers stay queued). True when something
        is still queued there: the batch is full, or a marker waits for its turn."""
        left = False
        for other_port, channel, _ in self.inputs:
            if other_port == port:
                if len(batch) < limit:
                    batch.extend(channel.take_batch(limit - len(batch), marker=False))
                left = left or bool(len(channel))
        return left

    async def _fill(self, port: str, batch: list[Any], limit: int) -> None:
        """``batch_wait_ms``: wait that long at most for more messages to join ``batch`` (a marker ends it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.plan.batch_wait_ms / 1000
        while len(batch) < limit:
            if self._top_up(port, batch, limit) or len(batch) >= limit:
                return
            remaining = deadline - loop.time()
            if remaining <= 0 or all(channel.closed for p, channel, _ in self.inputs if p == port):
                return  # time is up, or no more will come
            self._wakeup = waiter = loop.create_future()
            timer = loop.call_later(remaining, self._notify)
            try:
                await waiter
            finally:
                timer.cancel()
                self._wakeup = None

    async def handle_batch(self, port: str, batch: list[Any]) -> None:
        """Several messages in one ``process_batch`` call, under the node's failure policy: a failed call under
        ``skip_message`` hands each message to ``process`` on its own (one bad message skips only itself), under
        ``restart``/``stop`` it goes through the policy as one. Each message counts as processed; its process time
        is its share of the call (the call's own time is in the batch figures)."""
        now = time.time()
        ages = [now - m.t_capture for m in batch if getattr(m, "t_capture", None) is not None]
        handler = self.node.process_batch
        started = time.perf_counter()
        alone = False
        try:
            if inspect.iscoroutinefunction(handler):
                await handler(batch)
            else:
                results = await self.offload(self._call_sync_batch, handler, batch)
                if not isinstance(results, list | tuple) or len(results) != len(batch):
                    raise TypeError(f"process_batch must return one result per message ({len(batch)}), got "
                                    f"{len(results) if isinstance(results, list | tuple) else type(results).__name__}")
                for result in results:
                    if result is not None:
                        await self._emit(result)
            self.stats.processed += len(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            alone = self.supervisor.retries_alone(self.node, exc, batch)
            if not alone:
                await self.supervisor.failed(self.node, exc, batch[0])
        finally:
            if not alone:  # retried messages are timed by handle()
                self._count_batch(batch, ages, (time.perf_counter() - started) / len(batch))
        if alone:
            for msg in batch:
                await self.handle(port, msg)

    def _count_batch(self, batch: list[Any], ages: list[float], share: float) -> None:
        for age in ages:
            self.stats.capture_age.add(age)
        for msg in batch:
            self.stats.process_time.add(share)
            if self._log_frames:
                frames_log.debug("node=%s batch=%d stream=%s frame_id=%s process_ms=%.3f", self.name,
                                 len(batch), getattr(msg, "stream_id", None), getattr(msg, "frame_id", None),
                                 share * 1000)

    async def handle(self, port: str, msg: Any) -> None:
        """Process one message under the node's failure policy; also the entry point of fused edges."""
        if type(msg) is StreamEnd:
            await self._end_stream(port, msg)
            return
        handler = self._handlers[port]
        captured = getattr(msg, "t_capture", None)
        if captured is not None:
            self.stats.capture_age.add(time.time() - captured)
        started = time.perf_counter()
        try:
            if self._sync and port not in self._async_handlers:
                if self._inline:
                    result = handler(msg)
                else:
                    result = await self.offload(self._call_sync, handler, msg)
                if result is not None:
                    await self._emit(result)
            else:
                await handler(msg)
            self.stats.processed += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self.supervisor.failed(self.node, exc, msg)
        finally:
            elapsed = time.perf_counter() - started
            self.stats.process_time.add(elapsed)
            if self._log_frames:
                frames_log.debug("node=%s port=%s stream=%s frame_id=%s process_ms=%.3f", self.name, port,
                                 getattr(msg, "stream_id", None), getattr(msg, "frame_id", None), elapsed * 1000)

    async def _end_stream(self, port: str, msg: StreamEnd) -> None:
        """One stream ended: once its marker came on every input it reaches this node by, the node frees the
        stream's state and the marker goes on once on every output (unless the node forwards it itself)."""
        if port in self._feedback_ports or not self.markers.complete(msg):
            return
        self.stats.streams_ended += 1
        try:
            result = self.node.end_stream(msg)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.node.log.error("end_stream(%r) failed: %s", msg.stream_id, exc, exc_info=exc)
        if not self.node.forwards_stream_end:
            for output in self.node._outputs.values():
                await output.send(msg)

    def _after_producer_gpu(self, msg: Any) -> None:
        """In the worker thread: wait for the GPU work that made ``msg`` (on our stream, or on the host)."""
        if getattr(msg, "cuda_event", None) is not None:
            if self._cuda is not None:
                self._cuda.wait_for(msg)
            else:
                from .gpu import host_wait

                host_wait(msg)

    def _call_sync(self, handler: Callable[[Any], Any], msg: Any) -> Any:
        """In the worker thread: order after the producer's GPU work, run, mark outputs with our event."""
        self._after_producer_gpu(msg)
        result = handler(msg)
        if self._cuda is not None and result is not None:
            self._cuda.mark(list(_messages(result)))
        return result

    def _call_sync_batch(self, handler: Callable[[list[Any]], Any], batch: list[Any]) -> Any:
        """``_call_sync`` for a batch: every message's GPU work first, then one call."""
        for msg in batch:
            self._after_producer_gpu(msg)
        results = handler(batch)
        if self._cuda is not None and isinstance(results, list | tuple):
            self._cuda.mark([m for result in results for m in _messages(result)])
        return results

    async def _emit(self, result: Any) -> None:
        outputs = self.node._outputs
        if isinstance(result, dict):
            for port, value in result.items():
                if port not in outputs:
                    raise KeyError(f"node returned a message for unknown output {port!r}")
                for msg in value if isinstance(value, list | tuple) else (value,):
                    await outputs[port].send(msg)
            return
        if self._default_output is None:
            raise TypeError("a node with several outputs must return {port: message}")
        output = outputs[self._default_output]
        for msg in result if isinstance(result, list | tuple) else (result,):
            await output.send(msg)

    # -- sources --------------------------------------------------------------------------------------------
    async def _run_source(self) -> None:
        # a source's inputs (control feedback) are served beside run(), by a task this method owns
        side = asyncio.create_task(self._consume(forever=True), name=f"inputs:{self.name}") if self.inputs else None
        try:
            await self._run_source_body()
        finally:
            if side is not None:
                side.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await side

    async def _run_source_body(self) -> None:
        while True:
            try:
                if self._sync:
                    await self._drive_generator()
                else:
                    await self.node.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self.supervisor.failed(self.node, exc, None)
                if self.node.stopping:
                    return

    async def _drive_generator(self) -> None:
        generator = await self.offload(self.node.run)
        try:
            while not self.node.stopping:
                item = await self.offload(next, generator, _DONE)
                if item is _DONE:
                    return
                if isinstance(item, tuple):
                    port, msg = item
                    await self._emit({port: msg})
                else:
                    await self._emit(item)
        finally:
            with contextlib.suppress(Exception):
                await self.offload(generator.close)


def _all_ended(inputs: list[tuple[str, Channel, bool]]) -> bool:
    """Every input closed and drained (feedback inputs never end a node). A loop, not ``all()`` over a
    generator: this runs each time a consumer goes idle, once per message on a lightly loaded edge."""
    for _, channel, feedback in inputs:
        if not (feedback or channel.ended):
            return False
    return True


def _messages(result: Any) -> list[Message]:
    if isinstance(result, Message):
        return [result]
    if isinstance(result, dict):
        return [m for v in result.values() for m in (v if isinstance(v, list | tuple) else (v,))]
    if isinstance(result, list | tuple):
        return list(result)
    return []
