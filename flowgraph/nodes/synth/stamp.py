"""Frame stamp: a frame counter and a capture time drawn into the pixels as big black/white cells.

It survives H.264 at ~1 Mbit/s 720p and scaling to 640×360, so a latency probe can read, from a decoded frame or
a browser canvas, which frame it is and when it was captured.

Layout (the JS reader of the webrtc latency probe implements exactly this):

- Geometry: a grid of 16 columns × 8 rows of square cells in the TOP-LEFT corner, starting at pixel (0, 0).
  The cell size is ``c = H / 48`` pixels, where H is the height of the picture being read (15 px at 720p,
  7.5 px at 360p); cell (row r, column k) covers x in [k·c, (k+1)·c), y in [r·c, (r+1)·c). Drawing rounds the
  edges to whole pixels; readers sample only the middle of each cell, so rounding and scaling do not matter.
  The width must be at least 16·c (true for any picture of aspect ratio ≥ 1/3).
- Colours: bit 1 = black (0, 0, 0), bit 0 = white (255, 255, 255).
- Row 0 and row 7 are sync rows: row 0 is 1,0,1,0,… (column 0 black); row 7 is 0,1,0,1,… (column 0 white).
- Rows 1..6 carry 96 bits, read row by row, left to right, most significant bit first:
  bits 0..31 = frame_id (uint32, modulo 2^32), bits 32..79 = t_capture_ms (uint48, milliseconds since the Unix
  epoch), bits 80..95 = CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) of the 10
  bytes frame_id (4, big-endian) + t_capture_ms (6, big-endian).

Reading: for every cell, average the luma ``Y = 0.299 R + 0.587 G + 0.114 B`` over the central half of the cell
(from k·c + c/4 to k·c + 3c/4 in each direction; at least one pixel). Let ``black`` be the mean of the 16
black sync cells and ``white`` the mean of the 16 white ones; the stamp is present only if
``white - black >= 60``, and every sync cell must fall on its side of the threshold ``(black + white) / 2``. A data
cell is 1 when its mean is below the threshold. Accept the result only if the CRC matches.
"""

from __future__ import annotations

import numpy as np

COLS = 16
ROWS = 8
CELLS_PER_HEIGHT = 48
_DATA_BITS = 96
_MIN_CONTRAST = 60.0


def cell_size(height: int) -> float:
    """Cell edge in pixels for a picture ``height`` pixels tall."""
    return height / CELLS_PER_HEIGHT


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), the checksum in the stamp."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _payload_bits(frame_id: int, t_capture_ms: int) -> np.ndarray:
    if not 0 <= t_capture_ms < 1 << 48:
        raise ValueError(f"t_capture_ms must fit in 48 bits, got {t_capture_ms}")
    body = (frame_id % (1 << 32)).to_bytes(4, "big") + int(t_capture_ms).to_bytes(6, "big")
    word = int.from_bytes(body, "big") << 16 | crc16_ccitt(body)
    return np.array([(word >> (_DATA_BITS - 1 - i)) & 1 for i in range(_DATA_BITS)], dtype=np.uint8)


def _grid(frame_id: int, t_capture_ms: int) -> np.ndarray:
    """The 8×16 bit grid (1 = black)."""
    grid = np.zeros((ROWS, COLS), np.uint8)
    grid[0] = np.arange(COLS) % 2 == 0
    grid[ROWS - 1] = np.arange(COLS) % 2 == 1
    grid[1:ROWS - 1] = _payload_bits(frame_id, t_capture_ms).reshape(ROWS - 2, COLS)
    return grid


def draw_stamp(image: np.ndarray, frame_id: int, t_capture_ms: int) -> None:
    """Draw the stamp into the top-left corner of ``image`` (H, W, 3) uint8, in place."""
    h, w = image.shape[:2]
    c = cell_size(h)
    if COLS * c > w:
        raise ValueError(f"picture {w}x{h} is too narrow for the stamp ({COLS} cells of {c:.1f} px)")
    grid = _grid(frame_id, t_capture_ms)
    xs = np.round(np.arange(COLS + 1) * c).astype(int)
    ys = np.round(np.arange(ROWS + 1) * c).astype(int)
    # Expand the grid to pixels in one go (nearest cell per pixel) instead of 128 small fills.
    col_of = np.repeat(np.arange(COLS), np.diff(xs))
    row_of = np.repeat(np.arange(ROWS), np.diff(ys))
    block = np.where(grid[row_of][:, col_of, None] == 1, 0, 255).astype(np.uint8)
    image[: ys[-1], : xs[-1]] = block


def read_stamp(image: np.ndarray) -> tuple[int, int] | None:
    """``(frame_id, t_capture_ms)`` from a stamped RGB image (any size), or None when none is found."""
    if image.ndim != 3 or image.shape[2] < 3:
        return None
    h, w = image.shape[:2]
    c = cell_size(h)
    if COLS * c > w or c < 2.0:
        return None
    region = image[: int(np.ceil(ROWS * c)), : int(np.ceil(COLS * c)), :3].astype(np.float32)
    luma = region[..., 0] * 0.299 + region[..., 1] * 0.587 + region[..., 2] * 0.114
    means = np.empty((ROWS, COLS), np.float32)
    for r in range(ROWS):
        y0, y1 = _inner(r, c)
        for k in range(COLS):
            x0, x1 = _inner(k, c)
            means[r, k] = luma[y0:y1, x0:x1].mean()
    sync_black = np.concatenate([means[0, 0::2], means[ROWS - 1, 1::2]])
    sync_white = np.concatenate([means[0, 1::2], means[ROWS - 1, 0::2]])
    black, white = float(sync_black.mean()), float(sync_white.mean())
    if white - black < _MIN_CONTRAST:
        return None
    thr = (black + white) / 2.0
    if (sync_black >= thr).any() or (sync_white < thr).any():
        return None
    bits = (means[1:ROWS - 1] < thr).astype(np.uint8).reshape(-1)
    word = 0
    for b in bits:
        word = word << 1 | int(b)
    body = (word >> 16).to_bytes(10, "big")
    if crc16_ccitt(body) != word & 0xFFFF:
        return None
    return int.from_bytes(body[:4], "big"), int.from_bytes(body[4:], "big")


def _inner(index: int, c: float) -> tuple[int, int]:
    """Pixel range of the central half of cell ``index`` (at least one pixel)."""
    a = int(np.floor(index * c + c / 4.0))
    b = max(int(np.ceil(index * c + 3.0 * c / 4.0)), a + 1)
    return a, b
