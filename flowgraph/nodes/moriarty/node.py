"""The ``moriarty`` node: pose estimation and biomechanics for every tracked person.

Top-down on vibrio's tracks: each ``Tracks`` message carries the analysed frame, so every track's box is cropped
from exactly the picture it was found in, all crops of a frame go to the model together, and every pose keeps
its ``track_id``. Without a ``tracks`` wire, ``frames`` gives whole-frame single-person mode (``track_id`` None).
When both are wired, frames of a stream that has sent tracks are skipped (counted), so nobody is analysed twice.

Wire the inputs with ``policy: latest``: the node then always works on the newest frame and never holds video
up. Models are loaded and run in the node's worker thread (``process`` is a plain function); heavy libraries
are imported there, not when the catalog is listed. Every ``Poses`` carries its ``process_ms``.

Example::

    pose:
      node: moriarty
      params: {backend: mediapipe, body_mass_kg: 70}
      inputs: {tracks: {from: vibrio/tracks, policy: latest}}
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from flowgraph.context import NodeContext
from flowgraph.messages import Message, StreamEnd, VideoFrame
from flowgraph.node import Node
from flowgraph.nodes.moriarty.messages import Pose, Poses
from flowgraph.nodes.vibrio.messages import Tracks
from flowgraph.params import param
from flowgraph.ports import Input, Output

if TYPE_CHECKING:
    import numpy as np

    from .backend import PoseBackend
    from .biomech import MotionRegistry

Box = tuple[float, float, float, float]


class Moriarty(Node):
    """Pose estimation and biomechanics (joint angles, cadence, stride, contact, GRF) for every tracked person."""

    gpu = True
    isolation = "process"  # CPU-heavy: its own worker process unless the graph says otherwise (flowgraph.island)

    tracks = Input(Tracks, "vibrio's tracks; Tracks.frame is the picture that is cropped", required=False)
    frames = Input(VideoFrame, "whole-frame single-person mode, used when no tracks are wired", required=False)
    poses = Output(Poses, "one Pose per person: keypoints, joint_angles, metrics")

    @dataclass
    class Params:
        backend: Literal["mediapipe", "onnx", "torchscript"] = param(
            "mediapipe", "pose model: bundled MediaPipe BlazePose-33, or a COCO-17 top-down ONNX/TorchScript file")
        model: str = param("", "path of the ONNX/TorchScript model (onnx and torchscript backends)")
        input_size: list[int] = param([], "model input [height, width]; [] = read it from the ONNX model",
                                      schema={"type": "array", "items": {"type": "integer", "minimum": 8},
                                              "maxItems": 2})
        output: Literal["auto", "heatmap", "simcc"] = param("auto", "how to decode the model's outputs")
        simcc_split_ratio: float = param(2.0, "SimCC bins per input pixel", exclusiveMinimum=0)
        mean: list[float] = param([123.675, 116.28, 103.53], "per-channel RGB mean (0-255) the model expects",
                                  schema={"type": "array", "items": {"type": "number"}, "minItems": 3,
                                          "maxItems": 3})
        std: list[float] = param([58.395, 57.12, 57.375], "per-channel RGB std (0-255) the model expects",
                                 schema={"type": "array", "items": {"type": "number", "exclusiveMinimum": 0},
                                         "minItems": 3, "maxItems": 3})
        max_batch: int = param(16, "crops per model call", minimum=1, maximum=256)
        threads: int = param(0, "CPU threads for the model (0 = the runtime's default)", minimum=0, maximum=256)
        complexity: int = param(1, "MediaPipe model complexity (only 1 is bundled; 0 and 2 are refused)",
                                minimum=0, maximum=2)
        tracking: bool = param(False, "MediaPipe: one video-mode graph per person (skips re-detection)")
        padding: float = param(1.25, "crop = person box grown by this factor", minimum=1.0, maximum=3.0)
        min_score: float = param(0.5, "keypoints scoring below this are gated out (None), not guessed",
                                 minimum=0, maximum=1)
        min_keypoints: int = param(4, "fewer confident keypoints than this = nobody there (no pose)", minimum=1)
        min_box_px: float = param(24.0, "tracks whose box is smaller than this on a side are skipped", minimum=1)
        max_people: int = param(16, "most people analysed per frame (largest boxes first; rest counted)",
                                minimum=1, maximum=256)
        smoothing: Literal["one_euro", "none"] = param("one_euro", "keypoint smoothing over time")
        min_cutoff: float = param(1.5, "One-Euro minimum cut-off (Hz): lower = smoother when still",
                                  exclusiveMinimum=0)
        beta: float = param(0.3, "One-Euro speed coefficient: higher = less lag when moving", minimum=0)
        history_s: float = param(8.0, "seconds of history kept per person for gait", minimum=1, maximum=120)
        height_m: float = param(1.75, "stature of the people (m): scales the centre of mass for GRF",
                                exclusiveMinimum=0)
        body_mass_kg: float = param(0.0, "body mass for the ground-reaction-force estimate (0 = no GRF)",
                                    minimum=0)
        max_tracks: int = param(64, "people kept in memory per node (least recently seen dropped)", minimum=1)
        stale_s: float = param(5.0, "forget a person not seen for this long (s, wall clock)", exclusiveMinimum=0)

    # -- lifecycle --------------------------------------------------------------------------------------------
    def __init__(self, ctx: NodeContext, params: Moriarty.Params | None = None) -> None:
        super().__init__(ctx, params)
        self._backend: PoseBackend | None = None  # the model: loaded by start(), closed by stop()
        self._motion: MotionRegistry | None = None
        self._tracks_streams: set[str] = set()
        self._counts = {"frames": 0, "poses": 0, "bad_frames": 0, "no_frame": 0, "no_person": 0,
                        "skipped_small": 0, "skipped_over_max": 0, "frames_ignored": 0, "evicted": 0}
        self._last_error = ""
        self._process_ms: list[float] = []

    async def start(self) -> None:
        # Load the model in the worker thread now: a bad path or a missing package fails at start, not later.
        await self.offload(self._ensure_ready)

    async def stop(self) -> None:
        backend = self._backend
        if backend is not None:
            await self.offload(backend.close)
            self._backend = None

    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self._counts)
        out["people_kept"] = len(self._motion) if self._motion is not None else 0
        recent = self._process_ms
        out["process_ms_last"] = round(recent[-1], 2) if recent else None
        if self._last_error:
            out["last_bad_frame"] = self._last_error
        return out

    def _ensure_ready(self) -> None:
        if self._backend is not None:
            return
        from .biomech import MotionConfig, MotionRegistry

        p = self.params
        self._backend = self._make_backend()
        cfg = MotionConfig(smoothing=p.smoothing, min_cutoff=p.min_cutoff, beta=p.beta, history_s=p.history_s,
                           height_m=p.height_m, body_mass_kg=p.body_mass_kg)
        self._motion = MotionRegistry(self._backend.skeleton, cfg, max_people=p.max_tracks, stale_s=p.stale_s)

    def _make_backend(self) -> PoseBackend:
        p = self.params
        if p.backend == "mediapipe":
            from .mediapipe_backend import MediaPipeBackend

            return MediaPipeBackend(p.complexity, tracking=p.tracking, padding=p.padding, max_graphs=p.max_tracks)
        from .topdown import TopDownBackend

        return TopDownBackend(p.model, p.backend, input_size=p.input_size or None, layout=p.output,
                              split_ratio=p.simcc_split_ratio, mean=p.mean, std=p.std, padding=p.padding,
                              device=self.device if self.device.startswith("cuda") else "cpu",
                              max_batch=p.max_batch, threads=p.threads)

    def end_stream(self, end: StreamEnd) -> None:
        """The stream ended: its people's motion history (smoothing, strides) goes."""
        self._tracks_streams.discard(end.stream_id)
        if self._motion is not None:
            self._motion.forget_stream(end.stream_id)

    # -- processing (worker thread) ---------------------------------------------------------------------------
    def process(self, msg: Message) -> Poses | None:  # blocking node: runs in the worker thread
        work = self._route(msg)
        return None if work is None else self.analyse(msg, *work)

    def process_batch(self, msgs: list[Message]) -> list[Poses | None]:
        """Several queued messages (on ``latest`` edges the newest of each stream): with an ONNX/TorchScript model
        every frame's crops go through it together (:meth:`TopDownBackend.infer_many`); MediaPipe, which runs one
        graph per person, takes them frame by frame. Smoothing and gait state stay per person, in message order."""
        self._ensure_ready()
        assert self._backend is not None
        started = [(msg, self._route(msg)) for msg in msgs]
        jobs = [(msg, self._begin(msg, *work)) if work is not None else (msg, None) for msg, work in started]
        todo = [job for _, job in jobs if isinstance(job, _Job)]
        infer_many = getattr(self._backend, "infer_many", None)
        inferring = time.perf_counter()
        if infer_many is not None and len(todo) > 1:
            found = infer_many([(job.image, job.boxes) for job in todo])
        else:
            found = [self._backend.infer(job.image, job.boxes, job.keys) for job in todo]
        share = (time.perf_counter() - inferring) / max(len(todo), 1)
        points = iter(found)
        return [self._finish(job, next(points), share) if isinstance(job, _Job) else job for _, job in jobs]

    def _route(self, msg: Message) -> tuple[VideoFrame | None, Tracks | None] | None:
        """The picture and tracks a message brings; None for a frame of a stream whose tracks are wired (counted)."""
        if isinstance(msg, Tracks):
            self._tracks_streams.add(msg.stream_id)
            return msg.frame, msg
        if isinstance(msg, VideoFrame):
            if msg.stream_id in self._tracks_streams:
                self._counts["frames_ignored"] += 1
                return None
            return msg, None
        raise TypeError(f"moriarty takes Tracks or VideoFrame, got {type(msg).__name__}")

    def analyse(self, msg: Message, frame: VideoFrame | None, tracks: Tracks | None) -> Poses:
        """Poses for one frame (whole-frame mode when ``tracks`` is None). Bad input gives an empty answer."""
        job = self._begin(msg, frame, tracks)
        if not isinstance(job, _Job):
            return job
        assert self._backend is not None
        inferring = time.perf_counter()
        found = self._backend.infer(job.image, job.boxes, job.keys)
        return self._finish(job, found, time.perf_counter() - inferring)

    def _begin(self, msg: Message, frame: VideoFrame | None, tracks: Tracks | None) -> _Job | Poses:
        """Everything before the model: checks, the people worth a crop. An answer already when there is no work."""
        from .backend import BadFrame, check_image

        started = time.perf_counter()
        self._ensure_ready()
        assert self._backend is not None and self._motion is not None
        self._counts["frames"] += 1
        out = Poses().like(msg)
        try:
            if frame is None or frame.image is None:
                self._counts["no_frame"] += 1
                return self._done(out, started)
            image = check_image(frame.image)
        except BadFrame as exc:
            self._counts["bad_frames"] += 1
            self._last_error = f"frame {msg.frame_id} of {msg.stream_id!r}: {exc}"
            return self._done(out, started)
        height, width = (image.shape[1], image.shape[2]) if hasattr(image, "detach") else image.shape[:2]
        if tracks is None:
            job = _Job(out, image, None, [(msg.stream_id, None)], [(None, None, None)], _media_time(msg),
                       (width, height))
        else:
            import numpy as np

            chosen = self._choose(tracks, width, height)
            if not chosen:
                return self._done(out, started)
            job = _Job(out, image, np.array([box for _, box in chosen]),
                       [(msg.stream_id, track.track_id) for track, _ in chosen],
                       [(track.track_id, box, track.foot_world) for track, box in chosen], _media_time(msg),
                       (width, height))
        job.begin_s = time.perf_counter() - started
        return job

    def _finish(self, job: _Job, found: list[Any], infer_s: float) -> Poses:
        """Everything after the model: one pose per person found (smoothed, measured), and the answer's time —
        its own work plus ``infer_s``, its share of the model call."""
        started = time.perf_counter() - job.begin_s - infer_s
        out = job.out
        for (track_id, box, foot_world), key, points in zip(job.people, job.keys, found, strict=True):
            pose = None if points is None else self._pose(key, track_id, box, points, job.t, foot_world, job.size)
            if pose is None:
                self._counts["no_person"] += 1
                continue
            out.poses.append(pose)
        self._counts["poses"] += len(out.poses)
        return self._done(out, started)

    def _choose(self, tracks: Tracks, width: int, height: int) -> list[tuple[Any, Box]]:
        """Tracks worth a crop: inside the frame, big enough, the largest ``max_people`` of them."""
        import numpy as np

        from .backend import clip_boxes

        if not tracks.tracks:
            return []
        boxes, keep = clip_boxes(np.array([t.bbox for t in tracks.tracks]), width, height, self.params.min_box_px)
        self._counts["skipped_small"] += int((~keep).sum())
        chosen = [(t, _box(b)) for t, b, k in zip(tracks.tracks, boxes, keep, strict=True) if k]
        chosen.sort(key=lambda tb: -(tb[1][2] - tb[1][0]) * (tb[1][3] - tb[1][1]))
        if len(chosen) > self.params.max_people:
            self._counts["skipped_over_max"] += len(chosen) - self.params.max_people
            chosen = chosen[: self.params.max_people]
        return chosen

    def _pose(self, key: Hashable, track_id: int | None, box: Box | None, points: np.ndarray,
              t: float, foot_world: tuple[float, float] | None, frame: tuple[int, int]) -> Pose | None:
        """The pose of one person, or None when too little of them was seen to call it one."""
        import numpy as np

        from .skeleton import as_wire, gate

        assert self._motion is not None and self._backend is not None
        gated = gate(points, self.params.min_score, frame)
        if int(np.isfinite(gated[:, 0]).sum()) < self.params.min_keypoints:
            return None
        smoothed, angles, metrics = self._motion.get(key).update(t, gated, foot_world)
        if box is None:  # whole-frame mode: the box is the extent of what was seen
            seen = smoothed[np.isfinite(smoothed[:, 0])]
            box = None if len(seen) == 0 else (float(seen[:, 0].min()), float(seen[:, 1].min()),
                                               float(seen[:, 0].max()), float(seen[:, 1].max()))
        return Pose(track_id=track_id, keypoints=as_wire(smoothed), skeleton=self._backend.skeleton.name,
                    bbox=box, joint_angles=angles, metrics=metrics)

    def _done(self, out: Poses, started: float) -> Poses:
        # every frame, people or not: a stream that empties must still let go of who was in it
        assert self._motion is not None and self._backend is not None
        for key in self._motion.evict():
            self._backend.forget(key)
            self._counts["evicted"] += 1
        out.process_ms = (time.perf_counter() - started) * 1000.0
        self._process_ms = [*self._process_ms[-63:], out.process_ms]
        return out


@dataclass
class _Job:
    """One message's work for the pose model: the picture, the boxes (None: whole frame) and who is behind each."""

    out: Poses
    image: Any
    boxes: Any
    keys: list[Hashable]
    people: list[tuple[int | None, Any, Any]]
    t: float
    size: tuple[int, int]
    begin_s: float = 0.0


def _box(values: Any) -> Box:
    return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))


def _media_time(msg: Message) -> float:
    """Seconds on the stream's own clock (pts) when known, else capture wall-clock time."""
    seconds = msg.pts_seconds
    return seconds if seconds is not None and math.isfinite(seconds) else msg.t_capture
