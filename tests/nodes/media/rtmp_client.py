"""A raw-socket RTMP publisher for tests that need to misbehave on purpose (ffmpeg only behaves)."""

from __future__ import annotations

import asyncio
from typing import Any

from flowgraph.nodes.media.rtmp_proto import (
    COMMAND_AMF0,
    HANDSHAKE_SIZE,
    ChunkParser,
    amf0_decode_all,
    amf0_encode,
    encode_chunks,
)


class RawPublisher:
    """Speaks the publisher side of RTMP one step at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = ChunkParser()

    @classmethod
    async def open(cls, port: int, handshake: bool = True) -> RawPublisher:
        deadline = asyncio.get_running_loop().time() + 15
        while True:  # the RTMP server starts when the ingest node runs, just after the graph is ready
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except ConnectionRefusedError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)
        client = cls(reader, writer)
        if handshake:
            writer.write(b"\x03" + bytes(HANDSHAKE_SIZE))
            await reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
            writer.write(bytes(HANDSHAKE_SIZE))
            await writer.drain()
        return client

    def command(self, *values: Any, stream_id: int = 0) -> None:
        self.writer.write(encode_chunks(3, COMMAND_AMF0, stream_id, amf0_encode(*values), 128))

    async def publish(self, app: str, key: str) -> str:
        """connect, createStream, publish; returns the onStatus code the server answers publish with."""
        self.command("connect", 1.0, {"app": app, "type": "nonprivate"})
        self.command("createStream", 2.0, None)
        self.command("publish", 3.0, None, key, "live", stream_id=1)
        await self.writer.drain()
        return await self.status()

    async def status(self, timeout: float = 10.0) -> str:
        async def read() -> str:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return "closed"
                for message in self.parser.feed(data):
                    if message.type_id == COMMAND_AMF0:
                        values = amf0_decode_all(message.payload)
                        if values and values[0] == "onStatus" and isinstance(values[-1], dict):
                            return str(values[-1].get("code"))

        return await asyncio.wait_for(read(), timeout)

    async def closed(self, timeout: float) -> bool:
        """Whether the server closes the connection within ``timeout`` (reading and discarding meanwhile)."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    def close(self) -> None:
        self.writer.close()
