"""One-Euro filter and the scipy helpers used on gait histories."""

from __future__ import annotations

import numpy as np

from flowgraph.nodes.moriarty.smoothing import OneEuro, derivative, resample_uniform, smooth_series


def test_one_euro_calms_a_still_joint_and_follows_a_moving_one() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1.0, (120, 2))  # raw jitter: 1 px
    for beta, most in ((0.3, 0.7), (0.05, 0.45)):  # the node's default, and a calmer setting
        f = OneEuro(min_cutoff=1.5, beta=beta)
        still = [f(i / 30, np.array([100.0, 200.0]) + noise[i]) for i in range(120)]
        assert np.all(np.std(np.array(still[30:]), axis=0) < most), beta
    f = OneEuro(min_cutoff=1.5, beta=0.3)
    f.reset()
    moving = [f(i / 30, np.array([10.0 * i, 0.0]))[0] for i in range(60)]
    assert abs(moving[-1] - 590) < 10  # 300 px/s: lag stays small once speed opens the cut-off


def test_one_euro_restarts_a_joint_that_reappears() -> None:
    f = OneEuro()
    f(0.0, np.array([0.0, 0.0]))
    gone = f(1 / 30, np.array([np.nan, 5.0]))
    assert np.isnan(gone[0]) and np.isfinite(gone[1])
    back = f(2 / 30, np.array([500.0, 5.0]))
    assert back[0] == 500.0  # taken as measured, not pulled towards where it was before it vanished


def test_resample_uniform_handles_drops_and_nans() -> None:
    t = np.array([0.0, 0.1, 0.3, 0.4])
    v = np.array([[0.0], [1.0], [np.nan], [4.0]])
    grid, out = resample_uniform(t, v, 10.0)
    assert np.allclose(grid, [0.0, 0.1, 0.2, 0.3, 0.4])
    assert np.allclose(out[:, 0], [0.0, 1.0, 2.0, 3.0, 4.0])


def test_smooth_series_and_derivative() -> None:
    rate = 30.0
    t = np.arange(0, 4, 1 / rate)
    clean = np.sin(2 * np.pi * 1.0 * t)
    noisy = clean + np.random.default_rng(1).normal(0, 0.05, len(t))
    for method in ("butter", "savgol"):
        smooth = smooth_series(noisy, rate, 4.0, method)
        assert np.abs(smooth - clean)[10:-10].mean() < 0.03
    velocity = derivative(clean, rate)
    assert np.abs(velocity - 2 * np.pi * np.cos(2 * np.pi * t))[2:-2].max() < 0.1
