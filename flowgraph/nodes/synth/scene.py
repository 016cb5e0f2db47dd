"""Synthetic scenes with exact ground truth: :class:`SceneConfig` in, frames and :class:`FrameTruth` out.

    scene = Scene(SceneConfig(width=1280, height=720, fps=30.0, people=3, seed=1))
    image, truth = scene.render(i)        # (H, W, 3) uint8 RGB, FrameTruth
    truth = scene.truth(i)                # same truth, no drawing (fast)
    scene.calibration                     # >= 4 {"image": [u, v], "world": [X, Y]} ground points
    scene.image_to_world                  # 3x3 ground homography

Deterministic per seed: the same config gives the same pixels and truth for a frame index, in any call order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .body import Posed, pose_walker
from .camera import Camera, CameraConfig
from .lens import Lens
from .people import Schedule, Walker, stage_for
from .truth import FrameTruth, frame_truth

APPEARANCES = ("figure", "photo")
BACKGROUNDS = ("field", "track", "photo", "plain")


@dataclass(frozen=True)
class SceneConfig:
    """What to generate. ``walkers`` (scripted people) replaces the random schedule when given.

    gait: walk | run | mixed; paths: line | diagonal | curve | mixed; speed_variation: the largest relative
    amplitude of a person's sinusoidal speed change (0 = constant speed); appearance: figure | photo;
    background: field | track | photo | plain; stamp: draw the frame-counter/capture-time stamp
    (see :mod:`.stamp`) with capture time ``t0_ms + i × 1000 / fps`` unless ``render`` is given one;
    lens_k1: radial lens distortion (see :mod:`.lens`; 0 = exact pinhole, < 0 barrel).
    """

    width: int = 1280
    height: int = 720
    fps: float = 30.0
    people: int = 3
    seed: int = 1
    gait: str = "mixed"
    paths: str = "mixed"
    speed_variation: float = 0.15
    appearance: str = "figure"
    background: str = "field"
    camera: CameraConfig = field(default_factory=CameraConfig)
    near_m: float | None = None
    far_m: float | None = None
    min_person_px: float | None = None
    walkers: tuple[Walker, ...] = ()
    stamp: bool = False
    t0_ms: int = 0
    lens_k1: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if self.width < 16 or self.height < 16:
            problems.append(f"width/height must be >= 16, got {self.width}x{self.height}")
        if self.fps <= 0:
            problems.append(f"fps must be > 0, got {self.fps}")
        if not 0 <= self.people <= 64:
            problems.append(f"people must be 0..64, got {self.people}")
        if self.gait not in ("walk", "run", "mixed"):
            problems.append(f"gait must be walk, run or mixed, got {self.gait!r}")
        if self.paths not in ("line", "diagonal", "curve", "mixed"):
            problems.append(f"paths must be line, diagonal, curve or mixed, got {self.paths!r}")
        if not 0.0 <= self.speed_variation <= 0.5:
            problems.append(f"speed_variation must be 0..0.5, got {self.speed_variation}")
        if self.appearance not in APPEARANCES:
            problems.append(f"appearance must be one of {APPEARANCES}, got {self.appearance!r}")
        if self.background not in BACKGROUNDS:
            problems.append(f"background must be one of {BACKGROUNDS}, got {self.background!r}")
        if not -0.3 <= self.lens_k1 <= 0.3:
            problems.append(f"lens_k1 must be -0.3..0.3, got {self.lens_k1}")
        if problems:
            raise ValueError("SceneConfig: " + "; ".join(problems))


class Scene:
    """A deterministic synthetic scene: a camera over a ground plane and people walking or running on it."""

    def __init__(self, config: SceneConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = SceneConfig(**overrides)
        elif overrides:
            from dataclasses import replace

            config = replace(config, **overrides)
        self.config = config
        self.camera = Camera(config.camera, config.width, config.height)
        self.lens = Lens(config.lens_k1, config.width, config.height) if config.lens_k1 else None
        min_px = config.min_person_px if config.min_person_px is not None else 0.11 * config.height
        self.stage = stage_for(self.camera, near_y=config.near_m, far_y=config.far_m, min_person_px=min_px,
                               gait=config.gait, paths=config.paths, speed_variation=config.speed_variation,
                               appearance=config.appearance)
        if config.background == "track" and config.far_m is None:
            from dataclasses import replace as _replace

            # Keep random people on the eight lanes (1.22 m each) that start 0.6 m before the near lane.
            self.stage = _replace(self.stage, far_y=min(self.stage.far_y, self.stage.near_y - 0.6 + 8 * 1.22 - 0.3))
        self._schedule = Schedule(self.stage, config.seed, config.people) if not config.walkers else None
        self._background: np.ndarray | None = None

    # -- geometry ---------------------------------------------------------------------------------------------
    @property
    def image_to_world(self) -> np.ndarray:
        """3x3 homography: image pixels (u, v, 1) → ground metres (X, Y, 1)."""
        return self.camera.image_to_world.copy()

    @property
    def world_to_image(self) -> np.ndarray:
        return self.camera.world_to_image.copy()

    @property
    def calibration(self) -> list[dict[str, list[float]]]:
        """Six ground points spread over the people's area, as image↔world pairs (metres, pixels)."""
        st = self.stage
        xs_near = self._visible_x(st.near_y, 0.12)
        xs_far = self._visible_x(st.far_y, 0.12)
        mid_y = (st.near_y + st.far_y) / 2.0
        xs_mid = self._visible_x(mid_y, 0.12)
        world = [(xs_near[0], st.near_y), (xs_near[1], st.near_y), (xs_far[1], st.far_y), (xs_far[0], st.far_y),
                 ((xs_mid[0] + xs_mid[1]) / 2.0, mid_y), (xs_mid[0], mid_y)]
        out = []
        for x, y in world:
            uv = self.camera.ground_to_image(np.array([x, y]))
            u, v = self.lens.distort(uv) if self.lens is not None else uv
            out.append({"image": [round(float(u), 3), round(float(v), 3)], "world": [round(x, 4), round(y, 4)]})
        return out

    def measured_calibration(self, noise_px: float, seed: int = 0) -> list[dict[str, list[float]]]:
        """:attr:`calibration` as a person clicking the points would give it: each image point off by Gaussian
        pixel noise (σ = ``noise_px``), deterministic per ``seed``. Through the lens when the scene has one."""
        rng = np.random.default_rng(seed)
        points = self.calibration
        for point in points:
            offset = rng.normal(0.0, noise_px, 2)
            point["image"] = [round(point["image"][0] + float(offset[0]), 3),
                              round(point["image"][1] + float(offset[1]), 3)]
        return points

    def _visible_x(self, y: float, inset: float) -> tuple[float, float]:
        v = float(self.camera.ground_to_image(np.array([0.0, y]))[1])
        left = self.camera.image_to_ground(np.array([self.config.width * inset, v]))
        right = self.camera.image_to_ground(np.array([self.config.width * (1.0 - inset), v]))
        return round(float(left[0]), 3), round(float(right[0]), 3)

    # -- time -------------------------------------------------------------------------------------------------
    def time_of(self, frame_index: int) -> float:
        return frame_index / self.config.fps

    def posed(self, frame_index: int) -> list[Posed]:
        """Everyone on their path at this frame, posed, sorted far to near (drawing order)."""
        t = self.time_of(frame_index)
        if self._schedule is not None:
            walkers = self._schedule.active(t)
        else:
            walkers = [w for w in self.config.walkers if w.start_s <= t <= w.start_s + w.duration_s]
        posed = [pose_walker(w, t, self.camera) for w in walkers]
        if self.config.appearance == "photo":
            from .photo import apply_photo

            for p in posed:
                apply_photo(p, self.camera)
        posed.sort(key=lambda p: -p.root_depth)
        return posed

    def truth(self, frame_index: int) -> FrameTruth:
        """Ground truth of a frame without drawing it."""
        out = frame_truth(frame_index, self.time_of(frame_index), self.posed(frame_index), self.camera)
        out.t_capture_ms = self.capture_ms(frame_index)
        return self.lens.truth(out) if self.lens is not None else out

    def capture_ms(self, frame_index: int) -> int:
        return int(self.config.t0_ms + round(frame_index * 1000.0 / self.config.fps))

    # -- pixels -----------------------------------------------------------------------------------------------
    @property
    def background(self) -> np.ndarray:
        """The static background (computed once; treat as read-only)."""
        if self._background is None:
            from .background import make_background

            self._background = make_background(self.config.background, self.camera, self.config.seed,
                                               track_y0=self.stage.near_y - 0.6)
            self._background.setflags(write=False)
        return self._background

    def render(self, frame_index: int, out: np.ndarray | None = None,
               t_capture_ms: int | None = None) -> tuple[np.ndarray, FrameTruth]:
        """Draw frame ``frame_index``; returns the RGB image and its ground truth.

        ``out`` (H, W, 3) uint8 is reused when given (no allocation); otherwise a new array is returned, so frames
        handed downstream are never overwritten later. ``t_capture_ms`` overrides the stamp's capture time.
        """
        from .render import draw_person

        bg = self.background
        if out is None:
            out = np.empty_like(bg)
        elif out.shape != bg.shape or out.dtype != np.uint8:
            raise ValueError(f"out must be {bg.shape} uint8, got {out.shape} {out.dtype}")
        np.copyto(out, bg)
        posed = self.posed(frame_index)
        if self.config.appearance == "photo":
            from .photo import draw_photo_person

            for p in posed:
                draw_photo_person(out, p)
        else:
            for p in posed:
                draw_person(out, p)
        truth = frame_truth(frame_index, self.time_of(frame_index), posed, self.camera)
        captured = self.capture_ms(frame_index) if t_capture_ms is None else int(t_capture_ms)
        truth.t_capture_ms = captured
        if self.lens is not None:
            np.copyto(out, self.lens.apply(out))
            truth = self.lens.truth(truth)
        if self.config.stamp:  # drawn after the lens: a stamp is an overlay, not part of the scene
            from .stamp import draw_stamp

            draw_stamp(out, frame_index, captured)
        return out, truth
