"""Fixtures for the media nodes: sample files made by the real ffmpeg CLI, ffmpeg publishers, loopback ICE."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import FFMPEG, SIZE, Processes


def _make(out: Path, *args: str) -> Path:
    subprocess.run([*FFMPEG, *args, str(out)], check=True, timeout=120)
    return out


def _video(seconds: float = 2.0, rate: int = 30) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate={rate}:duration={seconds}"]


X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p"]


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Sample media (2 s of 320x240 at 30 fps = 60 frames unless noted), made once per session."""
    d = tmp_path_factory.mktemp("media")
    audio = ["-f", "lavfi", "-i", "sine=frequency=440:duration=2"]
    files = {
        # mp4 with B-frames and an AAC audio track, moov at the front (faststart)
        "mp4": _make(d / "h264_aac.mp4", *_video(), *audio, *X264, "-bf", "2", "-c:a", "aac", "-movflags",
                     "+faststart", "-shortest"),
        "mkv": _make(d / "h264.mkv", *_video(), *X264),
        "flv": _make(d / "h264.flv", *_video(), *audio, *X264, "-c:a", "aac", "-shortest"),
        "avi": _make(d / "h264.avi", *_video(), *X264),
        "ts": _make(d / "h264.ts", *_video(), *X264),
        "vp8": _make(d / "vp8.webm", *_video(1.0), "-c:v", "libvpx", "-b:v", "300k", "-deadline", "realtime"),
        "hevc": _make(d / "hevc.mp4", *_video(1.0), "-c:v", "libx265", "-preset", "ultrafast",
                      "-x265-params", "log-level=error"),
        "moov_at_end": _make(d / "moov_at_end.mp4", *_video(), *X264),
        "ts_4s": _make(d / "h264_4s.ts", *_video(4.0), *X264),
    }
    files["truncated_mp4"] = _truncate(files["mp4"], d / "truncated.mp4", 0.6)
    files["truncated_flv"] = _truncate(files["flv"], d / "truncated.flv", 0.5)
    files["truncated_moov_at_end"] = _truncate(files["moov_at_end"], d / "truncated_noindex.mp4", 0.7)
    files["corrupt_ts"] = _corrupt(files["ts_4s"], d / "corrupt.ts")
    return files


def _truncate(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def _corrupt(src: Path, dst: Path) -> Path:
    """Garbage over a stretch of the middle of the file (whole TS packets, so the demuxer survives)."""
    data = bytearray(src.read_bytes())
    start = (len(data) // 2) // 188 * 188
    for i in range(start, start + 188 * 40):
        if i % 188 > 4:  # keep the TS packet headers, trash the payload
            data[i] = (data[i] * 31 + 7) & 0xFF
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture
def procs() -> Iterator[Processes]:
    p = Processes()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice leaves 127.0.0.1 out of its host candidates; loopback tests need only it."""
    import aioice.ice

    def loopback_only(use_ipv4: bool = True, use_ipv6: bool = False) -> list[str]:
        return ["127.0.0.1"]

    monkeypatch.setattr(aioice.ice, "get_host_addresses", loopback_only)
