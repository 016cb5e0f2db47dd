"""The record node: a killed process still leaves a playable file; recordings start at a keyframe; segments."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowgraph.nodes.media.testsrc import TestSource, TestSrcConfig
from flowgraph.testing import run_to_end

from .helpers import Processes, probe_frames


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_killed_process_leaves_a_playable_file(tmp_path: Path, procs: Processes, ext: str) -> None:
    out = tmp_path / f"rec.{ext}"
    graph = tmp_path / "record.yaml"
    graph.write_text(f"""
name: rec
nodes:
  src: {{node: ingest, params: {{url: "testsrc://", width: 320, height: 240, fps: 30, gop: 15, people: 0}}}}
  rec: {{node: record, inputs: {{packets: src/packets}}, params: {{path: "{out}", fragment_s: 0.5}}}}
""")
    proc = procs.start([sys.executable, "-m", "flowgraph.cli", "run", str(graph)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 60_000):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.1)
    time.sleep(2.0)  # ≥ 60 more frames at 30 fps: several 0.5 s fragments flushed after the first 60 kB
    os.kill(proc.pid, signal.SIGKILL)  # no chance to finish the file
    proc.wait(timeout=10)
    info = probe_frames(out)
    assert info["codec_name"] == "h264" and (info["width"], info["height"]) == (320, 240)
    assert int(str(info["nb_read_frames"])) >= 30
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True,
                             text=True, timeout=60)
    assert decoded.returncode == 0


def _packets(count: int) -> list[object]:
    source = TestSource("cam", TestSrcConfig(width=160, height=120, fps=30, gop=10, people=0, count=count,
                                             realtime=False, stamp=False))
    return list(source.packets())


async def test_recording_starts_at_a_keyframe_and_closes_cleanly(tmp_path: Path) -> None:
    from flowgraph.node import NodeContext
    from flowgraph.nodes.media.record import Record
    from flowgraph.params import validate

    node = Record(NodeContext(name="rec"), validate(Record.Params, {"path": str(tmp_path / "{stream_id}.mp4")}))
    await node.start()
    for packet in _packets(40)[4:]:  # joins mid-GOP: packets 4..9 are useless without their keyframe
        node.process(packet)  # type: ignore[arg-type]
    counters = node.counters()
    await node.flush()
    assert counters["skipped"] == 6 and counters["packets"] == 30 and counters["files"] == 1
    assert int(str(probe_frames(tmp_path / "cam.mp4")["nb_read_frames"])) == 30


def _segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.mkv"))


async def test_segments_rotate_at_keyframes(tmp_path: Path) -> None:
    text = f"""
name: seg
nodes:
  src: {{node: ingest, params: {{url: "testsrc://", width: 160, height: 120, fps: 30, gop: 10, people: 0,
                                count: 75}}}}
  rec: {{node: record, inputs: {{packets: src/packets}},
        params: {{path: "{tmp_path}/part-{{index}}.mkv", segment_s: 1.0}}}}
"""
    rt = await run_to_end(text)
    files = _segments(tmp_path)
    assert rt.exit_code == 0 and len(files) >= 2
    counts = [int(str(probe_frames(f)["nb_read_frames"])) for f in files]
    assert sum(counts) == 75 and all(c % 10 == 0 or f == files[-1] for c, f in zip(counts, files, strict=True))
    report = rt.scope.streams.get("default")["record"]
    assert report["path"] == str(files[-1]) and report["state"] == "closed"
