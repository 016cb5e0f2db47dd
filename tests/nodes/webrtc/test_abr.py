"""The document's bitrate controller and the rendition choice."""

from __future__ import annotations

from flowgraph.nodes.webrtc.abr import AbrController, AbrPolicy

LADDER = {"1080p": 6_000_000.0, "720p": 3_000_000.0, "360p": 800_000.0}


def test_latency_factor_and_bandwidth_factor_and_clamps() -> None:
    c = AbrController(AbrPolicy(target_latency_ms=100), initial_bps=2_000_000)
    # latency fine, bandwidth equal to the target: grow by 1.2
    assert c.update(available_bps=2_000_000, latency_ms=50) == 2_400_000
    # latency too high: 0.8 x available
    assert round(c.update(available_bps=1_000_000, latency_ms=300)) == 800_000
    # clamps
    assert c.update(available_bps=100_000, latency_ms=500) == 500_000
    assert c.update(available_bps=50_000_000, latency_ms=10) == 10_000_000


def test_loss_without_remb_steps_down() -> None:
    c = AbrController(initial_bps=3_000_000)
    assert c.update(available_bps=None, latency_ms=None, loss=0.2) < 3_000_000


def test_choice_goes_down_at_once_and_up_only_after_agreeing_updates() -> None:
    c = AbrController(AbrPolicy(up_after=3), initial_bps=3_500_000)
    assert c.choose(LADDER, None) == "720p"
    c.target_bps = 1_000_000
    assert c.choose(LADDER, "720p") == "360p"
    c.target_bps = 7_000_000
    assert [c.choose(LADDER, "360p") for _ in range(2)] == ["360p", "360p"]
    assert c.choose(LADDER, "360p") == "1080p"
    c.target_bps = 100_000
    assert c.choose(LADDER, "1080p") == "360p", "below every rendition: the lowest"
