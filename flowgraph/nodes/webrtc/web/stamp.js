// Reads the frame stamp drawn by flowgraph.nodes.synth.stamp (see that module's docstring for the layout):
// a 16×8 grid of black/white cells in the top-left corner, cell = H/48 px; rows 0 and 7 are sync rows,
// rows 1..6 carry frame_id (32 bits), t_capture_ms (48 bits) and a CRC-16/CCITT-FALSE (16 bits).
// Returns {frame_id, t_capture_ms} or null when the frame carries no (valid) stamp.

const COLS = 16, ROWS = 8, CELLS_PER_HEIGHT = 48, MIN_CONTRAST = 60;

function crc16(bytes) {
  let crc = 0xffff;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

// Mean luma of every cell's central half, from RGBA `data` of a w-wide image with cell size c.
function cellMeans(data, w, c) {
  const means = new Float64Array(ROWS * COLS);
  for (let r = 0; r < ROWS; r++) {
    for (let k = 0; k < COLS; k++) {
      const x0 = Math.floor(k * c + c / 4), x1 = Math.max(x0 + 1, Math.floor(k * c + (3 * c) / 4));
      const y0 = Math.floor(r * c + c / 4), y1 = Math.max(y0 + 1, Math.floor(r * c + (3 * c) / 4));
      let sum = 0, n = 0;
      for (let y = y0; y < y1; y++) {
        for (let x = x0; x < x1; x++) {
          const i = (y * w + x) * 4;
          sum += 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
          n++;
        }
      }
      means[r * COLS + k] = sum / n;
    }
  }
  return means;
}

export function decodeStamp(data, w, h) {
  const c = h / CELLS_PER_HEIGHT;
  if (COLS * c > w || c < 2) return null;
  const m = cellMeans(data, w, c);
  let black = 0, white = 0;
  for (let k = 0; k < COLS; k++) {
    const top = m[k], bottom = m[(ROWS - 1) * COLS + k];
    if (k % 2 === 0) { black += top; white += bottom; } else { white += top; black += bottom; }
  }
  black /= COLS; white /= COLS;
  if (white - black < MIN_CONTRAST) return null;
  const threshold = (black + white) / 2;
  for (let k = 0; k < COLS; k++) {
    const topBlack = k % 2 === 0;
    if ((m[k] < threshold) !== topBlack) return null;
    if ((m[(ROWS - 1) * COLS + k] < threshold) === topBlack) return null;
  }
  const bytes = new Uint8Array(12);
  for (let i = 0; i < 96; i++) {
    const bit = m[COLS + i] < threshold ? 1 : 0;
    bytes[i >> 3] |= bit << (7 - (i & 7));
  }
  const crc = (bytes[10] << 8) | bytes[11];
  if (crc16(bytes.subarray(0, 10)) !== crc) return null;
  const frameId = ((bytes[0] << 24) >>> 0) + (bytes[1] << 16) + (bytes[2] << 8) + bytes[3];
  let t = 0;
  for (let i = 4; i < 10; i++) t = t * 256 + bytes[i];
  return { frame_id: frameId, t_capture_ms: t };
}

// Reads the stamp of the frame `video` shows now (intrinsic size width × height), using a small scratch canvas.
export function readStamp(video, ctx, canvas, width, height) {
  if (!width || !height) return null;
  const c = height / CELLS_PER_HEIGHT;
  const w = Math.min(width, Math.ceil(COLS * c) + 1), h = Math.min(height, Math.ceil(ROWS * c) + 1);
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  try {
    ctx.drawImage(video, 0, 0, w, h, 0, 0, w, h);
    return decodeStamp(ctx.getImageData(0, 0, w, h).data, w, height);
  } catch {
    return null;
  }
}
