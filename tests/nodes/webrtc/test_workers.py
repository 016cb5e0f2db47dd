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
                await asyncio.wait_for(viewer.first_frame, 10)
            assert sorted(len(w.viewers) for w in pool.workers) == [2, 2]
            for _ in range(60):
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
            await asyncio.sleep(1.0)
            assert all(v.frames > n + 10 for (v, _), n in zip(survivors, before, strict=True))
            assert node.counters()["workers_alive"] == 1
        finally:
            for viewer, _ in viewers:
                await viewer.close()
