"""Synthetic H.264 source: a rendered scene (or moving pattern) with the frame stamp, encoded live with libx264.

Pictures come from the synthetic scene package ``flowgraph.nodes.synth`` when it is installed (human-like figures
on known paths: ground truth for vibrio/moriarty) and from a cheap moving pattern otherwise (``people: 0``). Every
picture carries the machine-readable stamp (``synth.stamp.draw_stamp``: frame number + capture time) so latency
probes downstream can read when it was made. Frames are paced at ``fps`` in real time (or as fast as possible).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from flowgraph.messages import Packet

from .encoder import EncoderConfig, H264Encoder
from .source import Source

log = logging.getLogger("flowgraph.media.testsrc")


@dataclass
class TestSrcConfig:
    __test__ = False  # not a pytest test class

    width: int = 1280
    height: int = 720
    fps: float = 30.0
    bitrate_kbps: int = 2500
    gop: int = 60
    people: int = 3
    seed: int = 1
    count: int = 0
    realtime: bool = True
    preset: str = "veryfast"
    stamp: bool = True


def _stamp_drawer(width: int, height: int) -> Callable[[np.ndarray, int, int], Any] | None:
    """``synth.stamp.draw_stamp`` when it is installed and works at this size, else None (logged)."""
    try:
        from flowgraph.nodes.synth.stamp import draw_stamp

        draw_stamp(np.zeros((height, width, 3), dtype=np.uint8), 0, 0)
    except Exception as exc:  # missing or unfinished synth package: run without the stamp
        log.warning("testsrc: frame stamp unavailable (%s: %s)", type(exc).__name__, exc)
        return None
    return draw_stamp


class PatternRenderer:
    """A moving colour gradient with a bouncing square: cheap, deterministic, no dependencies."""

    def __init__(self, width: int, height: int, fps: float) -> None:
        self.width, self.height, self.fps = width, height, fps
        x = np.linspace(0, 255, width, dtype=np.float32)
        y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
        base = np.empty((height, width * 2, 3), dtype=np.uint8)
        ramp = np.concatenate([x, x[::-1]])[None, :]
        base[..., 0] = ramp
        base[..., 1] = (y + ramp / 2) % 256
        base[..., 2] = 255 - y
        self._base = base

    def render(self, index: int) -> np.ndarray:
        shift = int(index * self.width / (self.fps * 4)) % self.width  # one full sweep every 4 s
        image = np.ascontiguousarray(self._base[:, shift:shift + self.width])
        side = max(8, self.height // 8)
        span_x, span_y = max(1, self.width - side), max(1, self.height - side)
        px = (index * 7) % (2 * span_x)
        py = (index * 5) % (2 * span_y)
        x0 = px if px < span_x else 2 * span_x - px
        y0 = py if py < span_y else 2 * span_y - py
        image[y0:y0 + side, x0:x0 + side] = 255
        return image


class SceneRenderer:
    """Pictures from ``flowgraph.nodes.synth.Scene`` (people with ground truth)."""

    def __init__(self, config: TestSrcConfig) -> None:
        from flowgraph.nodes.synth import Scene, SceneConfig

        self.scene = Scene(SceneConfig(width=config.width, height=config.height, fps=config.fps,
                                       people=config.people, seed=config.seed))

    def render(self, index: int) -> np.ndarray:
        image, _truth = self.scene.render(index)
        if not image.flags.writeable:
            image = image.copy()
        return image


def make_renderer(config: TestSrcConfig) -> PatternRenderer | SceneRenderer:
    if config.people > 0:
        try:
            renderer = SceneRenderer(config)
            renderer.render(0)
            return renderer
        except Exception as exc:  # missing or unfinished synth package
            log.warning("testsrc: synthetic scene unavailable (%s: %s): rendering a moving pattern without people",
                        type(exc).__name__, exc)
    return PatternRenderer(config.width, config.height, config.fps)


class TestSource(Source):
    """Renders, stamps and encodes pictures at ``fps``; answers keyframe requests with an IDR."""

    __test__ = False  # not a pytest test class

    def __init__(self, stream_id: str, config: TestSrcConfig) -> None:
        super().__init__(stream_id)
        self.config = config
        self.fps = config.fps
        self.publisher = "testsrc"
        self.encoder = H264Encoder(EncoderConfig(width=config.width, height=config.height, fps=config.fps,
                                                 bitrate_kbps=config.bitrate_kbps, gop=config.gop,
                                                 preset=config.preset))
        self.renderer = make_renderer(config)
        self.draw_stamp = _stamp_drawer(config.width, config.height) if config.stamp else None

    def request_keyframe(self) -> bool:
        self.encoder.request_keyframe()
        return True

    def set_bitrate(self, kbps: int) -> bool:
        self.encoder.set_bitrate(kbps)
        return True

    def packets(self) -> Iterator[Packet]:
        c = self.config
        period = 1.0 / c.fps
        ticks_per_frame = 90_000 / c.fps
        start = time.monotonic()
        index = 0
        self.state = "live"
        while not self.stopping and (c.count == 0 or index < c.count):
            if c.realtime:
                delay = start + index * period - time.monotonic()
                if delay > 0 and self.stop_event.wait(delay):
                    break
                if delay < -1.0:  # fell more than a second behind (machine overloaded): skip, don't burst
                    start = time.monotonic() - index * period
            t_capture = time.time()
            image = self.renderer.render(index)
            if self.draw_stamp is not None:
                self.draw_stamp(image, index, int(t_capture * 1000))
            pts = round(index * ticks_per_frame)
            for data, out_pts, key in self.encoder.encode(image, pts):
                packet = self.maker.from_annexb(data, pts=out_pts, time_base=self.encoder.time_base,
                                                t_capture=t_capture, duration=round(ticks_per_frame),
                                                keyframe=key)
                if packet is not None:
                    yield packet
            index += 1
        self.state = "ended"
