"""Who walks where: scripted walkers, and the seeded random schedule of people entering and leaving the view.

Each of ``people`` slots runs an endless sequence of passes: a new person (new ``person_id``, body, clothes,
gait, speed and path) enters from outside the picture, crosses it along a line or an arc, leaves, and after a
short gap the next one comes. Every pass is drawn from ``numpy.random.default_rng((seed, slot, pass))``, so any
frame can be computed directly, in any order, with the same result. At time 0 every slot's first person is
already part-way along its path so the first frames are populated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .camera import Camera
from .paths import Path, SpeedProfile

SKIN = ((241, 194, 167), (224, 172, 138), (198, 134, 98), (161, 102, 68), (120, 76, 50), (88, 55, 38))
HAIR = ((30, 22, 18), (60, 40, 25), (110, 75, 40), (170, 140, 90), (90, 90, 90), (20, 20, 20))
# Saturated or dark/light sports kit: strong contrast against grass and track keeps silhouettes crisp.
SHIRTS = ((200, 30, 35), (25, 60, 170), (240, 240, 240), (250, 200, 30), (20, 20, 25), (230, 110, 20),
          (120, 30, 140), (20, 140, 150), (210, 60, 130), (50, 50, 120))
LEGS = ((25, 25, 35), (40, 45, 80), (15, 15, 15), (235, 235, 235), (70, 60, 50), (110, 20, 25), (30, 70, 140))
SUIT = (206, 88, 42)
COAT = (38, 38, 40)
SHOES = ((235, 235, 235), (20, 20, 20), (25, 25, 30), (60, 50, 45), (160, 40, 40))


@dataclass(frozen=True, slots=True)
class Appearance:
    """Colours (RGB) of one figure; ``shorts`` leaves the shanks bare; ``photo`` >= 0 picks a photo cut-out
    (index into ``photo.SOURCES``) for the upper body when the scene's appearance is ``photo``."""

    skin: tuple[int, int, int] = SKIN[1]
    hair: tuple[int, int, int] = HAIR[0]
    shirt: tuple[int, int, int] = SHIRTS[0]
    legs: tuple[int, int, int] = LEGS[0]
    shoes: tuple[int, int, int] = SHOES[0]
    shorts: bool = False
    photo: int = -1

    @classmethod
    def random(cls, rng: np.random.Generator, running: bool) -> Appearance:
        def pick(options: Sequence[tuple[int, int, int]]) -> tuple[int, int, int]:
            return options[int(rng.integers(len(options)))]

        return cls(skin=pick(SKIN), hair=pick(HAIR), shirt=pick(SHIRTS), legs=pick(LEGS), shoes=pick(SHOES),
                   shorts=bool(rng.random() < (0.7 if running else 0.2)))


@dataclass(frozen=True)
class Walker:
    """One person moving along ``path``: at scene time ``start_s`` they are at the path's start.

    ``speed`` is metres per second (a number or a :class:`SpeedProfile`); ``gait`` is ``"walk"`` or ``"run"``;
    ``phase0`` is the gait phase at the path start (0 = right-foot contact).
    """

    path: Path
    speed: SpeedProfile
    gait: str = "walk"
    start_s: float = 0.0
    height_m: float = 1.75
    appearance: Appearance = field(default_factory=Appearance)
    phase0: float = 0.0
    person_id: int = 1

    @classmethod
    def scripted(cls, points: Sequence[tuple[float, float]] | Path, speed: float | SpeedProfile, *,
                 gait: str = "walk", start_s: float = 0.0, height_m: float = 1.75,
                 appearance: Appearance | None = None, phase0: float = 0.0, person_id: int = 1) -> Walker:
        """A walker from plain values: ``points`` is a polyline of ground points (metres)."""
        path = points if isinstance(points, Path) else Path(np.asarray(points, dtype=np.float64))
        prof = speed if isinstance(speed, SpeedProfile) else SpeedProfile(float(speed))
        if gait not in ("walk", "run"):
            raise ValueError(f"gait must be 'walk' or 'run', got {gait!r}")
        return cls(path=path, speed=prof, gait=gait, start_s=start_s, height_m=height_m,
                   appearance=appearance or Appearance(), phase0=phase0, person_id=person_id)

    @property
    def duration_s(self) -> float:
        return self.speed.time_at(self.path.length)


@dataclass(frozen=True, slots=True)
class Stage:
    """The part of the ground where random people walk: lane depths and the camera that sees them."""

    camera: Camera
    near_y: float
    far_y: float
    gait: str = "mixed"
    paths: str = "mixed"
    speed_variation: float = 0.15
    appearance: str = "figure"


def stage_for(camera: Camera, *, near_y: float | None, far_y: float | None, min_person_px: float,
              gait: str, paths: str, speed_variation: float, appearance: str) -> Stage:
    """Lane depths from the camera: near enough that a person is ``min_person_px`` tall, far from the bottom edge."""
    w, h = camera.width, camera.height
    if near_y is None:
        feet = camera.image_to_ground(np.array([w / 2.0, h * 0.97]))
        near_y = float(feet[1]) + 1.0
    if far_y is None:
        far_y = near_y + 1.0
        for y in np.arange(near_y, near_y + 200.0, 0.5):
            (uv, _) = camera.project(np.array([[0.0, y, 0.0], [0.0, y, 1.75]]))
            if uv[0, 1] - uv[1, 1] < min_person_px:
                break
            far_y = float(y)
    return Stage(camera=camera, near_y=near_y, far_y=max(far_y, near_y + 0.5), gait=gait, paths=paths,
                 speed_variation=speed_variation, appearance=appearance)


def _on_screen(camera: Camera, pts: np.ndarray, height_m: float, margin_px: float) -> np.ndarray:
    """Which ground points put (a box around) a standing person at least partly inside the picture."""
    n = len(pts)
    world = np.concatenate([np.column_stack([pts, np.zeros(n)]), np.column_stack([pts, np.full(n, height_m)])])
    uv, depth = camera.project(world)
    foot, head = uv[:n], uv[n:]
    half_w = 0.25 * np.abs(foot[:, 1] - head[:, 1]) + margin_px
    ok = (depth[:n] > 0.5) & (depth[n:] > 0.5)
    return ok & (foot[:, 0] + half_w > 0) & (foot[:, 0] - half_w < camera.width) & (foot[:, 1] > 0) & (
        head[:, 1] < camera.height + margin_px)


def random_walker(stage: Stage, rng: np.random.Generator, person_id: int, start_s: float) -> Walker:
    """A person crossing the picture: path kind, speed, gait and look drawn from ``rng``."""
    running = stage.gait == "run" or (stage.gait == "mixed" and rng.random() < 0.5)
    v0 = float(rng.uniform(3.0, 6.0) if running else rng.uniform(1.0, 1.8))
    height = float(rng.uniform(1.6, 1.95))
    y0 = float(rng.uniform(stage.near_y, stage.far_y))
    cam = stage.camera
    x_mid = float(cam.image_to_ground(np.array([cam.width / 2.0, cam.height / 2.0]))[0])
    x_half = abs(float(cam.image_to_ground(np.array([cam.width * 0.9, cam.ground_to_image(
        np.array([0.0, y0]))[1]]))[0]) - x_mid)
    x0 = x_mid + float(rng.uniform(-x_half, x_half))
    kind = stage.paths if stage.paths != "mixed" else ("line", "diagonal", "curve")[int(rng.integers(3))]
    direction = 1.0 if rng.random() < 0.5 else -1.0
    if kind == "line":
        alpha = math.radians(float(rng.uniform(-12.0, 12.0)))
    elif kind == "diagonal":
        alpha = math.radians(float(rng.uniform(25.0, 60.0)) * (1.0 if rng.random() < 0.5 else -1.0))
    else:
        alpha = math.radians(float(rng.uniform(-20.0, 20.0)))
    heading = alpha if direction > 0 else alpha + math.pi
    if kind == "curve":
        radius = float(rng.uniform(8.0, 30.0))
        turn = 1.0 if rng.random() < 0.5 else -1.0
        cx = x0 - turn * radius * math.sin(heading)
        cy = y0 + turn * radius * math.cos(heading)
        a0 = math.degrees(math.atan2(y0 - cy, x0 - cx))
        full = Path.arc((cx, cy), radius, a0 - turn * 170.0, turn * 340.0)
    else:
        d = np.array([math.cos(heading), math.sin(heading)])
        full = Path.line(tuple(np.array([x0, y0]) - 80.0 * d), tuple(np.array([x0, y0]) + 80.0 * d))
    # Keep the stretch of the path around the anchor that is on screen (plus a margin to enter and leave from
    # outside the picture) and not closer than the near lane.
    s = np.arange(0.0, full.length, 0.2)
    pts = np.array([full.point(v) for v in s])
    ok = _on_screen(cam, pts, height, margin_px=4.0) & (pts[:, 1] >= stage.near_y - 1.0) & (pts[:, 1] <= 400.0)
    anchor = int(np.argmin(np.hypot(pts[:, 0] - x0, pts[:, 1] - y0)))
    lo = hi = anchor
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < len(s) - 1 and ok[hi + 1]:
        hi += 1
    path = full.sub(max(0.0, s[lo] - 1.5), min(full.length, s[hi] + 1.5))
    amp = float(rng.uniform(0.0, stage.speed_variation)) if stage.speed_variation > 0 else 0.0
    prof = SpeedProfile(v0, amp, float(rng.uniform(4.0, 10.0)), float(rng.uniform(0.0, 2 * math.pi)))
    look = Appearance.random(rng, running)
    if stage.appearance == "photo":
        # Legs dressed like the photo above them: the astronaut's orange suit, the cameraman's dark coat.
        which = int(rng.integers(2))
        legs = (SUIT, COAT)[which]
        look = Appearance(skin=look.skin, hair=look.hair, shirt=legs, legs=legs, shoes=SHOES[2], shorts=False,
                          photo=which)
    return Walker(path=path, speed=prof, gait="run" if running else "walk", start_s=start_s, height_m=height,
                  appearance=look, phase0=float(rng.random()), person_id=person_id)


class Schedule:
    """The endless, seeded sequence of passes for every slot.

    Only start times are kept for every pass (a float each); the walkers themselves are rebuilt on demand from
    their seed and kept in a small cache, so memory stays flat however long a live scene runs.
    """

    def __init__(self, stage: Stage, seed: int, people: int, cache_size: int = 64) -> None:
        self.stage = stage
        self.seed = seed
        self.people = people
        self._starts: list[list[float]] = [[] for _ in range(people)]
        self._ends: list[list[float]] = [[] for _ in range(people)]
        self._cache: dict[tuple[int, int], Walker] = {}
        self._cache_size = cache_size

    def walker(self, slot: int, n: int) -> Walker:
        """Pass ``n`` of ``slot`` (its start time must already be known)."""
        key = (slot, n)
        w = self._cache.get(key)
        if w is None:
            rng = np.random.default_rng((self.seed, slot, n))
            w = random_walker(self.stage, rng, 1 + slot + self.people * n, self._starts[slot][n])
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = w
        return w

    def _extend(self, slot: int) -> None:
        starts, ends = self._starts[slot], self._ends[slot]
        n = len(starts)
        rng = np.random.default_rng((self.seed, slot, n))
        w = random_walker(self.stage, rng, 1 + slot + self.people * n, 0.0)
        if n == 0:
            # Start part-way along so the picture is populated at t = 0.
            start = -w.duration_s * float(np.random.default_rng((self.seed, slot, 0, 2)).uniform(0.1, 0.7))
        else:
            start = ends[-1] + float(np.random.default_rng((self.seed, slot, n, 1)).uniform(0.5, 3.0))
        starts.append(start)
        ends.append(start + w.duration_s)

    def active(self, t: float) -> list[Walker]:
        """The walkers on their path at scene time ``t`` (at most one per slot)."""
        out = []
        for slot in range(self.people):
            starts, ends = self._starts[slot], self._ends[slot]
            if not starts:
                self._extend(slot)
            while ends[-1] < t:
                self._extend(slot)
            n = int(np.searchsorted(starts, t, side="right")) - 1
            if n >= 0 and t <= ends[n]:
                out.append(self.walker(slot, n))
        return out
