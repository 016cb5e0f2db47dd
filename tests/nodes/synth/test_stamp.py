"""Frame stamp: exact round trip, rejection of damaged stamps, and survival through a real libx264 encode."""

import io

import cv2
import numpy as np
import pytest

from flowgraph.nodes.synth import Scene, SceneConfig
from flowgraph.nodes.synth.stamp import cell_size, crc16_ccitt, draw_stamp, read_stamp

T0 = 1_764_012_345_678  # a capture time in 2025, ms since the epoch (41 bits)


def test_round_trip_and_layout() -> None:
    img = np.full((720, 1280, 3), 90, np.uint8)
    draw_stamp(img, 123456, T0)
    assert read_stamp(img) == (123456, T0)
    c = cell_size(720)
    assert c == 15.0
    assert (img[0:15, 0:15] == 0).all() and (img[0:15, 15:30] == 255).all()   # sync row starts black, white
    assert (img[105:120, 0:15] == 255).all()                                  # last sync row starts white
    assert (img[121:, :] == 90).all() and (img[:, 241:] == 90).all()          # nothing drawn outside 16x8 cells
    big = (1 << 48) - 1
    draw_stamp(img, (1 << 32) + 5, big)  # frame ids wrap modulo 2^32
    assert read_stamp(img) == (5, big)
    assert crc16_ccitt(b"123456789") == 0x29B1  # the standard check value of CRC-16/CCITT-FALSE


def test_damaged_or_missing_stamp_reads_none() -> None:
    img = np.full((360, 640, 3), 128, np.uint8)
    assert read_stamp(img) is None
    draw_stamp(img, 7, T0)
    c = cell_size(360)
    flipped = img.copy()
    y, x = int(2.5 * c), int(5.5 * c)  # one data cell (row 2, column 5): flip its colour
    flipped[int(2 * c) + 1:int(3 * c) - 1, int(5 * c) + 1:int(6 * c) - 1] = 255 - flipped[y, x]
    assert read_stamp(flipped) is None  # the CRC catches it
    with pytest.raises(ValueError):
        draw_stamp(img, 1, 1 << 48)
    assert read_stamp(np.zeros((4, 4), np.uint8)) is None


def test_stamp_survives_x264_at_1mbps_and_downscaling() -> None:
    import av

    scene = Scene(SceneConfig(width=1280, height=720, fps=30.0, people=4, seed=3, stamp=True, t0_ms=T0))
    buf = io.BytesIO()
    n = 45
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.bit_rate = 1_000_000
        stream.options = {"preset": "veryfast", "tune": "zerolatency"}
        frame_buf = None
        for i in range(n):
            frame_buf, _ = scene.render(i, out=frame_buf)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame_buf, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    kbps = buf.tell() * 8 / (n / 30.0) / 1000
    assert kbps < 1600  # the encoder really ran near the asked-for rate
    buf.seek(0)
    read = small = 0
    with av.open(buf) as inp:
        for i, frame in enumerate(inp.decode(video=0)):
            rgb = frame.to_ndarray(format="rgb24")
            read += read_stamp(rgb) == (i, scene.capture_ms(i))
            small += read_stamp(cv2.resize(rgb, (640, 360), interpolation=cv2.INTER_AREA)) == (i,
                                                                                              scene.capture_ms(i))
    assert read == n and small == n
