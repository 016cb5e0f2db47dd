"""Bounded channels: each policy's behaviour when full, end-of-stream, and age measurement."""

from __future__ import annotations

import asyncio

import pytest

from flowgraph.channel import EMPTY, Channel


async def test_block_policy_applies_backpressure() -> None:
    channel = Channel("e", 2, "block")
    assert channel.offer(1) and channel.offer(2)
    assert not channel.offer(3)
    waiting = asyncio.ensure_future(channel.put(3))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    assert channel.take() == 1
    await asyncio.wait_for(waiting, 1)
    assert [channel.take(), channel.take()] == [2, 3]
    assert channel.drops == 0


def test_drop_oldest_keeps_newest_and_counts() -> None:
    channel = Channel("e", 3, "drop_oldest")
    for i in range(10):
        assert channel.offer(i)
    assert len(channel) == 3
    assert channel.drops == 7
    assert [channel.take() for _ in range(3)] == [7, 8, 9]
    assert channel.take() is EMPTY


def test_latest_is_size_one() -> None:
    channel = Channel("e", 8, "latest")
    assert channel.size == 1
    for i in range(5):
        channel.offer(i)
    assert channel.take() == 4
    assert channel.drops == 4


def test_close_drains_then_ends_and_counts_late_puts() -> None:
    channel = Channel("e", 4, "block")
    channel.offer("a")
    channel.close()
    assert not channel.ended
    channel.offer("late")
    assert channel.drops == 1
    assert channel.take() == "a"
    assert channel.ended


async def test_close_releases_blocked_producer() -> None:
    channel = Channel("e", 1, "block")
    channel.offer(1)
    waiting = asyncio.ensure_future(channel.put(2))
    await asyncio.sleep(0)
    channel.close()
    await asyncio.wait_for(waiting, 1)
    assert channel.drops == 1


async def test_age_is_measured_at_dequeue() -> None:
    channel = Channel("e", 4, "block")
    channel.offer(1)
    await asyncio.sleep(0.02)
    channel.take()
    p50 = channel.age.summary_ms()["p50"]
    assert p50 is not None and p50 >= 15


def test_invalid_size() -> None:
    with pytest.raises(ValueError, match="size must be >= 1"):
        Channel("e", 0, "block")


def test_notify_called_on_offer_and_close() -> None:
    calls: list[int] = []
    channel = Channel("e", 2, "drop_oldest")
    channel.on_ready(lambda: calls.append(1))
    channel.offer(1)
    channel.close()
    assert len(calls) == 2


def test_rate_meter_windows_and_origin() -> None:
    from flowgraph.metrics import RateMeter

    meter = RateMeter(window=3.0, step=0.25)
    meter.origin = 0.0
    assert meter.rate("k", 50, 1.0) == 50.0  # since the origin
    assert meter.rate("k", 60, 1.1) == round(60 / 1.1, 2)  # a quick second observer still sees a real rate
    for t in range(2, 10):
        rate = meter.rate("k", 100 * t, float(t))
    assert rate == 100.0  # the window slid past the slow start
