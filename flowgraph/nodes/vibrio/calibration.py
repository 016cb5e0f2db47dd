"""Ground-plane calibration: a homography from image pixels to metres on the ground, or a person-height prior.

With four or more image↔world correspondences of points *on the ground* (YAML ``calibration:`` as a list of
``{image: [u, v], world: [X, Y]}``), :func:`fit_ground_plane` solves the homography by the normalised direct
linear transform (Hartley–Zisserman): points are centred and scaled before the SVD so pixel and metre units do
not skew the least-squares fit. A person's foot point then maps to metres exactly, whatever the perspective.

Without calibration, :func:`prior_metres_per_pixel` turns a box height into a local scale from an assumed person
height. That scale only holds across the image plane at the person's depth, so speeds from it carry a lower
confidence (see :mod:`.speed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Default height assumed for the uncalibrated prior (adult mean, shoes on).
PERSON_HEIGHT_M = 1.75

class CalibrationError(ValueError):
    """Calibration points that cannot define a ground plane."""


@dataclass(frozen=True)
class GroundPlane:
    """Image → ground homography with its fit quality."""

    image_to_world: np.ndarray
    #: Root-mean-square distance (metres) between the given world points and the mapped image points.
    rms_error_m: float
    points: int
    #: Sign of the homogeneous scale on the ground's side of the horizon (at the calibration points).
    side: float = 1.0

    def to_world(self, points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Map ``(N, 2)`` pixel points to ``(N, 2)`` metres; points at or above the horizon become NaN."""
        return _apply(self.image_to_world, np.asarray(points, dtype=np.float64).reshape(-1, 2), self.side)

    def to_image(self, points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Map ``(N, 2)`` ground points (metres) to pixels."""
        return _apply(np.linalg.inv(self.image_to_world), np.asarray(points, dtype=np.float64).reshape(-1, 2))


def _apply(matrix: np.ndarray, points: np.ndarray, side: float = 0.0) -> np.ndarray:
    """Apply a homography; with ``side`` set, points whose scale has the other sign (beyond the horizon) → NaN."""
    homogeneous = np.c_[points, np.ones(len(points))] @ matrix.T
    w = homogeneous[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = homogeneous[:, :2] / w
    bad = np.abs(w[:, 0]) < 1e-12
    if side:
        bad |= w[:, 0] * side <= 0
    out[bad] = np.nan
    return out


def _normaliser(points: np.ndarray) -> np.ndarray:
    """Similarity that moves the centroid to 0 and the mean distance to √2."""
    centre = points.mean(axis=0)
    spread = np.sqrt(((points - centre) ** 2).sum(axis=1)).mean()
    s = np.sqrt(2) / max(spread, 1e-12)
    return np.array([[s, 0, -s * centre[0]], [0, s, -s * centre[1]], [0, 0, 1]])


def _check_spread(points: np.ndarray, what: str) -> None:
    """Reject point sets where no four points span an area (all on one line)."""
    centred = points - points.mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    if singular[-1] <= 1e-6 * max(singular[0], 1e-12):
        raise CalibrationError(f"calibration {what} points all lie on one line; need 4+ points spanning an area")


def homography(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares homography mapping ``source`` (N, 2) onto ``target`` (N, 2), N ≥ 4 (normalised DLT)."""
    ts, tt = _normaliser(source), _normaliser(target)
    s = np.c_[source, np.ones(len(source))] @ ts.T
    t = np.c_[target, np.ones(len(target))] @ tt.T
    rows = []
    for (x, y, _), (u, v, _) in zip(s, t, strict=True):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    _, _, vt = np.linalg.svd(np.asarray(rows))
    h = vt[-1].reshape(3, 3)
    matrix = np.linalg.inv(tt) @ h @ ts
    return matrix / matrix[2, 2] if abs(matrix[2, 2]) > 1e-12 else matrix


def fit_ground_plane(points: Sequence[dict[str, Any]]) -> GroundPlane:
    """Fit the image → ground homography from ``[{image: [u, v], world: [X, Y]}, ...]`` (4 or more)."""
    if len(points) < 4:
        raise CalibrationError(f"calibration needs at least 4 image↔world points, got {len(points)}")
    try:
        image = np.array([[float(v) for v in p["image"]] for p in points])
        world = np.array([[float(v) for v in p["world"]] for p in points])
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"calibration points must be {{image: [u, v], world: [X, Y]}}: {exc}") from exc
    if image.shape != (len(points), 2) or world.shape != (len(points), 2):
        raise CalibrationError("calibration points must have two image and two world coordinates each")
    if not (np.isfinite(image).all() and np.isfinite(world).all()):
        raise CalibrationError("calibration points must be finite numbers")
    _check_spread(image, "image")
    _check_spread(world, "world")
    matrix = homography(image, world)
    if not np.isfinite(matrix).all() or abs(np.linalg.det(matrix)) < 1e-15:
        raise CalibrationError("calibration points give a degenerate homography (check for repeated points)")
    w = np.c_[image, np.ones(len(image))] @ matrix[2]
    if not ((w > 0).all() or (w < 0).all()):
        raise CalibrationError("calibration image points lie on both sides of the horizon the world points imply")
    mapped = _apply(matrix, image)
    rms = float(np.sqrt(np.mean(((mapped - world) ** 2).sum(axis=1))))
    return GroundPlane(matrix, rms, len(points), float(np.sign(w[0])))


def prior_metres_per_pixel(box_height_px: float, person_height_m: float = PERSON_HEIGHT_M) -> float:
    """Local scale (m/px) at a person's depth, from their box height and an assumed body height."""
    return person_height_m / max(box_height_px, 1.0)
