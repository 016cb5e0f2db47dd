"""Fixtures for moriarty: a side-view running/walking figure with exact truth, and a self-built pose model.

``Gait`` generates keypoints (BlazePose-33 and COCO-17) of a person moving overground past a fixed camera:
planted feet during stance, a swing arc, knees from two-link inverse kinematics, trunk lean and arm swing. The
truth (cadence, stride length, contact time, joint angles) is known by construction or computed here with a
formula independent of moriarty's (acos of normalised dot products).

``colour_model`` builds a tiny torch model that "detects" each COCO-17 joint as a dot of its own colour, and
exports it to ONNX and TorchScript, so the real top-down loading, batching, decoding and crop <-> frame mapping
can be tested end to end against known keypoint positions.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from flowgraph.nodes.moriarty.skeleton import BLAZEPOSE33, COCO17


@dataclass
class Gait:
    """A person moving along +x at constant speed, seen side-on (slightly oblique so left and right separate)."""

    cadence_spm: float = 170.0
    speed_mps: float = 3.4
    duty: float = 0.35  # stance fraction of a stride (0.35 running, 0.62 walking)
    duty_left: float | None = None  # a different stance fraction for the left foot (a limp)
    bounce_m: float = 0.03  # vertical oscillation of the hips, lowest at mid-stance
    stature_m: float = 1.75
    px_per_m: float = 170.0
    origin: tuple[float, float] = (100.0, 620.0)  # image position of world (0, ground)
    lift_m: float = 0.40  # how high the ankle rises in swing
    lean_deg: float = 8.0
    elbow_deg: float = 95.0
    arm_swing_deg: float = 35.0
    phase0: float = 0.0  # right-leg phase at t = 0
    depth_px: tuple[float, float] = (7.0, -4.0)  # image offset of the far (left) side
    noise_px: float = 0.0
    seed: int = 0
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        h = self.stature_m
        self.thigh, self.shank = 0.245 * h, 0.246 * h
        self.trunk, self.neck = 0.288 * h, 0.10 * h
        self.upper_arm, self.forearm = 0.186 * h, 0.146 * h
        self.ankle_h = 0.039 * h
        self.period = 120.0 / self.cadence_spm
        self.stride_m = self.speed_mps * self.period
        # hip height: the stance leg must reach the planted foot at the ends of stance
        reach = 0.985 * (self.thigh + self.shank)
        half = self.stride_m * max(self.duty, self.duty_left or 0.0) / 2
        self.hip_h = self.ankle_h + min(math.sqrt(max(reach ** 2 - half ** 2, 0.01)), 0.53 * h - self.ankle_h)
        self.hip_h -= self.bounce_m

    # -- world model (metres, x forward, y up) ------------------------------------------------------------------
    def _ankle(self, t: float, offset: float, duty: float) -> tuple[np.ndarray, bool]:
        cycles = t / self.period + self.phase0 + offset
        n = math.floor(cycles)
        phi = cycles - n
        x_contact = (n - self.phase0 - offset) * self.stride_m + self.stride_m * duty / 2
        if phi < duty:
            return np.array([x_contact, self.ankle_h]), True
        s = (phi - duty) / (1 - duty)
        x = x_contact + self.stride_m * (1 - math.cos(math.pi * s)) / 2
        return np.array([x, self.ankle_h + self.lift_m * math.sin(math.pi * s)]), False

    def _knee(self, hip: np.ndarray, ankle: np.ndarray) -> np.ndarray:
        d_vec = ankle - hip
        d = min(float(np.hypot(*d_vec)), 0.999 * (self.thigh + self.shank))
        along = (self.thigh ** 2 + d ** 2 - self.shank ** 2) / (2 * d)
        across = math.sqrt(max(self.thigh ** 2 - along ** 2, 0.0))
        u = d_vec / np.hypot(*d_vec)
        normal = np.array([-u[1], u[0]])
        if normal[0] < 0:  # knees bend forwards (+x)
            normal = -normal
        return hip + along * u + across * normal

    def world(self, t: float) -> dict[str, np.ndarray]:
        """Named joints in metres for time ``t``; plus the contact state of each foot."""
        phase = t / self.period + self.phase0
        bob = self.bounce_m * math.cos(2 * math.pi * (2 * phase - self.duty))
        hip = np.array([self.speed_mps * t, self.hip_h - bob])
        pts: dict[str, np.ndarray] = {}
        lean = math.radians(self.lean_deg)
        up = np.array([math.sin(lean), math.cos(lean)])
        shoulder = hip + self.trunk * up
        self.contact = {}
        for side, offset in (("right", 0.0), ("left", 0.5)):
            duty = self.duty_left if side == "left" and self.duty_left is not None else self.duty
            ankle, contact = self._ankle(t, offset, duty)
            self.contact[side] = contact
            pts[f"{side}_hip"] = hip
            pts[f"{side}_knee"] = self._knee(hip, ankle)
            pts[f"{side}_ankle"] = ankle
            pts[f"{side}_heel"] = ankle + np.array([-0.06, -0.03])
            pts[f"{side}_foot_index"] = ankle + np.array([0.15, -0.05])
            # arms swing opposite to the legs
            phase = 2 * math.pi * (t / self.period + self.phase0 + offset + 0.5)
            swing = math.radians(self.arm_swing_deg) * math.sin(phase)
            down = -up
            rot = np.array([[math.cos(swing), -math.sin(swing)], [math.sin(swing), math.cos(swing)]])
            arm = rot @ down
            elbow = shoulder + self.upper_arm * arm
            bend = math.radians(180 - self.elbow_deg)  # forearm turns forwards/up from the upper arm line
            rot2 = np.array([[math.cos(bend), -math.sin(bend)], [math.sin(bend), math.cos(bend)]])
            pts[f"{side}_shoulder"] = shoulder
            pts[f"{side}_elbow"] = elbow
            pts[f"{side}_wrist"] = elbow + self.forearm * (rot2 @ arm)
            for name in ("pinky", "index", "thumb"):
                pts[f"{side}_{name}"] = pts[f"{side}_wrist"] + self.forearm * 0.25 * (rot2 @ arm)
        nose = shoulder + self.neck * up + np.array([0.08, 0.0])
        pts["nose"] = nose
        for side in ("left", "right"):
            pts[f"{side}_eye"] = nose + np.array([-0.03, 0.03])
            pts[f"{side}_eye_inner"] = nose + np.array([-0.02, 0.03])
            pts[f"{side}_eye_outer"] = nose + np.array([-0.04, 0.03])
            pts[f"{side}_ear"] = nose + np.array([-0.11, 0.01])
        pts["mouth_left"] = pts["mouth_right"] = nose + np.array([-0.01, -0.04])
        return pts

    # -- image -------------------------------------------------------------------------------------------------
    def image_points(self, t: float) -> dict[str, np.ndarray]:
        """Named joints in image pixels (continuous coordinates), without noise."""
        out = {}
        ox, oy = self.origin
        for name, (x, y) in self.world(t).items():
            p = np.array([ox + x * self.px_per_m, oy - y * self.px_per_m])
            if name.startswith("left") or name == "mouth_left":
                p = p + np.array(self.depth_px)
            out[name] = p
        return out

    def keypoints(self, t: float, skeleton: str = "blazepose33", score: float = 0.95) -> np.ndarray:
        """``(K, 3)`` keypoints with Gaussian pixel noise of ``noise_px``."""
        names = (BLAZEPOSE33 if skeleton == "blazepose33" else COCO17).names
        pts = self.image_points(t)
        kps = np.array([[*pts[n], score] for n in names], dtype=np.float64)
        if self.noise_px:
            kps[:, :2] += self.rng.normal(0, self.noise_px, size=(len(names), 2))
        return kps

    def bbox(self, t: float, margin: float = 12.0) -> tuple[float, float, float, float]:
        pts = np.array(list(self.image_points(t).values()))
        return (float(pts[:, 0].min() - margin), float(pts[:, 1].min() - 3 * margin),
                float(pts[:, 0].max() + margin), float(pts[:, 1].max() + margin))

    def foot_world(self, t: float) -> tuple[float, float]:
        return (self.speed_mps * t, 0.0)

    def truth_angles(self, t: float) -> dict[str, float]:
        """Contract angles from the exact image points, by acos of normalised dot products."""
        p = self.image_points(t)

        def at(a: str, v: str, b: str) -> float:
            u, w = p[a] - p[v], p[b] - p[v]
            c = float(np.dot(u, w) / (np.linalg.norm(u) * np.linalg.norm(w)))
            return math.degrees(math.acos(max(-1.0, min(1.0, c))))

        out = {}
        for s in ("left", "right"):
            out[f"{s}_knee"] = at(f"{s}_hip", f"{s}_knee", f"{s}_ankle")
            out[f"{s}_hip"] = at(f"{s}_shoulder", f"{s}_hip", f"{s}_knee")
            out[f"{s}_elbow"] = at(f"{s}_shoulder", f"{s}_elbow", f"{s}_wrist")
            out[f"{s}_shoulder"] = at(f"{s}_hip", f"{s}_shoulder", f"{s}_elbow")
        trunk = (p["left_shoulder"] + p["right_shoulder"]) / 2 - (p["left_hip"] + p["right_hip"]) / 2
        out["trunk_lean"] = math.degrees(math.acos(-trunk[1] / np.linalg.norm(trunk)))
        return out

    def contact_time_s(self, side: str = "right") -> float:
        duty = self.duty_left if side == "left" and self.duty_left is not None else self.duty
        return duty * self.period


@pytest.fixture
def gait() -> type[Gait]:
    return Gait


# -- a self-built top-down model: one colour per COCO-17 joint ---------------------------------------------------

def joint_colours() -> np.ndarray:
    """17 well separated RGB colours from the {0, 128, 255} lattice, each with a full channel.

    Any two are >= 128 apart, and a dot's anti-aliased edge over the black background (at most 128 per channel)
    matches none of them.
    """
    lattice = [c for c in itertools.product((0, 128, 255), repeat=3) if max(c) == 255 and c != (255, 255, 255)]
    return np.array(lattice[:17], dtype=np.float32)


def draw_dots(image: np.ndarray, keypoints: np.ndarray, radius: int = 6) -> None:
    """Draw each COCO-17 keypoint as a filled disc of its colour (sub-pixel centres, anti-aliased)."""
    colours = joint_colours()
    shift = 4
    for (x, y, _), colour in zip(keypoints, colours, strict=True):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        # continuous coordinates -> pixel-centre coordinates for OpenCV
        centre = (round((x - 0.5) * (1 << shift)), round((y - 0.5) * (1 << shift)))
        cv2.circle(image, centre, radius << shift, tuple(int(c) for c in colour), -1, cv2.LINE_AA, shift)


def build_colour_model(kind: str, stride: int = 4, split: float = 2.0):
    """A torch module: colour similarity -> blurred heatmaps (``heatmap``) or x/y profiles (``simcc``)."""
    import torch
    from torch.nn import functional

    colours = torch.tensor(joint_colours())
    mean = torch.tensor([123.675, 116.28, 103.53]).reshape(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).reshape(1, 3, 1, 1)
    g = torch.exp(-torch.arange(-6, 7, dtype=torch.float32) ** 2 / (2 * 2.0 ** 2))
    g = g / g.sum()

    class ColourPose(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("colours", colours.reshape(1, 17, 3, 1, 1))
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)
            self.register_buffer("gx", g.reshape(1, 1, 1, -1).repeat(17, 1, 1, 1))
            self.register_buffer("gy", g.reshape(1, 1, -1, 1).repeat(17, 1, 1, 1))

        def forward(self, x: torch.Tensor) -> Any:
            buffers: dict[str, Any] = dict(self.named_buffers())
            rgb = x * buffers["std"] + buffers["mean"]
            d2 = ((rgb.unsqueeze(1) - buffers["colours"]) ** 2).sum(2)
            heat = torch.exp(-d2 / (2 * 30.0 ** 2))
            heat = functional.conv2d(heat, buffers["gx"], padding=(0, 6), groups=17)
            heat = functional.conv2d(heat, buffers["gy"], padding=(6, 0), groups=17)
            if kind == "heatmap":
                return (functional.avg_pool2d(heat, stride) * 2.0).clamp(max=1.0)
            # 1-D profiles through the peak (max over the other axis), upsampled to split_ratio bins per pixel
            px = functional.interpolate(heat.amax(2), scale_factor=split, mode="linear", align_corners=False)
            py = functional.interpolate(heat.amax(3), scale_factor=split, mode="linear", align_corners=False)
            return px, py

    return ColourPose().eval()


def export_model(module, path: Path, runtime: str, input_hw: tuple[int, int], simcc: bool = False) -> Path:
    import torch

    example = torch.zeros(1, 3, *input_hw)
    outputs = ["simcc_x", "simcc_y"] if simcc else ["heatmaps"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings; the legacy ONNX exporter warns that it is legacy
        if runtime == "torchscript":
            torch.jit.trace(module, example).save(str(path))
            return path
        torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=["input"], output_names=outputs,
                          dynamic_axes={"input": {0: "n"}, **{o: {0: "n"} for o in outputs}})
    return path


@pytest.fixture(scope="session")
def colour_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The colour model exported four ways: onnx/torchscript x heatmap/simcc, input 256x192."""
    folder = tmp_path_factory.mktemp("models")
    out = {}
    for kind in ("heatmap", "simcc"):
        module = build_colour_model(kind)
        out[f"onnx-{kind}"] = export_model(module, folder / f"{kind}.onnx", "onnx", (256, 192), kind == "simcc")
        out[f"torchscript-{kind}"] = export_model(module, folder / f"{kind}.pt", "torchscript", (256, 192))
    return out
