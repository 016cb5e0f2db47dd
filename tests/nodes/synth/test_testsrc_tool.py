"""tools/testsrc.py: the CLI writes an H.264 mp4 and one ground-truth record per frame that match each other."""

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av

from flowgraph.nodes.synth.stamp import read_stamp

ROOT = Path(__file__).resolve().parents[3]


def test_cli_writes_mp4_and_matching_truth(tmp_path: Path) -> None:
    out = tmp_path / "scene.mp4"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "testsrc.py"), "--width", "640", "--height", "360",
                           "--fps", "25", "--seconds", "1.2", "--people", "3", "--seed", "4", "--t0-ms",
                           "1700000000000", "--bitrate", "1000000", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "scene.json").read_text())
    assert doc["width"] == 640 and doc["fps"] == 25 and len(doc["calibration"]) >= 4
    frames = doc["frames"]
    assert len(frames) == 30
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        decoded = list(container.decode(video=0))
    assert len(decoded) == 30
    for i, (frame, record) in enumerate(zip(decoded, frames, strict=True)):
        assert record["frame_id"] == i and record["t_capture_ms"] == 1_700_000_000_000 + i * 40
        assert frame.pts * frame.time_base == Fraction(i, 25)
        assert read_stamp(frame.to_ndarray(format="rgb24")) == (i, record["t_capture_ms"])
    assert any(record["people"] for record in frames)


def test_cli_rejects_bad_values(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "testsrc.py"), "--people", "-1", "--out",
                           str(tmp_path / "x.mp4")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "people must be" in proc.stderr
