"""Backgrounds, drawn once per scene: the ground plane seen through the camera, and a sky/stand band above.

- ``field``: mown grass with stripes and white pitch lines.
- ``track``: a red running track with white lane lines (lanes along world X), grass beyond.
- ``photo``: real photographs that scikit-image ships (``grass.png`` as the ground texture, the skyline behind
  the cameraman in ``camera.png`` above the horizon) — read from disk, nothing downloads.
- ``plain``: flat grey-green, for debugging.

The ground is painted as a top-down texture in world metres and warped through the ground homography, so
stripes and lines shrink with distance exactly as people do.
"""

from __future__ import annotations

import cv2
import numpy as np

from .camera import Camera

BACKGROUNDS = ("field", "track", "photo", "plain")
_PX_PER_M = 20.0


def make_background(kind: str, camera: Camera, seed: int, track_y0: float = 1.0) -> np.ndarray:
    """An RGB ``(H, W, 3)`` uint8 background for ``camera``; a track's first lane line is at Y = ``track_y0``."""
    if kind not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}; got {kind!r}")
    w, h = camera.width, camera.height
    rng = np.random.default_rng((seed, 7))
    if kind == "plain":
        return np.full((h, w, 3), (96, 118, 96), np.uint8)
    # Evaluate the ground per pixel (2x2 supersampled, then averaged) by mapping pixels to world metres.
    ss = 2
    uu, vv = np.meshgrid((np.arange(w * ss, dtype=np.float32) + 0.5) / ss,
                         (np.arange(h * ss, dtype=np.float32) + 0.5) / ss)
    hm = camera.image_to_world.astype(np.float32)
    den = hm[2, 0] * uu + hm[2, 1] * vv + hm[2, 2]
    # The ground is on the bottom row's side of the horizon (where the homography's denominator changes sign).
    sign = np.sign(hm[2, 0] * w / 2.0 + hm[2, 1] * h + hm[2, 2])
    den = den * sign
    below = den > 1e-6
    safe = np.where(below, den, 1.0)
    gx = sign * (hm[0, 0] * uu + hm[0, 1] * vv + hm[0, 2]) / safe
    gy = sign * (hm[1, 0] * uu + hm[1, 1] * vv + hm[1, 2]) / safe
    below &= gy < 2000.0
    gx = np.where(below, gx, 0.0)
    gy = np.where(below, gy, 0.0)
    ground = _ground(kind, gx, gy, rng, track_y0)
    horizon = camera.horizon_v()
    sky = cv2.resize(_sky(kind, w, h, rng, horizon), (w * ss, h * ss), interpolation=cv2.INTER_LINEAR)
    # Haze: distant ground fades toward a flat colour, which also hides aliasing near the horizon.
    haze = np.clip((gy - 60.0) / 250.0, 0.0, 0.85)[..., None]
    ground = ground * (1.0 - haze) + np.array([120, 150, 120], np.float32) * haze
    out = np.where(below[..., None], ground, sky.astype(np.float32))
    out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
    noise = rng.normal(0.0, 2.5, (h, w, 1)).astype(np.float32)
    return np.clip(out + noise, 0, 255).astype(np.uint8)


def _ground(kind: str, gx: np.ndarray, gy: np.ndarray, rng: np.random.Generator, y0: float) -> np.ndarray:
    """Ground colour (float32 RGB) at world points ``(gx, gy)`` in metres."""
    tile = _grass_tile(rng, photo=kind == "photo")
    # The grass photo shows blades close up: give it a finer scale than the procedural tile.
    ppm = 120.0 if kind == "photo" else _PX_PER_M
    mx = np.mod(gx * ppm, tile.shape[1]).astype(np.float32)
    my = np.mod(gy * ppm, tile.shape[0]).astype(np.float32)
    out: np.ndarray = cv2.remap(tile, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP).astype(np.float32)
    white = np.array([245, 245, 245], np.float32)
    if kind in ("field", "photo"):
        stripe = (np.floor(gx / 5.0) % 2) * 2 - 1
        out = out * (1.0 + 0.07 * stripe)[..., None].astype(np.float32)
        # Pitch lines: touchlines along X at Y = 2 m and 60 m, a halfway line at X = 0 between them.
        line = (np.abs(gy - 2.0) <= 0.06) | (np.abs(gy - 60.0) <= 0.06) | (
            (np.abs(gx) <= 0.06) & (gy >= 2.0) & (gy <= 60.0))
        out[line] = white
    else:
        track = (gy >= y0) & (gy <= y0 + 8 * 1.22)
        noise = rng.normal(0.0, 1.0, (256, 256)).astype(np.float32)
        grain = cv2.remap(noise, np.mod(mx, 256.0), np.mod(my, 256.0), cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_WRAP)
        tartan = np.array([178, 74, 58], np.float32)[None, :] * (1.0 + 0.06 * grain[track])[:, None]
        out[track] = tartan
        lane = np.abs(np.mod(gy - y0 + 0.61, 1.22) - 0.61) <= 0.025
        out[lane & (gy >= y0 - 0.03) & (gy <= y0 + 0.03 + 8 * 1.22)] = white
    return out


def _grass_tile(rng: np.random.Generator, photo: bool, size: int = 512) -> np.ndarray:
    """A tileable grass texture (float32 RGB), from scikit-image's real grass photo or from noise."""
    base = np.array([62, 122, 52], np.float32)
    if photo:
        tile = _skimage_image("grass.png")
        if tile is not None:
            g = tile.astype(np.float32) / 255.0
            return np.ascontiguousarray(base[None, None, :] * (0.55 + 0.9 * g[..., None]))
    small = rng.normal(0.0, 1.0, (size // 16, size // 16)).astype(np.float32)
    big = cv2.resize(np.tile(small, (3, 3)), (size * 3, size * 3), interpolation=cv2.INTER_CUBIC)
    blotch = big[size:2 * size, size:2 * size]  # the middle of a periodic extension tiles seamlessly
    fine = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    return np.ascontiguousarray(base[None, None, :] * (1.0 + 0.07 * blotch[..., None] + 0.05 * fine[..., None]))


def _sky(kind: str, w: int, h: int, rng: np.random.Generator, horizon: float) -> np.ndarray:
    if kind == "photo":
        cam = _skimage_image("camera.png")
        if cam is not None:
            # The cameraman photo's skyline right of the tripod (x >= 335): buildings and sky over a field.
            strip = cam[40:236, 335:512]
            strip = np.concatenate([strip, strip[:, ::-1]], axis=1)
            reps = w // strip.shape[1] + 1
            band = np.tile(strip, (1, reps))[:, :w]
            scale = h / 360.0
            band = cv2.resize(band, (w, max(int(band.shape[0] * scale * 0.6), 8)), interpolation=cv2.INTER_AREA)
            out = np.empty((h, w, 3), np.uint8)
            top = np.linspace(150, 205, h, dtype=np.float32)[:, None]
            out[:] = np.stack([top * 0.85, top * 0.92, top * 1.05 + 10], axis=-1).clip(0, 255).astype(np.uint8)
            # Put the band's bottom (the far field edge) on the horizon row; tint the grey photo slightly.
            return _place_band(out, band, round(horizon) + 6)
    sky = np.empty((h, w, 3), np.float32)
    rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    sky[..., 0] = 150 + 60 * rows
    sky[..., 1] = 185 + 45 * rows
    sky[..., 2] = 235 + 15 * rows
    return sky.clip(0, 255).astype(np.uint8)


def _place_band(out: np.ndarray, band: np.ndarray, bottom: int) -> np.ndarray:
    """Paste the skyline band so that its last row lands on row ``bottom`` of ``out``."""
    bottom = min(bottom, out.shape[0])
    bh = min(band.shape[0], bottom)
    if bh <= 0:
        return out
    tinted = np.stack([band * 0.95, band * 0.98, band * 1.04], axis=-1).clip(0, 255).astype(np.uint8)
    out[bottom - bh:bottom] = tinted[band.shape[0] - bh:]
    return out


def _skimage_image(name: str) -> np.ndarray | None:
    """A picture that scikit-image ships inside its wheel (grayscale), or None if it is not installed."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), "data", name)
    return cv2.imread(path, cv2.IMREAD_GRAYSCALE) if os.path.exists(path) else None
