"""The stream registry's report throttle: at most once per interval per stream, unless forced."""

from __future__ import annotations

import time

from flowgraph.streams import ReportThrottle


def test_report_throttle_is_per_stream_and_can_be_forced() -> None:
    throttle = ReportThrottle(every=0.2)
    assert throttle.due("a") and throttle.due("b"), "a stream's first report is always due"
    assert not throttle.due("a") and not throttle.due("b")
    assert throttle.due("a", force=True) and not throttle.due("a")
    time.sleep(0.25)
    assert throttle.due("a") and not throttle.due("a")
