"""Bounded channels: each policy's behaviour when full, end-of-stream, and age measurement."""

from __future__ import annotations

import asyncio

import pytest

from flowgraph.channel import EMPTY, Channel
from flowgraph.messages import Data, StreamEnd


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


# -- many streams on one edge (issue 19) --------------------------------------------------------------------------


def _d(stream: str, value: int) -> Data:
    return Data(stream_id=stream, value=value)


def test_latest_keeps_one_slot_per_stream_and_serves_them_in_turn() -> None:
    channel = Channel("e", 1, "latest")
    for i in range(100):  # a busy stream ...
        channel.offer(_d("busy", i))
        if i % 10 == 0:  # ... beside a slow one
            channel.offer(_d("slow", i))
    assert len(channel) == 2
    first, second = channel.take(), channel.take()
    assert (first.stream_id, first.value) == ("busy", 99)  # the busy stream kept its turn, freshest frame
    assert (second.stream_id, second.value) == ("slow", 90)
    assert channel.take() is EMPTY
    assert channel.drops == 100 + 10 - 2


def test_latest_busy_stream_cannot_starve_another() -> None:
    channel = Channel("e", 1, "latest")
    served: dict[str, int] = {"a": 0, "b": 0}
    for i in range(300):
        for _ in range(5):  # a sends five frames for every one of b's
            channel.offer(_d("a", i))
        channel.offer(_d("b", i))
        msg = channel.take()  # the consumer takes one message per round
        served[msg.stream_id] += 1
    assert abs(served["a"] - served["b"]) <= 1


def test_drop_oldest_drops_from_the_busiest_stream() -> None:
    channel = Channel("e", 4, "drop_oldest")
    channel.offer(_d("quiet", 0))
    for i in range(20):
        channel.offer(_d("loud", i))
    held = [channel.take() for _ in range(4)]
    assert [(m.stream_id, m.value) for m in held] == [("quiet", 0), ("loud", 17), ("loud", 18), ("loud", 19)]
    assert channel.drops == 17


def test_drop_oldest_keeps_a_keyframe_while_other_packets_of_its_stream_can_go() -> None:
    """Publishers in step send their keyframes together: the edge fills with them, and dropping one would leave
    its stream's viewers without a picture for a whole GOP (seen with 32 streams: viewers connected, never a frame)."""
    from fractions import Fraction

    from flowgraph.messages import Packet

    def packet(stream: str, n: int, key: bool) -> Packet:
        return Packet(data=b"x", keyframe=key, pts=n, time_base=Fraction(1, 30), stream_id=stream, seq=n)

    channel = Channel("e", 3, "drop_oldest")
    for msg in (packet("a", 0, True), packet("a", 1, False), packet("a", 2, False), packet("a", 3, False)):
        channel.offer(msg)
    assert [(m.seq, m.keyframe) for m in (channel.take() for _ in range(3))] == [(0, True), (2, False), (3, False)]
    # only keyframes of the stream queued: the oldest of them goes, as before
    for n in range(4):
        channel.offer(packet("b", n, True))
    assert [channel.take().seq for _ in range(3)] == [1, 2, 3] and channel.drops == 2


def test_stream_end_is_never_dropped_nor_replaced() -> None:
    channel = Channel("e", 1, "latest")
    channel.offer(_d("a", 1))
    channel.offer(StreamEnd(stream_id="a"))  # takes the place of a's stale frame
    channel.offer(_d("a", 2))  # a new stream with the same id queues behind the marker
    assert [type(m).__name__ for m in (channel.take(), channel.take())] == ["StreamEnd", "Data"]
    lossless = Channel("e", 1, "block")
    lossless.offer(_d("a", 1))
    assert lossless.offer(StreamEnd(stream_id="a"))  # a marker never waits on a full block edge
    assert len(lossless) == 2 and lossless.drops == 0
    live = Channel("e", 2, "drop_oldest")
    live.offer(StreamEnd(stream_id="a"))
    for i in range(5):
        live.offer(_d("b", i))
    assert type(live.take()) is StreamEnd
