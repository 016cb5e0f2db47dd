"""A headless Chromium driven over the DevTools protocol (no downloads, no chromedriver): for the latency probe,
benchmarks and end-to-end tests.

    async with Chromium() as browser:
        page = await browser.open("http://127.0.0.1:8080/", width=390, height=844, mobile=True)
        frames = await page.eval("window.fg.frames")
        await page.screenshot("viewer.png")
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

CHROMIUM = os.environ.get("FLOWGRAPH_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-default-apps", "--mute-audio", "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows",
]


class BrowserError(RuntimeError):
    """Chromium did not start, or a DevTools command failed."""


class Page:
    """One tab: evaluate JavaScript, take screenshots."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, target_id: str, browser: Chromium) -> None:
        self._ws = ws
        self.target_id = target_id
        self._browser = browser
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader = asyncio.create_task(self._read())
        self.console: list[str] = []

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            waiter = self._pending.pop(data.get("id", -1), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(data)
            elif data.get("method") == "Runtime.consoleAPICalled" and len(self.console) < 1000:
                args = data["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(BrowserError("page connection closed"))

    async def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        msg_id = next(self._ids)
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = waiter
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        data = await asyncio.wait_for(waiter, timeout)
        if "error" in data:
            raise BrowserError(f"{method}: {data['error'].get('message')}")
        return data.get("result", {})

    async def eval(self, expression: str, timeout: float = 30.0) -> Any:
        """Evaluate JavaScript (promises awaited) and return its JSON value."""
        result = await self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                      "returnByValue": True}, timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"JavaScript error: {details.get('exception', {}).get('description') or details}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0, interval: float = 0.05) -> Any:
        """Poll ``expression`` until it is truthy; returns its value or raises ``TimeoutError``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.eval(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"still false after {timeout}s: {expression}")
            await asyncio.sleep(interval)

    async def screenshot(self, path: str | Path) -> Path:
        result = await self.send("Page.captureScreenshot", {"format": "png"})
        out = Path(path)
        await asyncio.to_thread(out.write_bytes, base64.b64decode(result["data"]))
        return out

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._browser._http.get(f"{self._browser.endpoint}/json/close/{self.target_id}")
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Chromium:
    """A headless Chromium process with its own temporary profile; stopped (by its pid) on exit."""

    def __init__(self, extra_flags: list[str] | None = None) -> None:
        self.extra_flags = extra_flags or []
        self.process: asyncio.subprocess.Process | None = None
        self.profile = ""
        self.endpoint = ""
        self._http: aiohttp.ClientSession = None  # type: ignore[assignment]
        self.pages: list[Page] = []

    async def __aenter__(self) -> Chromium:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self, timeout: float = 20.0) -> None:
        if not shutil.which(CHROMIUM):
            raise BrowserError(f"no Chromium at {CHROMIUM} (set FLOWGRAPH_CHROMIUM)")
        self.profile = tempfile.mkdtemp(prefix="fg-chromium-")
        args = [*FLAGS, *self.extra_flags, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
                "about:blank"]
        self.process = await asyncio.create_subprocess_exec(
            CHROMIUM, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = asyncio.get_running_loop().time() + timeout
        while not await asyncio.to_thread(_port_written, port_file):
            if self.process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                await self.stop()
                raise BrowserError("Chromium did not open its DevTools port")
            await asyncio.sleep(0.05)
        port = (await asyncio.to_thread(port_file.read_text)).splitlines()[0]
        self.endpoint = f"http://127.0.0.1:{port}"
        self._http = aiohttp.ClientSession()

    async def open(self, url: str, *, width: int = 1280, height: int = 800, mobile: bool = False,
                   scale: float = 1.0) -> Page:
        """Open ``url`` in a new tab of the given viewport size (``mobile`` emulates a phone)."""
        async with self._http.put(f"{self.endpoint}/json/new?about:blank") as resp:
            target = await resp.json()
        ws = await self._http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=64 << 20)
        page = Page(ws, target["id"], self)
        self.pages.append(page)
        await page.send("Runtime.enable")
        await page.send("Page.enable")
        await page.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                              "deviceScaleFactor": scale, "mobile": mobile})
        await page.send("Page.navigate", {"url": url})
        return page

    async def stop(self) -> None:
        for page in self.pages:
            with contextlib.suppress(Exception):
                await page.close()
        self.pages.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None  # type: ignore[assignment]
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)  # its own session: renderers and helpers too
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        self.process = None
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = ""


def _port_written(path: Path) -> bool:
    return path.exists() and bool(path.read_text().strip())
