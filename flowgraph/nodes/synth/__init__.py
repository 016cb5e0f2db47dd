"""Synthetic scenes with exact ground truth for flowgraph's media, vibrio and moriarty tests.

``Scene(SceneConfig(...)).render(i)`` gives an RGB frame and its :class:`FrameTruth`; ``stamp`` draws and reads a
machine-readable frame counter + capture time that survives H.264. numpy + OpenCV only, deterministic per seed.
"""

from .camera import Camera, CameraConfig
from .paths import Path, SpeedProfile
from .people import Appearance, Walker
from .scene import Scene, SceneConfig
from .truth import FrameTruth, PersonTruth

__all__ = ["Appearance", "Camera", "CameraConfig", "FrameTruth", "Path", "PersonTruth", "Scene", "SceneConfig",
           "SpeedProfile", "Walker"]
