// Analytics overlays drawn on a canvas over the video, matched to the frame on screen by pts.
//
// Messages follow the platform's wire format {type, payload}; payloads carry pts_seconds (source clock) and the
// analysed frame's width/height, which map boxes and keypoints onto the displayed picture.

const KEEP_SECONDS = 3;
// Analytics describe a frame some 100-300 ms older than the one on screen; moving boxes and skeletons are
// carried forward along each track's recent pixel velocity for at most this long (dead reckoning).
const MAX_PREDICT_SECONDS = 0.5;
const MAX_PER_TYPE = 240;

// BlazePose-33 and COCO-17 limbs (index pairs)
const BLAZEPOSE = [[11, 12], [11, 13], [13, 15], [12, 14], [14, 16], [11, 23], [12, 24], [23, 24], [23, 25],
  [25, 27], [27, 29], [29, 31], [27, 31], [24, 26], [26, 28], [28, 30], [30, 32], [28, 32], [15, 17], [15, 19],
  [17, 19], [15, 21], [16, 18], [16, 20], [18, 20], [16, 22], [0, 1], [1, 2], [2, 3], [3, 7], [0, 4], [4, 5],
  [5, 6], [6, 8], [9, 10]];
const COCO = [[5, 6], [5, 7], [7, 9], [6, 8], [8, 10], [5, 11], [6, 12], [11, 12], [11, 13], [13, 15], [12, 14],
  [14, 16], [0, 1], [0, 2], [1, 3], [2, 4]];
const PALETTE = ["#3ddc97", "#4cc9f0", "#ffb454", "#f72585", "#b388ff", "#ffd166", "#06d6a0", "#ef476f"];

function colour(id) {
  return PALETTE[Math.abs(Number(id) || 0) % PALETTE.length];
}

function timeOf(payload) {
  if (typeof payload.pts_seconds === "number") return payload.pts_seconds;
  return null;
}

export class Overlay {
  constructor(canvas, video) {
    this.canvas = canvas;
    this.video = video;
    this.ctx = canvas.getContext("2d");
    this.byType = { detection: [], pose: [] };
    this.speeds = new Map(); // track_id -> {speed_kmh, t}
    this.show = { boxes: true, pose: true, speed: true, predict: true };
    this.count = 0;
    this.drawn = 0;
  }

  add(msg) {
    if (!msg || typeof msg !== "object" || !msg.payload) return;
    this.count += 1;
    const p = msg.payload;
    if (msg.type === "detection" || msg.type === "pose") {
      const list = this.byType[msg.type];
      list.push({ t: timeOf(p), frame_id: p.frame_id, payload: p, received: performance.now() });
      if (list.length > MAX_PER_TYPE) list.splice(0, list.length - MAX_PER_TYPE);
    } else if (msg.type === "speed") {
      this.speeds.set(p.track_id, { ...p, received: performance.now() });
    }
  }

  // The message of `type` that belongs to the frame shown at source time `t` (seconds): the latest one at or
  // before t (analytics lag the video), not older than KEEP_SECONDS; without a time, the newest message.
  pick(type, t) {
    const list = this.byType[type];
    if (!list.length) return null;
    if (t === null || t === undefined) return list[list.length - 1];
    let best = null;
    for (let i = list.length - 1; i >= 0; i--) {
      const m = list[i];
      if (m.t === null) { best = best || m; continue; }
      if (m.t <= t + 0.02) { best = m; break; }
    }
    if (!best) return null;
    if (best.t !== null && t - best.t > KEEP_SECONDS) return null;
    return best;
  }

  // The message of `type` that describes the same frame as `ref` (same frame_id, or same pts), if any.
  sameFrame(type, ref) {
    const list = this.byType[type];
    for (let i = list.length - 1; i >= 0; i--) {
      const m = list[i];
      if (ref.frame_id !== undefined && ref.frame_id !== null && m.frame_id === ref.frame_id) return m;
      if (ref.t !== null && m.t !== null && Math.abs(m.t - ref.t) < 1e-4) return m;
    }
    return null;
  }

  // Rectangle (in canvas pixels) where the video picture is drawn inside the element (object-fit: contain).
  contentRect() {
    const cw = this.canvas.clientWidth, ch = this.canvas.clientHeight;
    const vw = this.video.videoWidth || 16, vh = this.video.videoHeight || 9;
    const scale = Math.min(cw / vw, ch / vh);
    const w = vw * scale, h = vh * scale;
    return { x: (cw - w) / 2, y: (ch - h) / 2, w, h };
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(this.canvas.clientWidth * dpr), h = Math.round(this.canvas.clientHeight * dpr);
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  }

  draw(t) {
    this.resize();
    const ctx = this.ctx;
    ctx.clearRect(0, 0, this.canvas.clientWidth, this.canvas.clientHeight);
    const rect = this.contentRect();
    const det = this.pick("detection", t);
    // The skeleton of the frame whose boxes are drawn, so both sit on the same person; an older one (moriarty
    // skipped that frame) is carried forward like the boxes.
    const pose = (det && this.sameFrame("pose", det)) || this.pick("pose", t);
    if (pose && det && !pose.payload.width && det.payload.width) {
      pose.payload.width = det.payload.width;  // a pose emitted without its frame size: the tracks' frame
      pose.payload.height = det.payload.height;
    }
    const motion = this.show.predict && typeof t === "number" ? this.velocities() : new Map();
    let drew = false;
    if (det && this.show.boxes) drew = this.drawDetections(det.payload, rect, this.shifter(motion, det, t)) || drew;
    if (pose && this.show.pose) drew = this.drawPoses(pose.payload, rect, this.shifter(motion, pose, t)) || drew;
    if (drew) this.drawn += 1;
    this.prune();
  }

  // Pixel velocity (source px/s) of each track's box centre, from its two newest detections.
  velocities() {
    const seen = new Map();
    const list = this.byType.detection;
    for (let i = list.length - 1; i >= 0 && i >= list.length - 30; i--) {
      const m = list[i];
      if (m.t === null || !Array.isArray(m.payload.tracks)) continue;
      for (const tr of m.payload.tracks) {
        if (!Array.isArray(tr.bbox) || tr.track_id === undefined || tr.track_id === null) continue;
        const c = [(tr.bbox[0] + tr.bbox[2]) / 2, (tr.bbox[1] + tr.bbox[3]) / 2];
        const s = seen.get(tr.track_id);
        if (!s) seen.set(tr.track_id, { t: m.t, c, v: null });
        else if (!s.v && s.t - m.t > 0.03) s.v = [(s.c[0] - c[0]) / (s.t - m.t), (s.c[1] - c[1]) / (s.t - m.t)];
      }
    }
    const out = new Map();
    for (const [id, s] of seen) if (s.v) out.set(id, s.v);
    return out;
  }

  // (track_id) -> [dx, dy] to move a message's drawing from its own frame time to the frame on screen.
  shifter(motion, msg, t) {
    const dt = msg.t === null || typeof t !== "number" ? 0 : Math.max(0, Math.min(MAX_PREDICT_SECONDS, t - msg.t));
    return (id) => {
      const v = dt > 0 ? motion.get(id) : undefined;
      return v ? [v[0] * dt, v[1] * dt] : [0, 0];
    };
  }

  mapper(payload, rect) {
    const sw = payload.width || this.video.videoWidth || rect.w;
    const sh = payload.height || this.video.videoHeight || rect.h;
    return (x, y) => [rect.x + (x / sw) * rect.w, rect.y + (y / sh) * rect.h];
  }

  drawDetections(payload, rect, shift = () => [0, 0]) {
    const ctx = this.ctx;
    const project = this.mapper(payload, rect);
    const tracks = Array.isArray(payload.tracks) ? payload.tracks : [];
    const boxes = tracks.length ? tracks : (Array.isArray(payload.detections) ? payload.detections : []);
    const lw = Math.max(2, rect.w / 400);
    ctx.font = `600 ${Math.max(11, Math.round(rect.w / 70))}px system-ui, sans-serif`;
    for (const obj of boxes) {
      if (!Array.isArray(obj.bbox) || obj.bbox.length !== 4) continue;
      const [dx, dy] = shift(obj.track_id);
      const map = (x, y) => project(x + dx, y + dy);
      const [x1, y1] = map(obj.bbox[0], obj.bbox[1]);
      const [x2, y2] = map(obj.bbox[2], obj.bbox[3]);
      const c = obj.track_id !== undefined ? colour(obj.track_id) : "#3ddc97";
      ctx.lineWidth = lw;
      ctx.strokeStyle = c;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const parts = [];
      if (obj.track_id !== undefined && obj.track_id !== null) parts.push(`#${obj.track_id}`);
      const speed = this.show.speed ? this.speedOf(obj) : null;
      if (speed !== null) parts.push(`${speed.toFixed(1)} km/h`);
      if (!parts.length && typeof obj.score === "number") parts.push(obj.score.toFixed(2));
      if (parts.length) this.label(parts.join("  "), x1, y1, c);
    }
    return boxes.length > 0;
  }

  speedOf(track) {
    const fromSpeed = this.speeds.get(track.track_id);
    if (fromSpeed && typeof fromSpeed.speed_kmh === "number") return fromSpeed.speed_kmh;
    return typeof track.speed_kmh === "number" ? track.speed_kmh : null;
  }

  label(text, x, y, c) {
    const ctx = this.ctx;
    const pad = 4;
    const h = parseInt(ctx.font.split(" ")[1], 10) + pad * 2;
    const w = ctx.measureText(text).width + pad * 2;
    const top = y - h < 0 ? y : y - h;
    ctx.fillStyle = c;
    ctx.fillRect(x, top, w, h);
    ctx.fillStyle = "#0b0e14";
    ctx.textBaseline = "top";
    ctx.fillText(text, x + pad, top + pad);
  }

  drawPoses(payload, rect, shift = () => [0, 0]) {
    const ctx = this.ctx;
    const project = this.mapper(payload, rect);
    const poses = Array.isArray(payload.poses) ? payload.poses : [];
    const r = Math.max(2, rect.w / 320);
    for (const pose of poses) {
      const kps = Array.isArray(pose.keypoints) ? pose.keypoints : [];
      const [dx, dy] = shift(pose.track_id);
      const map = (x, y) => project(x + dx, y + dy);
      const limbs = kps.length >= 33 ? BLAZEPOSE : COCO;
      const c = colour(pose.track_id ?? 0);
      const ok = (k) => Array.isArray(k) && k[0] !== null && k[1] !== null && (k[2] === undefined || k[2] === null || k[2] > 0.3);
      ctx.strokeStyle = c;
      ctx.lineWidth = Math.max(2, rect.w / 450);
      ctx.beginPath();
      for (const [a, b] of limbs) {
        if (!ok(kps[a]) || !ok(kps[b])) continue;
        const [ax, ay] = map(kps[a][0], kps[a][1]);
        const [bx, by] = map(kps[b][0], kps[b][1]);
        ctx.moveTo(ax, ay);
        ctx.lineTo(bx, by);
      }
      ctx.stroke();
      ctx.fillStyle = "#ffffff";
      for (const k of kps) {
        if (!ok(k)) continue;
        const [x, y] = map(k[0], k[1]);
        ctx.beginPath();
        ctx.arc(x, y, r, 0, Math.PI * 2);
        ctx.fill();
      }
    }
    return poses.length > 0;
  }

  prune() {
    const now = performance.now();
    for (const [id, s] of this.speeds) if (now - s.received > KEEP_SECONDS * 1000) this.speeds.delete(id);
  }
}

// Betting-opportunity pop-ups: one card per opportunity id, removed when it expires (or after 8 s).
export class Toasts {
  constructor(root) {
    this.root = root;
    this.items = new Map();
    this.count = 0;
  }

  add(payload) {
    if (!payload || this.items.has(payload.id)) return;
    this.count += 1;
    const el = document.createElement("div");
    el.className = "toast";
    const title = document.createElement("b");
    title.textContent = (payload.type || "opportunity").replace(/_/g, " ");
    const text = document.createElement("div");
    text.textContent = payload.description || "";
    const meta = document.createElement("small");
    const conf = Math.max(0, Math.min(1, Number(payload.confidence) || 0));
    meta.textContent = `track #${payload.track_id ?? "–"} · confidence ${(conf * 100).toFixed(0)} %`;
    const bar = document.createElement("div");
    bar.className = "conf";
    const fill = document.createElement("i");
    fill.style.width = `${conf * 100}%`;
    bar.appendChild(fill);
    el.append(title, text, meta, bar);
    this.root.prepend(el);
    const key = payload.id ?? `${Date.now()}-${Math.random()}`;
    const expires = typeof payload.expires_at === "number" ? payload.expires_at * 1000 - Date.now() : 8000;
    const ttl = Math.max(2000, Math.min(8000, expires));
    this.items.set(key, el);
    setTimeout(() => { el.remove(); this.items.delete(key); }, ttl);
    while (this.root.children.length > 3) this.root.lastChild.remove();
  }
}
