"""A bounded on-disk spool: batches wait here, in order, while the store's backend is down.

Each batch is one segment file ``<n>.jsonl`` (written to ``<n>.tmp``, fsynced, renamed: a crash never leaves a
half segment under a real name). Segments are replayed oldest first and deleted once the backend has them. A
spool left by a previous run is picked up at start. When ``max_bytes`` would be exceeded the batch is refused
and its records are counted as lost; so are the records of a segment the disk refuses (full, I/O error) — the
only ways the store loses data.

File work is blocking: the store runs these methods in its worker thread (``Node.offload``), which also
serialises them (a segment is always completely written before anything reads it). The index (``segments``)
is only changed on the event loop.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .records import Record, decode_lines, encode_lines


@dataclass(slots=True)
class Segment:
    number: int
    path: Path
    count: int
    size: int = 0


class Spool:
    def __init__(self, directory: str | Path, max_bytes: int = 256 << 20, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.segments: deque[Segment] = deque()
        self.bytes = 0
        self._next = 1
        self.spooled = 0  # records written to the spool
        self.replayed = 0  # records taken back out and delivered
        self.lost = 0  # records refused because the spool was full

    # -- event-loop side --------------------------------------------------------------------------------------
    def empty(self) -> bool:
        return not self.segments

    def records(self) -> int:
        return sum(s.count for s in self.segments)

    def reserve(self, count: int, size: int) -> Segment | None:
        """Claim the next segment for a batch of ``count`` records (about ``size`` bytes); None when the spool is
        full (the records are then counted lost)."""
        if self.bytes + size > self.max_bytes:
            self.lost += count
            return None
        segment = Segment(self._next, self.directory / f"{self._next:012d}.jsonl", count, size)
        self._next += 1
        self.segments.append(segment)
        self.bytes += size
        self.spooled += count
        return segment

    def settle(self, segment: Segment, size: int) -> None:
        """Replace a segment's estimated size by its real one."""
        self.bytes += size - segment.size
        segment.size = size

    def release(self, segment: Segment) -> None:
        """The backend has this segment's records: forget it (delete the file with :meth:`delete`)."""
        if self.segments and self.segments[0] is segment:
            self.segments.popleft()
        else:
            self.segments.remove(segment)
        self.bytes -= segment.size
        self.replayed += segment.count

    def abandon(self, segment: Segment) -> None:
        """A reserved segment could not be written (disk full, I/O error): forget it, count its records lost."""
        with_segment = segment in self.segments
        if with_segment:
            self.segments.remove(segment)
            self.bytes -= segment.size
            self.spooled -= segment.count
        self.lost += segment.count

    def shrink(self, segment: Segment, count: int, size: int) -> None:
        """Part of a segment was delivered (or rejected) and the segment rewritten with the other ``count``."""
        self.replayed += segment.count - count
        segment.count = count
        self.settle(segment, size)

    def stats(self) -> dict[str, int]:
        return {"spool_segments": len(self.segments), "spool_bytes": self.bytes, "spooled": self.spooled,
                "replayed": self.replayed, "lost": self.lost}

    # -- worker-thread side (blocking file I/O) ---------------------------------------------------------------
    def open(self) -> None:
        """Create the directory and index the segments a previous run left (oldest first)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segments.clear()  # (re)built from the files: a restarted node opens its spool again
        self.bytes = 0
        for stale in self.directory.glob("*.tmp"):
            stale.unlink(missing_ok=True)
        found = sorted(self.directory.glob("*.jsonl"))
        for path in found:
            try:
                number = int(path.stem)
            except ValueError:
                continue
            size = path.stat().st_size
            count = sum(1 for _ in path.open("rb"))
            self.segments.append(Segment(number, path, count, size))
            self.bytes += size
            self._next = max(self._next, number + 1)

    def write(self, segment: Segment, records: list[Record]) -> int:
        """Write a reserved segment; returns its size in bytes (pass it to :meth:`settle`)."""
        data = encode_lines(records)
        tmp = segment.path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(tmp, segment.path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a half-written file must not take the little space left
            raise
        return len(data)

    def read(self, segment: Segment) -> list[Record]:
        return decode_lines(segment.path.read_bytes())

    def delete(self, segment: Segment) -> None:
        segment.path.unlink(missing_ok=True)
