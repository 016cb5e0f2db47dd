"""Write a scene to an H.264 mp4 (PyAV, libx264) and its ground truth to JSON, frame by frame.

The JSON document: ``{"config": {...}, "fps", "width", "height", "calibration": [...], "image_to_world": 3x3,
"frames": [FrameTruth.to_dict(), ...]}`` — one record per video frame, in order; frame ``i`` has pts ``i`` in
time base ``1/fps`` in the mp4.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from fractions import Fraction
from typing import Any

from .scene import Scene


def scene_header(scene: Scene) -> dict[str, Any]:
    """Config, calibration and homography of a scene, JSON-ready."""
    cfg = asdict(scene.config)
    cfg.pop("walkers", None)
    return {"config": cfg, "fps": scene.config.fps, "width": scene.config.width, "height": scene.config.height,
            "calibration": scene.calibration, "image_to_world": scene.image_to_world.tolist()}


def write_video(scene: Scene, mp4_path: str, frames: int, *, truth_path: str | None = None,
                bitrate: int = 2_000_000, gop: int | None = None, preset: str = "veryfast") -> str:
    """Render ``frames`` frames into ``mp4_path`` and the ground truth into ``truth_path``; returns that path."""
    import av

    truth_path = truth_path or os.path.splitext(mp4_path)[0] + ".json"
    cfg = scene.config
    rate = Fraction(cfg.fps).limit_denominator(1001)
    records = []
    buffer = None
    with av.open(mp4_path, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = cfg.width, cfg.height, "yuv420p"
        stream.bit_rate = bitrate
        # Low-latency settings as a live source would use them: no B-frames, fixed GOP.
        stream.options = {"preset": preset, "tune": "zerolatency", "bf": "0",
                          "g": str(gop or max(1, round(cfg.fps)))}
        for i in range(frames):
            buffer, truth = scene.render(i, out=buffer)
            frame = av.VideoFrame.from_ndarray(buffer, format="rgb24")
            frame.pts = i  # in the encoder's time base, 1/fps
            for packet in stream.encode(frame):
                container.mux(packet)
            records.append(truth.to_dict())
        for packet in stream.encode():
            container.mux(packet)
    doc = scene_header(scene) | {"frames": records}
    with open(truth_path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    return truth_path
