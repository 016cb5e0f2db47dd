"""Biomechanics on flowgraph.nodes.synth's ground truth: its people, its angles, cadence and stride.

synth's keypoints (with 1 px of noise added here, and its own visibility flags as scores) go through the same
per-person history the node uses; the answers are compared with synth's truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from flowgraph.nodes.moriarty.biomech import MotionConfig, PersonMotion
from flowgraph.nodes.moriarty.skeleton import BLAZEPOSE33, gate


@pytest.mark.parametrize("gait", ["walk", "run"])
def test_synth_people(gait: str) -> None:
    from flowgraph.nodes.synth import Scene, SceneConfig

    scene = Scene(SceneConfig(people=2, seed=5, gait=gait, paths="line", speed_variation=0.0, min_person_px=250))
    rng = np.random.default_rng(0)
    motions: dict[int, PersonMotion] = {}
    angle_errors: list[float] = []
    last: dict[int, tuple[dict, object]] = {}
    for i in range(240):
        truth = scene.truth(i)
        for person in truth.people:
            motion = motions.setdefault(person.person_id, PersonMotion(BLAZEPOSE33, MotionConfig()))
            kps = np.array([(*person.keypoints[n][:2], 0.99 if person.keypoints[n][2] else 0.0)
                            for n in BLAZEPOSE33.names])
            kps[:, :2] += rng.normal(0, 1.0, (33, 2))
            _, angles, metrics = motion.update(truth.time_s, gate(kps, 0.5), person.foot_world)
            if i >= 10:
                angle_errors += [abs(angles[k] - v) for k, v in person.joint_angles.items()
                                 if v is not None and angles.get(k) is not None]
            last[person.person_id] = (metrics, person)
    assert np.mean(angle_errors) <= 3.0, np.mean(angle_errors)
    measured = [(m["cadence_spm"], p.cadence_spm, m["stride_length_m"], p.stride_length_m)  # type: ignore[attr-defined]
                for m, p in last.values() if m["cadence_spm"] is not None]
    assert len(measured) >= 2  # people who stayed long enough for several strides
    for cadence, true_cadence, stride, true_stride in measured:
        assert abs(cadence - true_cadence) / true_cadence <= 0.02
        assert stride is not None and abs(stride - true_stride) / true_stride <= 0.03
    print(f"synth {gait}: angle error mean {np.mean(angle_errors):.2f} deg, (cadence, truth, stride m, truth):",
          [tuple(round(v, 3) for v in row) for row in measured])
