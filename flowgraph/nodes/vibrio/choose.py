"""``backend: auto``: the best person detector available here, and why it was chosen.

In order: a model file named in ``model`` (its kind from the suffix); BlazePose's trained detector when LiteRT and
the MediaPipe wheel are installed (motion-guided crops on a fixed camera, a tile grid on a moving one);
background subtraction (``motion``) on a fixed camera; OpenCV's HOG people detector, which always works but finds
few people shorter than ~130 px. ``flowgraph validate --plan`` prints the choice and the reason.
"""

from __future__ import annotations

from pathlib import Path

MODEL_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".torchscript": "torchscript", ".tflite": "blazepose"}


def choose_backend(backend: str, camera: str, model: str = "") -> tuple[str, str]:
    """``(backend, why)`` for the configured ``backend`` (``auto`` or a name)."""
    if backend != "auto":
        return backend, "set in the graph"
    if model:
        kind = MODEL_SUFFIXES.get(Path(model).suffix.lower())
        if kind is not None:
            return kind, f"auto: model file {Path(model).name} ({kind})"
    from .blazepose import available

    missing = available()
    if missing is None:
        where = "motion-guided crops (fixed camera)" if camera == "fixed" else "a tile grid (moving camera)"
        return "blazepose", f"auto: trained BlazePose person detector via LiteRT over {where}"
    if camera == "fixed":
        return "motion", f"auto: fixed camera, background subtraction ({missing})"
    return "hog", f"auto: moving camera and no trained model ({missing}); HOG misses people under ~130 px"
