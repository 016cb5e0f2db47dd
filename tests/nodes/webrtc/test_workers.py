"""``workers: N``: viewers spread over worker processes that each get the packet stream once."""

from __future__ import annotations

import asyncio

import aiohttp

from .conftest import graph
from .test_hub import watch


async def test_two_workers_share_viewers_and_survive_each_other() -> None:
    async with graph("{streams: [cam], workers: 2, join: gop}") as rt:
        node = rt.runners["out"].node
        pool = node._backend
        viewers = []
        try:
            for _ in range(4):
                viewers.append(await watch(rt.server.url))
            for viewer, _ in viewers:
                await asyncio.wait_for(viewer.first_frame, 30)
            assert sorted(len(w.viewers) for w in pool.workers) == [2, 2]
            for _ in range(400):
                if all(v.messages for v, _ in viewers):
                    break
                await asyncio.sleep(0.1)
            assert all(v.messages for v, _ in viewers), "analytics did not reach every worker's viewers"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{rt.server.url}/api/webrtc/stats") as resp:
                    stats = await resp.json()
                assert stats["streams"]["cam"]["viewers"] == 4
                assert len(stats["nodes"]["out"]["workers"]) == 2
                viewer, body = viewers.pop()
                async with http.delete(rt.server.url + body["location"]) as resp:
                    assert resp.status == 200
                await viewer.close()
            # one worker dies: the other worker's viewers keep receiving video
            victim = pool.workers[0]
            assert victim.process is not None
            victim.process.kill()
            await victim.process.wait()
            survivors = [(v, b) for v, b in viewers if b["viewer_id"].startswith("w1-")]
            assert survivors
            before = [v.frames for v, _ in survivors]
            # they keep receiving: 10 more frames each (a third of a second at 30 fps; generous on a loaded box)
            for _ in range(600):
                if all(v.frames > n + 10 for (v, _), n in zip(survivors, before, strict=True)):
                    break
                await asyncio.sleep(0.05)
            assert all(v.frames > n + 10 for (v, _), n in zip(survivors, before, strict=True)), \
                ([v.frames for v, _ in survivors], before)
            for _ in range(200):
                if node.counters()["workers_alive"] == 1:
                    break
                await asyncio.sleep(0.05)
            assert node.counters()["workers_alive"] == 1
        finally:
            for viewer, _ in viewers:
                await viewer.close()


async def test_an_ended_stream_is_freed_in_every_worker_and_its_viewers_closed() -> None:
    from flowgraph.messages import StreamEnd

    async with graph("{streams: [cam], workers: 2, join: gop}", analytics=False) as rt:
        node = rt.runners["out"].node
        pool = node._backend
        viewers = [await watch(rt.server.url) for _ in range(2)]
        try:
            for viewer, _ in viewers:
                await asyncio.wait_for(viewer.first_frame, 30)
            assert sorted(len(w.viewers) for w in pool.workers) == [1, 1]
            rt.runners["src"].node.lose = 10**9  # no packet after the end marker re-creates the fan-out...
            for _ in range(200):  # ...nor one still queued on the edge
                if all(e["depth"] == 0 for e in rt.snapshot()["edges"] if e["to"] == "out/video"):
                    break
                await asyncio.sleep(0.05)
            before = (await node.viewer_stats())["workers"]
            assert all(w["renditions"]["cam"] == ["src"] for w in before), "each worker had a fan-out for cam"
            await node.end_stream(StreamEnd(stream_id="cam", reason="publisher left"))
            after = await node.viewer_stats()
            for _ in range(200):  # the workers report their closed viewers on their own
                if not any(w.viewers for w in pool.workers):
                    break
                await asyncio.sleep(0.05)
        finally:
            for viewer, _ in viewers:
                await viewer.close()
    assert node.streams_ended_viewers == 2
    assert all(not w["renditions"].get("cam") for w in after["workers"]), after["workers"]
    assert not any(w.viewers for w in pool.workers) and "cam" not in pool.streams


class _Transport:
    def __init__(self) -> None:
        self.queued = 0

    def get_write_buffer_size(self) -> int:
        return self.queued


class _Writer:
    """The graph side of a worker's socket, with a send buffer the test fills."""

    def __init__(self) -> None:
        self.transport = _Transport()
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written.append(data)


class _Running:
    returncode = None


async def test_a_packet_lost_on_a_full_worker_pipe_makes_that_worker_hold_its_viewers() -> None:
    from flowgraph.messages import Packet
    from flowgraph.nodes.media.h264 import with_facts
    from flowgraph.nodes.webrtc import ipc
    from flowgraph.nodes.webrtc.hub import HubConfig, ViewerHub
    from flowgraph.nodes.webrtc.workers import WorkerPool

    from .conftest import encode_packets

    pool = WorkerPool(1, HubConfig(), lambda *args: None, [])
    worker = pool.workers[0]
    writer = _Writer()
    worker.process, worker.writer = _Running(), writer  # type: ignore[assignment]
    packets = [with_facts(Packet(stream_id="cam", data=data, frame_id=n, pts=n))  # no seq: only the pipe knows
               for n, (data, _, _) in enumerate(encode_packets(4, gop=30))]
    pool.push_packet(packets[0], "src")
    writer.transport.queued = 9 << 20  # the worker fell behind: its socket buffer is over the limit
    pool.push_packet(packets[1], "src")
    writer.transport.queued = 0
    pool.push_packet(packets[2], "src")
    assert worker.dropped_packets == 1 and len(writer.written) == 2

    requests: list[tuple[str, str, str]] = []
    hub = ViewerHub(HubConfig(), lambda *args: requests.append(args))
    deliveries = []
    for message in writer.written:
        reader = asyncio.StreamReader()
        reader.feed_data(message)
        deliveries.append(ipc.decode_packet(*await ipc.read(reader)))
    assert [d.lost_before for d in deliveries] == [False, True]
    for delivery in deliveries:
        hub.push_packet(delivery.packet, delivery.rendition, lost_before=delivery.lost_before)
    fan = hub.fanouts["cam"]["src"]
    assert fan.holding and fan.frames == 1 and fan.frames_held == 1
    assert requests == [("cam", "src", "packets lost before the viewer tier")]
