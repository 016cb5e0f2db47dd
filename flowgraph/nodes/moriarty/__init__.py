"""moriarty: pose estimation and biomechanics for every tracked person (node type ``moriarty``).

Modules: ``backend`` (interface, frame checks), ``mediapipe_backend`` (bundled BlazePose-33), ``topdown``
(ONNX/TorchScript COCO-17 models), ``crops``/``decode`` (top-down geometry and output decoding), ``skeleton``
(keypoint layouts), ``angles``, ``com``, ``gait``, ``grf``, ``smoothing``, ``biomech`` (per-person state) and
``node`` (the graph node). Only ``node`` is imported when the catalog is listed; it imports the rest lazily.
"""
