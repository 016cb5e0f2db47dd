"""Run vibrio over a rendered synthetic scene and score it against the scene's ground truth."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import motmetrics as mm
import numpy as np

from flowgraph.messages import VideoFrame
from flowgraph.node import NodeContext
from flowgraph.nodes.synth import Scene, SceneConfig
from flowgraph.nodes.vibrio.node import Vibrio
from flowgraph.params import validate

from .boxworld import iou_distance, summary


@dataclass
class SceneScore:
    metrics: dict[str, float]
    speed_errors: list[float] = field(default_factory=list)
    foot_errors_m: list[float] = field(default_factory=list)
    heading_errors: list[float] = field(default_factory=list)
    process_ms: list[float] = field(default_factory=list)

    @property
    def median_speed_error(self) -> float:
        return float(np.median(self.speed_errors)) if self.speed_errors else float("nan")

    def line(self) -> str:
        m = self.metrics
        return (f"MOTA={m['mota']:.3f} IDF1={m['idf1']:.3f} switches={m['num_switches']:.0f}/"
                f"{m['num_objects']:.0f} track-frames, precision={m['precision']:.3f} recall={m['recall']:.3f}, "
                f"median speed error={self.median_speed_error:.1%} (n={len(self.speed_errors)}), "
                f"median foot error={np.median(self.foot_errors_m) if self.foot_errors_m else float('nan'):.2f} m, "
                f"median heading error={np.median(self.heading_errors) if self.heading_errors else float('nan'):.1f}°, "
                f"median {np.median(self.process_ms):.1f} ms/frame")


def make_node(params: dict[str, Any]) -> Vibrio:
    node = Vibrio(NodeContext("vibrio"), validate(Vibrio.Params, params))
    asyncio.run(node.start())
    return node


def evaluate(config: SceneConfig, params: dict[str, Any], frames: int, *, start: int = 0, min_visible: float = 0.5,
             calibrated: bool = True, min_confidence: float = 0.5, calibration_noise_px: float = 0.0) -> SceneScore:
    """Analyse ``frames`` rendered frames; MOT metrics over people at least ``min_visible`` visible.

    The calibration points are the scene's own (exact unless the scene has a lens), or with
    ``calibration_noise_px`` as a person would click them (Gaussian pixel noise, seeded by the scene's seed)."""
    scene = Scene(config)
    params = dict(params)
    if calibrated:
        params["calibration"] = (scene.measured_calibration(calibration_noise_px, seed=config.seed)
                                 if calibration_noise_px else scene.calibration)
    node = make_node(params)
    acc = mm.MOTAccumulator(auto_id=True)
    score = SceneScore({})
    fps = config.fps
    for index in range(start, start + frames):
        image, truth = scene.render(index)
        frame = VideoFrame(image=image, frame_id=index, pts=index, time_base=None, t_capture=index / fps)
        result = node.process(frame)
        score.process_ms.append(result.process_ms)
        people = [p for p in truth.people if p.visible_fraction >= min_visible]
        gt_boxes = np.array([p.bbox for p in people]).reshape(-1, 4)
        hyp_boxes = np.array([t.bbox for t in result.tracks]).reshape(-1, 4)
        distance = iou_distance(gt_boxes, hyp_boxes)
        acc.update([p.person_id for p in people], [t.track_id for t in result.tracks], distance)
        for gi, hi in zip(*np.where(np.isfinite(distance)), strict=True):
            person, track = people[gi], result.tracks[hi]
            if distance[gi, hi] > 0.5 or np.nanmin(distance[gi]) < distance[gi, hi]:
                continue
            if track.foot_world is not None:
                score.foot_errors_m.append(float(np.hypot(track.foot_world[0] - person.foot_world[0],
                                                          track.foot_world[1] - person.foot_world[1])))
            if track.speed_mps is not None and track.confidence >= min_confidence and person.speed_mps > 0.5:
                score.speed_errors.append(abs(track.speed_mps - person.speed_mps) / person.speed_mps)
                if track.heading_deg is not None:
                    diff = (track.heading_deg - person.heading_deg + 180) % 360 - 180
                    score.heading_errors.append(abs(diff))
    score.metrics = summary(acc)
    return score
