"""The graph server: who may use which route (tokens per surface), TLS as one setting, and the limits that keep
one peer from holding it (header timeout, connection cap, signalling rate)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from flowgraph.limits import RateLimiter
from flowgraph.server import GraphServer

READ, CONTROL = "r" * 16, "c" * 16


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def routes(server: GraphServer) -> None:
    server.add_get("/healthz", ok, surface="public")
    server.add_get("/api/streams", ok)  # read by default
    server.add_get("/api/webrtc/stats", ok, surface="control")
    server.add_route("DELETE", "/api/thing", ok)  # control by default
    server.add_post("/api/stream/connect", ok, surface="watch")


@pytest.fixture
async def guarded() -> AsyncIterator[GraphServer]:
    server = GraphServer("127.0.0.1", 0, conf={"token": CONTROL, "read_token": READ,
                                                "limits": {"signalling_burst": 3, "signalling_per_s": 0.01,
                                                           "exempt_loopback": False}})
    routes(server)
    await server.start()
    yield server
    await server.stop()


async def status(http: aiohttp.ClientSession, method: str, url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, headers=headers) as response:
        await response.read()
        return response.status


async def test_each_surface_asks_for_its_own_token(guarded: GraphServer) -> None:
    base = guarded.url
    async with aiohttp.ClientSession() as http:
        assert await status(http, "GET", f"{base}/healthz") == 200
        assert await status(http, "GET", f"{base}/api/streams") == 401
        assert await status(http, "GET", f"{base}/api/streams", "wrong-token-here") == 401
        assert await status(http, "GET", f"{base}/api/streams", READ) == 200
        assert await status(http, "GET", f"{base}/api/streams?token={READ}") == 200  # browsers: query token
        assert await status(http, "GET", f"{base}/api/streams", CONTROL) == 200  # control may read too
        assert await status(http, "GET", f"{base}/api/webrtc/stats") == 401
        assert await status(http, "GET", f"{base}/api/webrtc/stats", READ) == 401
        assert await status(http, "GET", f"{base}/api/webrtc/stats", CONTROL) == 200
        assert await status(http, "DELETE", f"{base}/api/thing", READ) == 401
        assert await status(http, "DELETE", f"{base}/api/thing", CONTROL) == 200
        async with http.get(f"{base}/api/webrtc/stats") as response:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await response.json())["error"] == "missing or wrong bearer token"
    assert guarded.refused_requests["read"] == 2 and guarded.refused_requests["control"] == 4


async def test_signalling_is_rate_limited_per_address(guarded: GraphServer) -> None:
    async with aiohttp.ClientSession() as http:
        codes = [await status(http, "POST", f"{guarded.url}/api/stream/connect") for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        async with http.post(f"{guarded.url}/api/stream/connect") as response:
            assert int(response.headers["Retry-After"]) >= 1
        # another address has its own bucket
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector) as other:
            assert await status(other, "POST", f"{guarded.url}/api/stream/connect") == 200


def test_rate_limiter_refills_and_bounds_its_memory() -> None:
    limiter = RateLimiter(burst=2, per_s=1.0, max_addresses=3)
    assert [limiter.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 1.0]
    assert limiter.take("a", now=1.0) == 0.0
    for i in range(10):
        limiter.take(f"x{i}", now=2.0)
    assert len(limiter._buckets) == 3


async def test_half_sent_headers_do_not_stay_open() -> None:
    """200 connections that never finish their headers: closed after header_timeout_s; a cap of 50 refuses the
    rest at once; a valid request is still answered afterwards (on main they stayed open for an hour)."""
    server = GraphServer("127.0.0.1", 0, conf={"limits": {"header_timeout_s": 1.0, "max_connections": 50}})
    routes(server)
    await server.start()
    try:
        streams = []
        for _ in range(200):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            streams.append((reader, writer))
        started = time.monotonic()
        answers = await asyncio.wait_for(asyncio.gather(*(r.read() for r, _ in streams)), 30)
        elapsed = time.monotonic() - started
        refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
        assert len(refused) >= 150 and server.refused_connections >= 150
        assert all(a == b"" or a.startswith(b"HTTP/1.1 503") for a in answers)  # the slow ones: closed, silent
        assert elapsed < 15, f"half-open connections lived {elapsed:.1f}s"
        for _, writer in streams:
            writer.close()
        async with aiohttp.ClientSession() as http:
            assert await status(http, "GET", f"{server.url}/healthz") == 200
    finally:
        await server.stop()


def self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls_is_one_setting(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = GraphServer("127.0.0.1", 0, conf={"tls": {"cert": str(cert), "key": str(key)}})
    routes(server)

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str("echo " + message.data)
        return ws

    server.add_get("/ws", echo, surface="public")
    await server.start()
    try:
        assert server.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        base = f"https://localhost:{server.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz", ssl=context) as response:
                assert response.status == 200 and (await response.json()) == {"ok": True}
            async with http.ws_connect(f"wss://localhost:{server.port}/ws", ssl=context) as ws:
                await ws.send_str("hi")
                assert (await ws.receive(5)).data == "echo hi"
            with pytest.raises(aiohttp.ClientError):  # plain http to a TLS port gets nowhere
                async with http.get(f"http://127.0.0.1:{server.port}/healthz",
                                    timeout=aiohttp.ClientTimeout(total=5)) as response:
                    await response.read()
    finally:
        await server.stop()
