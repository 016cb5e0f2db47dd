"""Helpers for tests and embedding: compile YAML text, run a graph in the current event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from .compile import ExecutionPlan, compile_plan
from .registry import Registry
from .runtime import Runtime
from .spec import parse_spec


def compile_text(text: str, *, overrides: list[str] | None = None, env: dict[str, str] | None = None,
                 registry: Registry | None = None, file: str = "graph.yaml") -> ExecutionPlan:
    """Parse and compile graph YAML given as text (errors name ``file``)."""
    return compile_plan(parse_spec(text, file, overrides, env), registry)


@contextlib.asynccontextmanager
async def running(plan_or_text: ExecutionPlan | str, *, port: int = 0, ready_timeout: float = 30.0,
                  stop_timeout: float = 30.0, **runtime_kwargs: Any) -> AsyncIterator[Runtime]:
    """Run a graph in the background for the body of an ``async with``; stop and await it on exit.

    ``runtime.server.url`` is the graph server's address when a node (or ``serve=True``) started it; the
    exit code is in ``runtime.exit_code`` afterwards.
    """
    plan = compile_text(plan_or_text) if isinstance(plan_or_text, str) else plan_or_text
    runtime = Runtime(plan, port=port, **runtime_kwargs)
    task = asyncio.ensure_future(runtime.run(install_signals=False))
    ready = asyncio.ensure_future(runtime.ready.wait())
    await asyncio.wait([task, ready], timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raises what start-up raised
        raise RuntimeError("graph ended during start-up")
    if not ready.done():
        ready.cancel()
        task.cancel()
        raise TimeoutError(f"graph did not start within {ready_timeout}s")
    try:
        yield runtime
    finally:
        runtime.request_stop()
        try:
            runtime.exit_code = await asyncio.wait_for(task, stop_timeout)
        except TimeoutError:
            task.cancel()
            raise


async def run_to_end(plan_or_text: ExecutionPlan | str, *, timeout: float = 60.0, **runtime_kwargs: Any) -> Runtime:
    """Run a graph whose sources end by themselves; return the runtime (``exit_code`` set) once it has."""
    plan = compile_text(plan_or_text) if isinstance(plan_or_text, str) else plan_or_text
    runtime = Runtime(plan, port=runtime_kwargs.pop("port", 0), **runtime_kwargs)
    runtime.exit_code = await asyncio.wait_for(runtime.run(install_signals=False), timeout)
    return runtime


def collected(runtime: Runtime, node: str) -> list[Any]:
    """Messages a ``collect`` node kept."""
    sink = runtime.runners[node].node
    received = vars(sink).get("received")
    if received is None:
        raise TypeError(f"node {node!r} is a {type(sink).__name__}, not a collect node")
    return list(received)


async def until(predicate: Callable[[], bool], timeout: float = 60.0, step: float = 0.05) -> bool:
    """Poll ``predicate`` every ``step`` s until it holds or ``timeout`` s pass; its last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() >= deadline:
            return bool(predicate())
        await asyncio.sleep(step)
    return True
