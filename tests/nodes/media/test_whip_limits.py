"""WHIP under the security rules: the token in the url is never shown."""

from __future__ import annotations

import aiohttp

from flowgraph.testing import collected, running

from .helpers import ingest_graph, wait_for
from .test_whip import Publisher


async def test_the_whip_token_is_never_shown() -> None:
    graph = ingest_graph({"url": "whip://?token=url-token-0123456", "stream_id": "cam"}, on_error="skip_message")
    async with running(graph) as rt:
        url = rt.server.url + "/whip/cam"
        first = Publisher(url, "url-token-0123456")
        await first.publish()
        second = Publisher(url, "url-token-0123456")
        try:
            assert first.status == 201
            assert await wait_for(lambda: len(collected(rt, "frames")) >= 5, 45)
            async with aiohttp.ClientSession() as http, http.get(rt.server.url + "/api/streams") as response:
                listed = await response.text()
            assert "url-token-0123456" not in listed and "token=***" in listed  # on main: shown in clear
        finally:
            await first.close()
            await second.close()
