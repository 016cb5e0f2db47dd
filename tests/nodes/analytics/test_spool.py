"""Spool: segments in order, bounded (counted loss), picked up by the next run, torn lines ignored; records."""

from __future__ import annotations

from pathlib import Path

from flowgraph.messages import Analytics
from flowgraph.nodes.analytics.records import Record, decode_lines, encode_lines, record_of, wire
from flowgraph.nodes.analytics.spool import Spool


def records(start: int, n: int) -> list[Record]:
    return [Record(f"r-{i}", "cam", 1000.0 + i, "speed", i, i + 1, 3, f'{{"frame_id":{i}}}')
            for i in range(start, start + n)]


def test_segments_come_back_in_order_and_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.open()
    for start in (0, 10, 20):
        segment = spool.reserve(10, 1000)
        assert segment is not None
        spool.settle(segment, spool.write(segment, records(start, 10)))
    assert spool.records() == 30 and spool.bytes == sum(p.stat().st_size for p in (tmp_path / "spool").iterdir())
    seen = []
    while spool.segments:
        segment = spool.segments[0]
        seen.extend(r.frame_id for r in spool.read(segment))
        spool.release(segment)
        spool.delete(segment)
    assert seen == list(range(30))
    assert spool.empty() and spool.bytes == 0 and not list((tmp_path / "spool").iterdir())
    assert spool.stats()["replayed"] == 30 and spool.stats()["lost"] == 0


def test_a_full_spool_refuses_and_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=2500)
    spool.open()
    assert spool.reserve(10, 2000) is not None
    assert spool.reserve(10, 2000) is None
    assert spool.lost == 10 and spool.spooled == 10


def test_the_next_run_picks_up_what_was_left(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.open()
    for start in (0, 5):
        segment = first.reserve(5, 500)
        assert segment is not None
        first.write(segment, records(start, 5))
    (tmp_path / "000000000099.tmp").write_bytes(b"half a segm")  # a crash mid-write leaves a .tmp: ignored
    second = Spool(tmp_path)
    second.open()
    assert [s.count for s in second.segments] == [5, 5] and not list(tmp_path.glob("*.tmp"))
    assert [r.frame_id for r in second.read(second.segments[0])] == list(range(5))
    segment = second.reserve(1, 100)
    assert segment is not None and segment.number == 3


def test_torn_lines_are_skipped() -> None:
    data = encode_lines(records(0, 3))
    assert [r.frame_id for r in decode_lines(data[:-10])] == [0, 1]


def test_record_of_a_message_and_back() -> None:
    msg = Analytics(type="speed", stream_id="cam", frame_id=7, seq=12,
                    payload={"timestamp": 1234.5, "track_id": 4, "speed_kmh": 20.0})
    record = record_of(msg, "run-1")
    assert (record.ts, record.track_id, record.seq, record.frame_id) == (1234.5, 4, 12, 7)
    assert wire(record.type, record.seq, record.payload) == {"type": "speed", "seq": 12, "payload": msg.payload}
    no_track = record_of(Analytics(type="detection", payload={"track_id": True}), "run-2")
    assert no_track.track_id is None and no_track.ts > 0
