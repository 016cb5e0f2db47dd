"""Helpers for the media tests: ffprobe, ffmpeg publishers and other subprocesses, polling."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

FFMPEG = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
SIZE = "320x240"


def probe_frames(path: Path | str) -> dict[str, object]:
    """ffprobe's count of decodable video frames, codec and size."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=codec_name,width,height,nb_read_frames", "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=60)
    streams = json.loads(out.stdout or "{}").get("streams") or [{}]
    return dict(streams[0])


class Processes:
    """Subprocesses a test starts; every one is killed by its PID afterwards."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def publish_rtmp(self, url: str, seconds: float = 10.0, *, codec: list[str] | None = None, audio: bool = False,
                     rate: int = 30, gop: int = 15) -> subprocess.Popen[bytes]:
        """The real ffmpeg CLI pushing a live test pattern to ``url`` (paced with -re)."""
        args = [*FFMPEG, "-re", "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate={rate}:duration={seconds}"]
        if audio:
            args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac"]
        args += codec or ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(gop),
                          "-pix_fmt", "yuv420p"]
        return self.start([*args, "-f", "flv", url])

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, sig)
        proc.wait(timeout=10)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            if proc.stderr is not None:
                proc.stderr.close()


async def wait_for(predicate: Callable[[], object], timeout: float = 10.0, step: float = 0.02) -> bool:
    """Poll ``predicate`` on the event loop until it is truthy or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return bool(predicate())


def ingest_graph(params: dict[str, object], *, decode: dict[str, object] | None = None, on_error: str = "stop",
                 extra: str = "") -> str:
    """YAML: ``src`` (ingest with ``params``) → ``packets`` (collect) and ``src`` → ``dec`` (decode) → ``frames``,
    every edge lossless (files are read faster than real time)."""
    dec_params = json.dumps(decode or {})
    return f"""
name: media-test
nodes:
  src: {{node: ingest, on_error: {on_error}, params: {json.dumps(params)}}}
  dec: {{node: decode, inputs: {{packets: {{from: src/packets, policy: block}}}}, params: {dec_params}}}
  packets: {{node: collect, inputs: {{inp: {{from: src/packets, policy: block}}}}}}
  frames: {{node: collect, inputs: {{inp: {{from: dec/frames, policy: block}}}}}}
{extra}"""
