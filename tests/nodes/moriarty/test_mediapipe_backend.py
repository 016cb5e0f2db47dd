"""MediaPipe BlazePose on real photos shipped by scikit-image and on synth's rendered people; offline only."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from skimage import data

from flowgraph.nodes.moriarty.angles import joint_angles
from flowgraph.nodes.moriarty.mediapipe_backend import MediaPipeBackend, bundled_model
from flowgraph.nodes.moriarty.skeleton import BLAZEPOSE33, gate


@pytest.fixture(scope="module")
def backend() -> Iterator[MediaPipeBackend]:
    b = MediaPipeBackend()
    yield b
    b.close()


def visible(kps: np.ndarray, name: str) -> np.ndarray | None:
    return BLAZEPOSE33.point(gate(kps, 0.5, (512, 512)), name)


def assert_plausible(kps: np.ndarray, box: tuple[float, float, float, float], inside: float = 1.0) -> None:
    """Head and shoulders above the hips (where seen); every confident joint inside the person's box.

    Not "nose above shoulders": the cameraman stoops to his camera.
    """
    nose, ls, rs = visible(kps, "nose"), visible(kps, "left_shoulder"), visible(kps, "right_shoulder")
    assert nose is not None and ls is not None and rs is not None
    for hip in (visible(kps, "left_hip"), visible(kps, "right_hip")):
        if hip is not None:
            assert hip[1] > max(ls[1], rs[1]) and hip[1] > nose[1]
    g = gate(kps, 0.5, (512, 512))  # as the node does: nothing outside the picture was seen
    seen = g[np.isfinite(g[:, 0])]
    x1, y1, x2, y2 = box
    assert len(seen) >= 10
    within = (seen[:, 0] >= x1) & (seen[:, 0] <= x2) & (seen[:, 1] >= y1) & (seen[:, 1] <= y2)
    assert within.mean() >= inside, seen[~within]


def test_nothing_is_downloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundled complexity-1 model runs with every download path of the package cut off."""
    from mediapipe.python.solutions import download_utils

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"attempted download: {args}")

    monkeypatch.setattr(download_utils, "download_oss_model", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    b = MediaPipeBackend()
    try:
        assert b.infer(data.astronaut(), None)[0] is not None
    finally:
        b.close()
    assert bundled_model(1).name == "pose_landmark_full.tflite"


@pytest.mark.parametrize("complexity", [0, 2])
def test_unbundled_complexities_are_refused(complexity: int) -> None:
    with pytest.raises(RuntimeError, match="not bundled"):
        MediaPipeBackend(complexity)


def test_astronaut_whole_frame_and_box(backend: MediaPipeBackend) -> None:
    image = data.astronaut()
    person = (0.0, 0.0, 400.0, 512.0)  # Eileen Collins, left of the rocket; the helmet she holds is at the right
    whole = backend.infer(image, None)[0]
    assert whole is not None and whole.shape == (33, 3)
    assert_plausible(whole, person)
    boxed = backend.infer(image, np.array([[20.0, 10.0, 380.0, 512.0]]))[0]
    assert boxed is not None
    assert_plausible(boxed, person)
    # the face is found in the same place either way (a check of the crop -> frame mapping)
    assert np.hypot(*(visible(whole, "nose") - visible(boxed, "nose"))) < 15  # type: ignore[operator]


def test_cameraman(backend: MediaPipeBackend) -> None:
    image = np.repeat(data.camera()[:, :, None], 3, axis=2)
    found = backend.infer(image, None)[0]
    assert found is not None
    hips = [visible(found, "left_hip"), visible(found, "right_hip")]
    assert all(h is not None for h in hips)  # he is seen down to the thighs
    # The man, his hands and the camera he holds. MediaPipe stretches his far hand past the camera into the
    # background (~x 420), so one or two hand points of 17+ fall outside: 90 % must be inside.
    assert_plausible(found, (30.0, 40.0, 400.0, 512.0), inside=0.9)


def test_no_person_gives_none(backend: MediaPipeBackend) -> None:
    assert backend.infer(np.zeros((480, 640, 3), np.uint8), None) == [None]
    sky = np.broadcast_to(np.linspace(80, 200, 640, dtype=np.uint8)[None, :, None], (480, 640, 3)).copy()
    assert backend.infer(sky, np.array([[100.0, 100.0, 300.0, 400.0]])) == [None]


def test_synthetic_rendered_runners(backend: MediaPipeBackend) -> None:
    """What MediaPipe finds on synth's rendered figures (reported; loose bounds: they are cartoons)."""
    from flowgraph.nodes.synth import Scene, SceneConfig

    scene = Scene(SceneConfig(people=1, seed=3, gait="run", paths="line", min_person_px=300))
    found, errors, angle_errors = 0, [], []
    frames = range(0, 60, 6)
    for i in frames:
        image, truth = scene.render(i)
        person = truth.people[0]
        kps = backend.infer(image, np.array([person.bbox]))[0]
        if kps is None:
            continue
        found += 1
        g = gate(kps, 0.5)
        exact = np.array([person.keypoints[n][:2] for n in BLAZEPOSE33.names])
        seen = np.isfinite(g[:, 0])
        errors.append(float(np.median(np.hypot(*(g[seen, :2] - exact[seen]).T))) / (person.bbox[3] - person.bbox[1]))
        angles = joint_angles(g, BLAZEPOSE33)
        angle_errors += [abs(angles[k] - v) for k, v in person.joint_angles.items() if angles.get(k) is not None]
    print(f"MediaPipe on synth figures: found {found}/{len(frames)}, median keypoint error "
          f"{np.median(errors):.3f} of person height, joint-angle error median {np.median(angle_errors):.1f} deg, "
          f"p90 {np.percentile(angle_errors, 90):.1f} deg")
    assert found >= 8
    assert np.median(errors) < 0.06


def test_tracking_mode_keeps_a_bounded_graph_per_person() -> None:
    b = MediaPipeBackend(tracking=True, max_graphs=2)
    try:
        image = data.astronaut()
        box = np.array([[20.0, 10.0, 380.0, 512.0]])
        for key in ("a", "b", "c"):
            assert b.infer(image, box, [key])[0] is not None
        assert list(b._graphs) == ["b", "c"]  # "a" was the least recently used
        again = b.infer(image, box, ["c"])[0]  # video mode: follows from the previous landmarks
        assert again is not None
        b.forget("b")
        assert list(b._graphs) == ["c"]
    finally:
        b.close()
