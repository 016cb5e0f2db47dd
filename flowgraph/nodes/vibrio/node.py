"""The ``vibrio`` node: who is where, and how fast — per analysed frame, beside the stream.

Wire its input with policy ``latest`` so it always analyses the newest frame and never falls behind live::

    vibrio:
      node: vibrio
      params:
        backend: auto                   # auto | blazepose | motion | hog | onnx | torchscript
        camera: fixed                   # fixed: motion may guide (blazepose) or replace (motion) detection
        context: running                # physics limits: walking | running | football | cycling | generic
        ignore_regions:                 # polygons where things move but are no people (clocks, stamps, screens)
          - [[0, 0], [250, 0], [250, 130], [0, 130]]
        calibration:                    # 4+ ground points; omit for the person-height prior (lower confidence)
          - {image: [102, 650], world: [0, 0]}
          - {image: [1180, 650], world: [20, 0]}
          - {image: [900, 300], world: [20, 30]}
          - {image: [380, 300], world: [0, 30]}
      inputs:
        frames: {from: decode/frames, policy: latest}

``backend: auto`` takes the best detector available (see :mod:`.choose`; ``flowgraph validate --plan`` prints
which and why): BlazePose's trained person detector via LiteRT when installed, else background subtraction on a
fixed camera, else HOG. All heavy work runs in the node's worker thread (a plain ``def process``). Tracker and
speed state are kept per ``stream_id``, so one node can serve several streams; the runtime hands it the queued
frames of several streams at once (``process_batch``, up to the node's ``max_batch``), and :meth:`Vibrio.analyse`
detects them in one batched model call where the backend allows (``blazepose``).
On a CUDA placement the torch backends (``motion``, ``torchscript``) run on the device and ``onnx`` asks
onnxruntime for its CUDA provider; ``hog`` and ``blazepose`` are CPU-only.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from flowgraph.context import NodeContext
from flowgraph.messages import StreamEnd, VideoFrame
from flowgraph.node import Node
from flowgraph.nodes.vibrio.messages import Detection, Track, Tracks
from flowgraph.params import param
from flowgraph.ports import Input, Output
from flowgraph.streams import ReportThrottle

if TYPE_CHECKING:
    from .detector import Detector

CALIBRATION_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "image": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
            "world": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        },
        "required": ["image", "world"],
        "additionalProperties": False,
    },
    "description": "ground points [{image: [u, v] px, world: [X, Y] m}, ...] (4 or more; [] = uncalibrated)",
}
IGNORE_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "array", "minItems": 3,
              "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}},
    "description": "polygons [[x, y], ...] (3+ corners, picture pixels) where detections are ignored",
}
#: How often (seconds of wall time) the stream registry hears about each stream.
REPORT_EVERY_S = 1.0


@dataclass
class StreamState:
    """Everything vibrio remembers about one stream."""

    tracker: Any
    speed: Any
    last_seen: float = 0.0
    last_time: float | None = None
    last_frame_id: int | None = None
    analysed: int = 0
    skipped: int = 0
    analysed_fps: float = 0.0
    stream_fps: float = 0.0
    process_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Vibrio(Node):
    """Detects, tracks and measures the ground speed of people in video frames."""

    gpu = True
    isolation = "process"  # CPU-heavy: its own worker process unless the graph says otherwise (flowgraph.island)
    frames = Input(VideoFrame, "pictures to analyse (wire with policy latest)")
    tracks = Output(Tracks, "detections, tracks with speed, and the analysed frame")

    @dataclass
    class Params:
        backend: Literal["auto", "blazepose", "hog", "motion", "onnx", "torchscript"] = param(
            "auto", "person detector (auto: the best available here, see validate --plan)")
        camera: Literal["fixed", "moving"] = param("fixed", "fixed camera: motion may guide or replace detection")
        model: str = param("", "model file for onnx/torchscript/blazepose (local path; nothing is downloaded)")
        input_size: int = param(640, "square model input size for onnx/torchscript", minimum=32, maximum=4096)
        layout: Literal["auto", "yolov8", "yolov5", "end2end"] = param("auto", "YOLO output layout")
        person_class: int = param(0, "class index of 'person' in the model (COCO: 0)", minimum=0)
        score_threshold: float = param(0.1, "detections below this score are dropped", minimum=0, maximum=1)
        nms_iou: float = param(0.45, "NMS IoU threshold", minimum=0, maximum=1)
        detect_width: int = param(640, "hog: resize pictures to this width before detecting (0 = native)",
                                  minimum=0, maximum=7680)
        hog_upscale: float = param(1.0, "hog: extra resize factor for small people (window is 64×128)",
                                   minimum=0.25, maximum=4)
        hog_stride: int = param(8, "hog: window stride in pixels", minimum=4, maximum=32)
        hog_scale: float = param(1.05, "hog: pyramid scale step", minimum=1.01, maximum=2)
        hog_hit_threshold: float = param(0.0, "hog: SVM margin threshold")
        motion_learning_rate: float = param(0.02, "motion: background adaptation rate", minimum=0, maximum=1)
        motion_threshold: float = param(25.0, "motion: colour-channel difference for foreground", minimum=1)
        motion_warmup: int = param(10, "motion: frames used to build the initial background", minimum=1)
        motion_min_area: float = param(0.0005, "motion: smallest blob, as a fraction of the picture", minimum=0)
        motion_width: int = param(640, "motion: width the background model works at", minimum=32, maximum=3840)
        high_threshold: float = param(0.5, "tracker: confident detection score", minimum=0, maximum=1)
        low_threshold: float = param(0.1, "tracker: low-score detections kept for second association",
                                     minimum=0, maximum=1)
        new_track_threshold: float = param(0.6, "tracker: score to start a track", minimum=0, maximum=1)
        min_hits: int = param(3, "tracker: detections before a track is reported", minimum=1)
        max_lost_s: float = param(2.0, "tracker: seconds a lost track waits to be found again", minimum=0)
        tentative_speed: float = param(1.5, "tracker: a new person may move this many heights per second between "
                                            "analysed frames and still be confirmed (0 = boxes must overlap)",
                                       minimum=0, maximum=20)
        calibration: list[dict[str, Any]] = param([], schema=CALIBRATION_SCHEMA)
        person_height_m: float = param(1.75, "assumed person height when uncalibrated", minimum=0.5, maximum=2.5)
        context: Literal["walking", "running", "football", "cycling", "generic"] = param(
            "running", "physics limits for speed (max speed and acceleration)")
        max_speed_mps: float = param(0.0, "override the context's max speed (0 = context's)", minimum=0)
        max_accel_mps2: float = param(0.0, "override the context's max acceleration (0 = context's)", minimum=0)
        smoothing_s: float = param(1.0, "window of foot positions the speed is fitted over", minimum=0.1,
                                   maximum=10)
        smoothing_order: int = param(1, "polynomial order of the speed fit (1 = line, 2 = parabola)",
                                     minimum=1, maximum=2)
        max_streams: int = param(16, "streams tracked at once (least recently seen is forgotten)", minimum=1)
        threads: int = param(0, "torch/onnxruntime/LiteRT threads (0 = library default)", minimum=0)
        crops: Literal["motion", "tiles"] = param("motion", "blazepose: where to look (motion-guided crops on a "
                                                  "fixed camera, or a tile grid)")
        tile_size: int = param(0, "blazepose: tile side in px (0 = a third of the picture's shorter side)", minimum=0)
        crop_factor: float = param(2.0, "blazepose: crop side as a multiple of the person's height", minimum=1,
                                   maximum=6)
        min_crop: float = param(128, "blazepose: smallest crop side in px", minimum=32)
        max_crops: int = param(16, "blazepose: crops per frame at most (one batched model call)", minimum=1,
                               maximum=64)
        blazepose_min_score: float = param(0.5, "blazepose: anchor score that counts as a person (MediaPipe's "
                                                "own threshold is 0.5)", minimum=0.05, maximum=1)
        blazepose_nms_iou: float = param(0.3, "blazepose: overlap above which two boxes are one person (weighted "
                                              "NMS)", minimum=0.05, maximum=1)
        ignore_regions: list[list[list[float]]] = param(
            [], "polygons [[x, y], ...] in picture pixels where nothing is a person (clocks, stamps, screens)",
            schema=IGNORE_SCHEMA)

    # -- lifecycle --------------------------------------------------------------------------------------------
    def __init__(self, ctx: NodeContext, params: Vibrio.Params | None = None) -> None:
        super().__init__(ctx, params)
        from .calibration import fit_ground_plane

        p = self.params
        self.plane = fit_ground_plane(p.calibration) if p.calibration else None
        self.ignore = [np.asarray(poly, np.float32).reshape(-1, 1, 2) for poly in p.ignore_regions]
        self.detector: Detector | None = None  # the model: loaded by start(), closed by stop()
        self.states: OrderedDict[str, StreamState] = OrderedDict()
        self._reports = ReportThrottle(REPORT_EVERY_S)
        self.counts = {"frames": 0, "analysed": 0, "bad_frames": 0, "skipped_frames": 0, "streams_forgotten": 0,
                       "detections": 0, "tracks": 0, "ignored": 0}
        self._bad_logged: set[str] = set()

    async def start(self) -> None:
        from .choose import choose_backend
        from .detector import DetectorConfig, make_detector

        p = self.params
        backend, why = choose_backend(p.backend, p.camera, p.model)
        self.log.info("backend %s (%s)", backend, why)
        config = DetectorConfig(
            backend=backend, device=self.device, model=p.model, input_size=p.input_size, layout=p.layout,
            person_class=p.person_class, score_threshold=p.score_threshold, nms_iou=p.nms_iou,
            detect_width=p.detect_width, hog_hit_threshold=p.hog_hit_threshold, hog_stride=p.hog_stride,
            hog_scale=p.hog_scale, hog_upscale=p.hog_upscale, motion_learning_rate=p.motion_learning_rate,
            motion_threshold=p.motion_threshold, motion_warmup=p.motion_warmup,
            motion_min_area=p.motion_min_area, motion_width=p.motion_width, threads=p.threads, crops=p.crops,
            tile_size=p.tile_size, crop_factor=p.crop_factor, min_crop=p.min_crop, max_crops=p.max_crops,
            blazepose_min_score=p.blazepose_min_score, blazepose_nms_iou=p.blazepose_nms_iou)
        # Model loading can take seconds: keep it off the event loop.
        self.detector = await self.offload(make_detector, config)
        if self.plane is not None:
            self.log.info("calibrated from %d points (fit RMS %.3f m)", self.plane.points, self.plane.rms_error_m)

    @classmethod
    def plan_notes(cls, params: Any, device: str) -> list[str]:
        from .choose import choose_backend

        backend, why = choose_backend(params.backend, params.camera, params.model)
        notes = [f"detector: {backend} ({why})"]
        if params.ignore_regions:
            notes.append(f"ignores {len(params.ignore_regions)} region(s)")
        return notes

    async def stop(self) -> None:
        detector, self.detector = self.detector, None
        if detector is not None:
            detector.close()

    def counters(self) -> dict[str, Any]:
        counts: dict[str, Any] = dict(self.counts)
        counts["streams"] = len(self.states)
        return counts

    # -- per frame (worker thread) ----------------------------------------------------------------------------
    def process(self, frame: VideoFrame) -> Tracks:  # blocking node: runs in the worker thread
        return self.analyse([frame])[0]

    def process_batch(self, frames: list[VideoFrame]) -> list[Tracks]:
        """The runner's batch of queued frames (on a ``latest`` edge the newest of each stream): one model call."""
        return self.analyse(frames)

    def analyse(self, frames: list[VideoFrame]) -> list[Tracks]:
        """Tracks for several frames — typically the newest of several streams — with one batched detector call
        when the backend has one (``blazepose``); tracker and speed state stay per stream."""
        started = time.perf_counter()
        results: list[Tracks | None] = [None] * len(frames)
        todo: list[tuple[int, VideoFrame, StreamState, float]] = []
        for i, frame in enumerate(frames):
            self.counts["frames"] += 1
            state = self._state(frame.stream_id)
            problem = self._problem(frame)
            if problem is not None:
                self.counts["bad_frames"] += 1
                if frame.stream_id not in self._bad_logged:  # once per stream: a bad source must not flood the log
                    self._bad_logged.add(frame.stream_id)
                    self.log.warning("stream %s frame %s: %s (empty result)", frame.stream_id, frame.frame_id,
                                     problem)
                results[i] = Tracks(frame=frame, calibrated=self.plane is not None,
                                    process_ms=(time.perf_counter() - started) * 1000).like(frame)
                continue
            now = frame.pts_seconds if frame.pts_seconds is not None else frame.t_capture
            if state.last_time is not None and now <= state.last_time - 1.0:
                # The stream's clock went back (source restarted): old tracks and speeds no longer apply.
                state = self._reset(frame.stream_id)
            todo.append((i, frame, state, now))
        detector = self._loaded()
        detect_many = getattr(detector, "detect_many", None)
        for group in _one_per_stream(todo):
            detecting = time.perf_counter()
            if detect_many is not None and len(group) > 1:
                found = detect_many([(frame.image, frame.stream_id) for _, frame, _, _ in group])
            else:
                found = [detector.detect(frame.image, frame.stream_id) for _, frame, _, _ in group]
            share = (time.perf_counter() - detecting) / len(group)
            for (i, frame, state, now), boxes in zip(group, found, strict=True):
                results[i] = self._follow(frame, state, now, self._keep(boxes), share)
        return [r for r in results if r is not None]

    def _follow(self, frame: VideoFrame, state: StreamState, now: float, boxes: Any, detect_s: float) -> Tracks:
        """Track and measure one frame's detections; its ``process_ms`` is its share of the detector call (a
        batch's call divided by its frames) plus its own tracking."""
        started = time.perf_counter() - detect_s
        outputs = state.tracker.update(boxes, now)
        width, height = frame.width, frame.height
        tracks = [self._track(state, out, now, width, height) for out in outputs]
        state.speed.prune(now)
        result = Tracks(detections=[Detection(bbox=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                                              score=float(b[4])) for b in boxes],
                        tracks=tracks, frame=frame, calibrated=self.plane is not None).like(frame)
        result.process_ms = (time.perf_counter() - started) * 1000
        self.counts["analysed"] += 1
        self.counts["detections"] += len(boxes)
        self.counts["tracks"] += len(tracks)
        self._account(state, frame, now, result.process_ms)
        return result

    def _keep(self, boxes: Any) -> Any:
        """Boxes whose centre is outside every ``ignore_regions`` polygon."""
        if not self.ignore or len(boxes) == 0:
            return boxes
        import cv2

        centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes]
        keep = [all(cv2.pointPolygonTest(poly, (float(x), float(y)), False) < 0 for poly in self.ignore)
                for x, y in centres]
        self.counts["ignored"] += len(keep) - sum(keep)
        return boxes[keep]

    def _problem(self, frame: VideoFrame) -> str | None:
        from .detector import image_problem

        if frame.device != "cpu" and not hasattr(frame.image, "detach"):
            return f"frame says device {frame.device} but carries {type(frame.image).__name__}"
        return image_problem(frame.image)

    def _track(self, state: StreamState, out: Any, now: float, width: int, height: int) -> Track:
        # The filtered box may overhang the picture for people at its edge: report the visible part.
        x1, x2 = (min(max(float(v), 0.0), width) for v in out.box[0::2])
        y1, y2 = (min(max(float(v), 0.0), height) for v in out.box[1::2])
        foot_px = ((x1 + x2) / 2, y2)
        world: tuple[float, float] | None = None
        if self.plane is not None:
            wx, wy = self.plane.to_world([foot_px])[0]
            world = (float(wx), float(wy)) if wx == wx and wy == wy else None  # NaN: above the horizon
            estimate = state.speed.update(out.track_id, now, world=world) if world else None
        else:
            estimate = state.speed.update(out.track_id, now, foot_px=foot_px, box_height_px=y2 - y1)
        return Track(track_id=out.track_id, bbox=(x1, y1, x2, y2), score=out.score, age=out.age, foot_px=foot_px,
                     foot_world=world, speed_mps=None if estimate is None else estimate.speed_mps,
                     heading_deg=None if estimate is None else estimate.heading_deg,
                     distance_m=None if estimate is None else estimate.distance_m,
                     confidence=0.0 if estimate is None else estimate.confidence)

    def _loaded(self) -> Detector:
        if self.detector is None:
            raise RuntimeError(f"vibrio {self.name!r}: frames arrived before start() loaded the detector")
        return self.detector

    # -- per-stream state -------------------------------------------------------------------------------------
    def end_stream(self, end: StreamEnd) -> None:
        """The stream ended: its tracker, speed history and detector state (motion background) go."""
        if self.states.pop(end.stream_id, None) is not None:
            if self.detector is not None:
                self.detector.forget(end.stream_id)
            self.counts["streams_ended"] = self.counts.get("streams_ended", 0) + 1
        self._bad_logged.discard(end.stream_id)

    def _state(self, stream_id: str) -> StreamState:
        state = self.states.get(stream_id)
        if state is None:
            return self._reset(stream_id)
        self.states.move_to_end(stream_id)
        state.last_seen = time.monotonic()
        return state

    def _reset(self, stream_id: str) -> StreamState:
        from .speed import SpeedConfig, SpeedEstimator
        from .tracker import ByteTracker, TrackerConfig

        p = self.params
        tracker = ByteTracker(TrackerConfig(high_threshold=p.high_threshold, low_threshold=p.low_threshold,
                                            new_track_threshold=p.new_track_threshold, min_hits=p.min_hits,
                                            max_lost_s=p.max_lost_s, tentative_speed=p.tentative_speed,
                                            tentative_distance=0.3 if p.tentative_speed > 0 else 0.0))
        speed = SpeedEstimator(SpeedConfig(context=p.context, smoothing_s=p.smoothing_s, order=p.smoothing_order,
                                           max_speed=p.max_speed_mps, max_accel=p.max_accel_mps2,
                                           person_height_m=p.person_height_m, forget_after_s=p.max_lost_s + 4))
        self._loaded().forget(stream_id)
        state = self.states[stream_id] = StreamState(tracker=tracker, speed=speed, last_seen=time.monotonic())
        self.states.move_to_end(stream_id)
        while len(self.states) > p.max_streams:
            old, _ = self.states.popitem(last=False)
            self._loaded().forget(old)
            self.counts["streams_forgotten"] += 1
        return state

    def _account(self, state: StreamState, frame: VideoFrame, now: float, process_ms: float) -> None:
        """Analysed fps vs stream fps (from frame_id gaps), reported to the stream registry once a second."""
        if state.last_time is not None and now > state.last_time:
            dt = now - state.last_time
            state.analysed_fps = _ewma(state.analysed_fps, 1.0 / dt)
            if state.last_frame_id is not None and frame.frame_id > state.last_frame_id:
                gap = frame.frame_id - state.last_frame_id
                state.stream_fps = _ewma(state.stream_fps, gap / dt)
                state.skipped += gap - 1
                self.counts["skipped_frames"] += gap - 1
        state.last_time, state.last_frame_id = now, frame.frame_id
        state.analysed += 1
        state.process_ms = process_ms if state.analysed == 1 else 0.9 * state.process_ms + 0.1 * process_ms
        if self._reports.due(frame.stream_id):
            self.ctx.streams.update(
                frame.stream_id, "vibrio", analysed_fps=round(state.analysed_fps, 2),
                stream_fps=round(state.stream_fps, 2), process_ms=round(state.process_ms, 2),
                analysed=state.analysed, skipped=state.skipped, backend=self._loaded().info.backend,
                device=self._loaded().info.device, calibrated=self.plane is not None,
                tracks=len(state.tracker.tracks))


def _one_per_stream(todo: list[Any]) -> list[list[Any]]:
    """Consecutive runs of ``(i, frame, ...)`` in which no stream repeats: a detector call sees each stream's
    state (motion history, last boxes) as one-at-a-time calls would, even when a batch holds two frames of one
    stream (a ``block`` edge)."""
    groups: list[list[Any]] = []
    seen: set[str] = set()
    for item in todo:
        stream = item[1].stream_id
        if not groups or stream in seen:
            groups.append([])
            seen = set()
        groups[-1].append(item)
        seen.add(stream)
    return groups


def _ewma(previous: float, value: float, weight: float = 0.1) -> float:
    return value if previous == 0 else (1 - weight) * previous + weight * value
