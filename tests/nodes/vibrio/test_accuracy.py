"""Accuracy against synthetic ground truth, pooled over every seed of each scene kind (no chosen seeds).

Rendered people on known paths at known speeds (flowgraph.nodes.synth), seen through a mild barrel lens the
estimator does not model, with calibration points clicked to within pixel noise — so neither the picture nor the
calibration is exact by construction. One target per scene kind; speed is always asserted. The figures the README
quotes are the ones printed here (run with ``-s``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from flowgraph.nodes.synth import SceneConfig
from flowgraph.nodes.synth.people import Appearance, Walker

from .synth_eval import SceneScore, evaluate

LENS_K1 = -0.06  # mild barrel distortion (wide sports lens): corners move ≈ 8 px at 640×360
CLICK_NOISE_PX = 1.5  # σ of the calibration points' image positions, as a person clicks them
SEEDS = (1, 2, 3)
FRAMES = 160


def sparse(seed: int) -> SceneConfig:
    return SceneConfig(width=640, height=360, people=3, seed=seed, lens_k1=LENS_K1)


def crowd(seed: int) -> SceneConfig:
    return SceneConfig(width=640, height=360, people=8, seed=seed, lens_k1=LENS_K1)


def crossing(seed: int) -> SceneConfig:
    """A walker and a runner whose paths cross mid-picture (they overlap in the image for a few frames), and a
    third person walking the other way behind them; speeds and depths drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    y, drift = rng.uniform(9.0, 12.0), rng.uniform(0.5, 2.0)
    people = (
        Walker.scripted([(-6.0, y), (6.0, y + drift)], rng.uniform(1.2, 1.7), gait="walk", person_id=1,
                        appearance=Appearance.random(rng, running=False)),
        Walker.scripted([(6.0, y + 0.3), (-6.0, y + drift)], rng.uniform(3.0, 4.2), gait="run", person_id=2,
                        start_s=rng.uniform(0.5, 1.5), appearance=Appearance.random(rng, running=True)),
        Walker.scripted([(6.0, y + 4.0), (-6.0, y + 4.0)], rng.uniform(1.1, 1.6), gait="walk", person_id=3,
                        appearance=Appearance.random(rng, running=False)),
    )
    return SceneConfig(width=640, height=360, seed=seed, walkers=people, lens_k1=LENS_K1)


@dataclass(frozen=True)
class Target:
    mota: float
    switches_per_1000: float
    speed_error: float


#: One target per kind. Speed: the platform's goal (≤ 5 % median error) where the motion backend meets it, a
#: regression guard in crowds (measured 6.3 %). MOTA and switches: regression guards a little under what was
#: measured (2026-12-05: sparse 0.761 / 3.4, crossing 0.778 / 5.4, crowd 0.530 / 8.2 per 1,000) — the goal of
#: ≤ 1 switch per 1,000 track-frames is missed on every kind, and the README says so.
KINDS: dict[str, tuple[Callable[[int], SceneConfig], Target]] = {
    "sparse": (sparse, Target(mota=0.72, switches_per_1000=6.0, speed_error=0.05)),
    "crossing": (crossing, Target(mota=0.74, switches_per_1000=8.0, speed_error=0.05)),
    "crowd": (crowd, Target(mota=0.48, switches_per_1000=12.0, speed_error=0.08)),
}


@dataclass(frozen=True)
class Pooled:
    """MOT counts summed over sequences (MOTA = 1 − (misses + false positives + switches) / objects)."""

    objects: int
    misses: int
    false_positives: int
    switches: int
    speed_errors: tuple[float, ...]

    @classmethod
    def of(cls, scores: list[SceneScore]) -> Pooled:
        def total(key: str) -> int:
            return int(sum(s.metrics[key] for s in scores))

        return cls(total("num_objects"), total("num_misses"), total("num_false_positives"), total("num_switches"),
                   tuple(e for s in scores for e in s.speed_errors))

    @property
    def mota(self) -> float:
        return 1.0 - (self.misses + self.false_positives + self.switches) / self.objects

    @property
    def recall(self) -> float:
        return 1.0 - self.misses / self.objects

    @property
    def precision(self) -> float:
        found = self.objects - self.misses
        return found / (found + self.false_positives)

    @property
    def switches_per_1000(self) -> float:
        return 1000.0 * self.switches / self.objects

    @property
    def speed_error(self) -> float:
        return float(np.median(self.speed_errors))

    def line(self) -> str:
        return (f"MOTA {self.mota:.3f}, recall {self.recall:.3f}, precision {self.precision:.3f}, "
                f"{self.switches} id switches / {self.objects} track-frames ({self.switches_per_1000:.1f} per 1,000), "
                f"median speed error {self.speed_error:.1%} (n={len(self.speed_errors)})")


@pytest.mark.timeout(1200)  # ≈ 15 s each on an idle 2-core machine; minutes when it is shared
@pytest.mark.parametrize("kind", list(KINDS))
def test_motion_backend_pooled_over_seeds(kind: str) -> None:
    make, target = KINDS[kind]
    scores = []
    for seed in SEEDS:
        score = evaluate(make(seed), {"backend": "motion"}, FRAMES, calibration_noise_px=CLICK_NOISE_PX)
        print(f"\nmotion 640x360 {kind} seed {seed}: {score.line()}")
        scores.append(score)
    pooled = Pooled.of(scores)
    print(f"pooled {kind} (seeds {SEEDS}, lens k1 {LENS_K1}, calibration noise {CLICK_NOISE_PX} px): {pooled.line()}")
    assert pooled.objects >= 600
    assert len(pooled.speed_errors) >= 50, "too few matched people with a speed to judge speed by"
    assert pooled.mota >= target.mota
    assert pooled.switches_per_1000 <= target.switches_per_1000
    assert pooled.speed_error <= target.speed_error
