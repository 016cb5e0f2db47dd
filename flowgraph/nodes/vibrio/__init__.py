"""Vibrio: people detection, multi-object tracking and calibrated ground speed.

Modules by concept: ``detector`` (the backend interface and frame checks) with one module per backend (``hog``,
``motion``, ``onnx``, ``torchscript``; ``yolo`` holds the box decoding and NMS those two share), ``tracker``
(ByteTrack-style association), ``calibration`` (image → ground-plane homography), ``speed`` (smoothed ground
speed with physics limits) and ``node`` (the graph node). Nothing here imports torch or OpenCV at package import.
"""
