"""Moving messages to a worker process: pickles for the metadata, a shared-memory ring for the pixels.

The graph side writes each CPU ``VideoFrame``'s picture into the next slot of a :class:`FrameRing` (one copy, the
only one) and pickles the frame as a *persistent id* naming the slot; the worker maps the slot as a read-only
numpy view (no copy). When the worker's answer references a frame it was given (``Tracks.frame``), that reference
travels back as the frame's token and the graph side substitutes its own original object: no pixels go back.

The ring is a ``memfd`` (anonymous shared memory, freed when both sides close it — nothing to leak in
``/dev/shm`` when a process is killed) handed to the worker over the Unix socket with ``SCM_RIGHTS``. It grows
(a new memfd) when a larger picture arrives, or a call with more pictures than it has slots (a batch of several
streams' frames: each keeps its own slot for the call). A slot is rewritten ``slots`` frames later, so a remote
node must not keep a picture beyond the call that received it — the same rule as for any message: read-only, copy
what you keep.
"""

from __future__ import annotations

import io
import mmap
import os
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..messages import VideoFrame

PAGE = mmap.PAGESIZE
#: Slots per ring: a frame's slot is reused after this many more frames were sent to the same worker.
SLOTS = 4
_FRAME = "f"  # graph -> worker: a picture in a ring slot
_REF = "r"  # worker -> graph: "the frame you sent me as token N"


def _round_up(n: int) -> int:
    return (n + PAGE - 1) // PAGE * PAGE


@dataclass
class RingAnnouncement:
    """Tells the worker to map a new ring (its fd travels beside this message)."""

    generation: int
    slots: int
    slot_size: int


class FrameRing:
    """The graph side: a memfd of ``slots`` equal slots, written round-robin."""

    def __init__(self, name: str, slots: int = SLOTS) -> None:
        self.name = name
        self.slots = slots
        self.slot_size = 0
        self.generation = 0
        self.fd: int | None = None
        self._mm: mmap.mmap | None = None
        self._next = 0
        self.frames_written = 0
        self.bytes_written = 0

    def reserve(self, nbytes: int, pictures: int = 1) -> RingAnnouncement | None:
        """Make sure a picture of ``nbytes`` fits and a call of ``pictures`` pictures has a slot for each (a batch
        never overwrites its own pictures); returns an announcement when a new ring was made."""
        if nbytes <= self.slot_size and pictures <= self.slots:
            return None
        self.close()
        self.slot_size = max(self.slot_size, _round_up(max(nbytes, PAGE)))
        self.slots = max(self.slots, pictures)
        self.generation += 1
        fd = os.memfd_create(f"flowgraph-{self.name}-{self.generation}", os.MFD_CLOEXEC)
        os.ftruncate(fd, self.slot_size * self.slots)
        self.fd = fd
        self._mm = mmap.mmap(fd, self.slot_size * self.slots)
        self._next = 0
        return RingAnnouncement(self.generation, self.slots, self.slot_size)

    def write(self, image: np.ndarray) -> int:
        """Copy ``image`` into the next slot; returns the slot number."""
        assert self._mm is not None
        slot = self._next
        self._next = (slot + 1) % self.slots
        view = np.ndarray(image.shape, image.dtype, buffer=self._mm, offset=slot * self.slot_size)
        np.copyto(view, image, casting="no")
        del view
        self.frames_written += 1
        self.bytes_written += image.nbytes
        return slot

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class RingView:
    """The worker side: the newest ring the graph announced, mapped read-only."""

    def __init__(self) -> None:
        self._mm: mmap.mmap | None = None
        self.slot_size = 0
        self.generation = 0

    def attach(self, announcement: RingAnnouncement, fd: int) -> None:
        # an older mapping stays alive while some view still references it, and goes with its last view
        self._mm = mmap.mmap(fd, announcement.slot_size * announcement.slots, prot=mmap.PROT_READ)
        os.close(fd)
        self.slot_size = announcement.slot_size
        self.generation = announcement.generation

    def view(self, slot: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        if self._mm is None:
            raise RuntimeError("a frame arrived before its shared-memory ring")
        array = np.ndarray(shape, np.dtype(dtype), buffer=self._mm, offset=slot * self.slot_size)
        array.flags.writeable = False
        return array


# -- graph side ---------------------------------------------------------------------------------------------------
def _ships_by_ring(obj: Any) -> bool:
    return (type(obj) is VideoFrame and obj.device == "cpu" and obj.cuda_event is None
            and isinstance(obj.image, np.ndarray) and obj.image.nbytes > 0)


@dataclass
class OutgoingCall:
    """One call's frames on the graph side: what was written where, to resolve the worker's references."""

    frames: list[VideoFrame] = field(default_factory=list)
    announcement: RingAnnouncement | None = None
    #: The ring grew after some of this call's pictures went into the old one: pickle the call again.
    regrown: bool = False


class _GraphPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, ring: FrameRing, call: OutgoingCall) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._ring = ring
        self._call = call
        self._seen: dict[int, tuple[Any, ...]] = {}

    def persistent_id(self, obj: Any) -> Any:
        if not _ships_by_ring(obj):
            return None
        known = self._seen.get(id(obj))
        if known is not None:
            return known
        image: np.ndarray = obj.image
        announcement = self._ring.reserve(image.nbytes, len(self._call.frames) + 1)
        if announcement is not None:
            self._call.announcement = announcement
            self._call.regrown = bool(self._call.frames)
        slot = self._ring.write(image)
        token = len(self._call.frames)
        self._call.frames.append(obj)
        # the worker rebuilds the frame from its metadata; ``source`` (the decoder's own frame) stays here
        pid = (_FRAME, token, slot, image.shape, image.dtype.str,
               (obj.stream_id, obj.frame_id, obj.pts, obj.time_base, obj.t_capture, obj.format))
        self._seen[id(obj)] = pid
        return pid


def dump_call(obj: Any, ring: FrameRing) -> tuple[bytes, OutgoingCall]:
    """Pickle what goes to the worker; pictures go into ``ring``. A call may carry several pictures (a batch of
    several streams' frames, of any sizes): all of them land in the ring the worker is told about last."""
    announcement = None
    while True:
        call = OutgoingCall(announcement=announcement)
        buffer = io.BytesIO()
        _GraphPickler(buffer, ring, call).dump(obj)
        if not call.regrown:  # slots only grow (in size and number): a pass more at most per larger picture or call
            break
        announcement = call.announcement
    return buffer.getvalue(), call


class _AnswerUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, call: OutgoingCall) -> None:
        super().__init__(file)
        self._call = call

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == _REF:
            return self._call.frames[pid[1]]
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def load_answer(data: bytes, call: OutgoingCall) -> Any:
    """Unpickle the worker's answer; frames it references are this side's original objects."""
    return _AnswerUnpickler(io.BytesIO(data), call).load()


# -- worker side --------------------------------------------------------------------------------------------------
@dataclass
class IncomingCall:
    """The frames one call brought to the worker, by identity, to send back as references."""

    tokens: dict[int, int] = field(default_factory=dict)
    frames: list[VideoFrame] = field(default_factory=list)  # keeps ids unique while the call lasts


class _WorkerUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, ring: RingView, call: IncomingCall) -> None:
        super().__init__(file)
        self._ring = ring
        self._call = call

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == _FRAME):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        _, token, slot, shape, dtype, meta = pid
        stream_id, frame_id, pts, time_base, t_capture, fmt = meta
        frame = VideoFrame(image=self._ring.view(slot, tuple(shape), dtype), format=fmt, stream_id=stream_id,
                           frame_id=frame_id, pts=pts, time_base=time_base, t_capture=t_capture)
        self._call.tokens[id(frame)] = token
        self._call.frames.append(frame)
        return frame


def load_call(data: bytes, ring: RingView) -> tuple[Any, IncomingCall]:
    call = IncomingCall()
    return _WorkerUnpickler(io.BytesIO(data), ring, call).load(), call


class _AnswerPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, call: IncomingCall) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._call = call

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is VideoFrame:
            token = self._call.tokens.get(id(obj))
            if token is not None:
                return (_REF, token)
        return None


def dump_answer(obj: Any, call: IncomingCall) -> bytes:
    buffer = io.BytesIO()
    _AnswerPickler(buffer, call).dump(obj)
    return buffer.getvalue()
