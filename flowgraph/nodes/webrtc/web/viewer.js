// flowgraph viewer: WebRTC video + analytics overlays + live stats. No build step, no external resources.
//
// Query parameters: stream=<id>, gather=full (wait for complete ICE gathering before posting the offer; the
// default posts as soon as the first host candidate exists), jb=<ms> (jitterBufferTarget, default 0),
// stats=0 (no stats polling: lighter pages for load tests).

import { Overlay, Toasts } from "./overlay.js";
import { readStamp } from "./stamp.js";

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
const video = $("video");
const overlay = new Overlay($("overlay"), video);
const toasts = new Toasts($("toasts"));

// Everything a test or the latency probe wants to read.
const fg = window.fg = {
  state: "new", stream: null, viewerId: null, frames: 0, analytics: 0, messages: [], syncs: 0,
  tOffer: null, tPosted: null, tAnswer: null, firstFrameMs: null, firstFrameWall: null, liveMs: null,
  latencies: [], stampLatencies: [], lastStamp: null, clockOffsetMs: 0, errors: [], drawn: 0,
};

let sync = null;          // {rtp, pts90, frame_id, t_capture} from the server's "sync" channel
let reportChannel = null;
let bestClockRtt = Infinity;
let pc = null;

function setState(text, cls) {
  fg.state = text;
  const el = $("state");
  el.textContent = text;
  el.className = `pill ${cls || ""}`;
}

function note(text) {
  $("s-note").textContent = text || "";
}

async function loadConfig() {
  try {
    const resp = await fetch("/api/webrtc/config");
    return await resp.json();
  } catch (err) {
    return { streams: [], ice_servers: [] };
  }
}

function fillPicker(streams, chosen) {
  const sel = $("stream");
  sel.replaceChildren();
  for (const id of streams.length ? streams : [chosen]) {
    const opt = document.createElement("option");
    opt.value = opt.textContent = id;
    if (id === chosen) opt.selected = true;
    sel.appendChild(opt);
  }
  sel.onchange = () => {
    const q = new URLSearchParams(location.search);
    q.set("stream", sel.value);
    location.search = q.toString();
  };
}

function preferH264(transceiver) {
  if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver?.getCapabilities) return;
  const codecs = RTCRtpReceiver.getCapabilities("video").codecs;
  const rank = (c) => {
    const m = c.mimeType.toLowerCase();
    if (m === "video/h264") return (c.sdpFmtpLine || "").includes("packetization-mode=1") ? 0 : 1;
    if (m === "video/rtx" || m === "video/red" || m === "video/ulpfec") return 2;
    return 3;
  };
  const sorted = codecs.slice().sort((a, b) => rank(a) - rank(b)).filter((c) => rank(c) < 3);
  if (sorted.some((c) => rank(c) === 0)) transceiver.setCodecPreferences(sorted);
}

// Resolves once the offer is worth posting: complete gathering with gather=full, otherwise the first host
// candidate (enough on a LAN and for loopback) or a short deadline.
function gathered(pc, full) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const done = () => { pc.removeEventListener("icecandidate", onCandidate); resolve(); };
    const onCandidate = (e) => { if (!e.candidate || !full) done(); };
    pc.addEventListener("icecandidate", onCandidate);
    setTimeout(done, full ? 3000 : 40);
  });
}

function onAnalytics(text) {
  let msg;
  if (typeof text !== "string") text = new TextDecoder().decode(text);   // Janus may relay text as binary
  try { msg = JSON.parse(text); } catch { return; }
  fg.analytics += 1;
  if (fg.messages.length < 50) fg.messages.push(msg);
  if (msg.type === "betting_opportunity") toasts.add(msg.payload);
  else overlay.add(msg);
  $("s-analytics").textContent = `analytics: ${fg.analytics} msgs`;
}

function onSync(text) {
  let msg;
  try { msg = JSON.parse(text); } catch { return; }
  if (msg.pong !== undefined) {
    // NTP-style estimate; the sample with the shortest round trip is the most trustworthy
    const now = Date.now();
    const rtt = now - msg.pong;
    if (rtt <= bestClockRtt) {
      bestClockRtt = rtt;
      fg.clockOffsetMs = msg.server_time * 1000 - (msg.pong + now) / 2;
    }
    return;
  }
  sync = msg;
  fg.syncs += 1;
}

// Source time (seconds) of the frame with RTP timestamp `rtp`, from the latest sync point.
function ptsSeconds(rtp) {
  if (!sync || rtp === undefined || sync.pts90 === null) return null;
  const delta = ((rtp - sync.rtp) | 0);   // wrap-safe 32-bit difference
  return (sync.pts90 + delta) / 90000;
}

function captureTimeMs(rtp) {
  if (!sync || rtp === undefined || typeof sync.t_capture !== "number") return null;
  const delta = ((rtp - sync.rtp) | 0) / 90;
  return sync.t_capture * 1000 + delta - fg.clockOffsetMs;
}

const stampCanvas = document.createElement("canvas");
const stampCtx = stampCanvas.getContext("2d", { willReadFrequently: true });

function onFrame(now, meta) {
  fg.frames += 1;
  const shownWall = performance.timeOrigin + (meta.expectedDisplayTime || now);
  if (fg.firstFrameMs === null) {
    fg.firstFrameMs = (meta.expectedDisplayTime || now) - fg.tOffer;
    fg.firstFrameWall = shownWall;
    $("s-first").textContent = fg.firstFrameMs.toFixed(0);
    $("waiting").classList.add("hidden");
    $("live-dot").classList.add("on");
    $("hud-res").textContent = `${meta.width}×${meta.height}`;
  }
  const t = ptsSeconds(meta.rtpTimestamp);
  overlay.draw(t);
  fg.drawn = overlay.drawn;
  let latency = null;
  const stamp = readStamp(video, stampCtx, stampCanvas, meta.width, meta.height);
  if (stamp) {
    latency = shownWall - stamp.t_capture_ms;
    fg.lastStamp = stamp;
    // decoded: capture → the frame ready to show (receive + decode), before the wait for the display's refresh
    const decoded = meta.receiveTime && meta.processingDuration !== undefined
      ? performance.timeOrigin + meta.receiveTime + meta.processingDuration * 1000 - stamp.t_capture_ms : null;
    fg.stampLatencies.push([stamp.frame_id, latency, meta.receiveTime ? shownWall - (performance.timeOrigin + meta.receiveTime) : null, decoded]);
    if (fg.stampLatencies.length > 20000) fg.stampLatencies.shift();
  } else {
    const captured = captureTimeMs(meta.rtpTimestamp);
    if (captured !== null) latency = shownWall - captured;
  }
  if (latency !== null) {
    fg.latencies.push(latency);
    if (fg.latencies.length > 600) fg.latencies.shift();
    if (fg.liveMs === null && latency < 80) fg.liveMs = shownWall - (performance.timeOrigin + fg.tOffer);
  }
  video.requestVideoFrameCallback(onFrame);
}

function median(values) {
  if (!values.length) return null;
  const s = values.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

let last = null;
async function pollStats() {
  if (!pc) return;
  const report = await pc.getStats();
  let inbound = null, pair = null;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") inbound = s;
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
  });
  const recent = fg.latencies.slice(-30);
  const lat = median(recent);
  if (lat !== null) {
    $("s-latency").textContent = lat.toFixed(0);
    $("hud-latency").textContent = `${lat.toFixed(0)} ms`;
  }
  const out = { latency_ms: lat, frames: fg.frames };
  if (inbound) {
    if (last) {
      const dt = (inbound.timestamp - last.timestamp) / 1000;
      const kbps = ((inbound.bytesReceived - last.bytesReceived) * 8) / dt / 1000;
      $("s-bitrate").textContent = kbps.toFixed(0);
      const emitted = inbound.jitterBufferEmittedCount - last.jitterBufferEmittedCount;
      if (emitted > 0) {
        const jb = ((inbound.jitterBufferDelay - last.jitterBufferDelay) / emitted) * 1000;
        $("s-jb").textContent = jb.toFixed(0);
        out.jitter_buffer_ms = jb;
      }
      out.bitrate_kbps = kbps;
    }
    $("s-fps").textContent = (inbound.framesPerSecond || 0).toFixed(0);
    $("s-lost").textContent = String(inbound.packetsLost ?? 0);
    out.fps = inbound.framesPerSecond;
    out.packets_lost = inbound.packetsLost;
    last = inbound;
  }
  if (pair && typeof pair.currentRoundTripTime === "number") {
    $("s-rtt").textContent = (pair.currentRoundTripTime * 1000).toFixed(1);
  }
  if (reportChannel && reportChannel.readyState === "open") {
    reportChannel.send(JSON.stringify(out));
    reportChannel.send(JSON.stringify({ ping: Date.now() }));
  }
}

// The live streams (those with packets at the viewer tier), with what /api/streams says about each; a click
// switches to that stream. Refreshed every 2 s, so publishers that come and go appear and disappear.
async function refreshStreams() {
  let ids = [];
  const figures = {};
  try {
    ids = (await (await fetch("/api/webrtc/streams")).json()).streams || [];
    const listed = await fetch("/api/streams");
    if (listed.ok) for (const s of (await listed.json()).streams || []) figures[s.stream_id] = s.live || {};
  } catch { return fg.liveStreams || []; }
  fg.liveStreams = ids;
  const nav = $("streams");
  nav.replaceChildren();
  for (const id of ids) {
    const f = figures[id] || {};
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.stream = id;
    if (id === fg.stream) b.className = "on";
    const name = document.createElement("b");
    name.textContent = id;
    const info = document.createElement("small");
    const parts = [];
    if (f.width && f.height) parts.push(`${f.width}×${f.height}`);
    if (typeof f.bitrate_kbps === "number") parts.push(`${Math.round(f.bitrate_kbps)} kbit/s`);
    if (typeof f.fps === "number") parts.push(`${f.fps.toFixed(0)} fps`);
    if (typeof f.viewers === "number") parts.push(`${f.viewers} watching`);
    if (typeof f.analysed_fps === "number") parts.push(`CV ${f.analysed_fps.toFixed(1)} fps`);
    info.textContent = parts.join(" · ") || (f.publisher ? String(f.publisher) : "live");
    b.append(name, info);
    b.onclick = () => {
      const q = new URLSearchParams(location.search);
      q.set("stream", id);
      location.search = q.toString();
    };
    nav.appendChild(b);
  }
  fillPicker(ids, fg.stream);
  return ids;
}

async function pollViewers() {
  try {
    const data = await (await fetch("/api/webrtc/streams")).json();
    const n = data.viewers ? data.viewers[fg.stream] : undefined;
    if (n !== undefined) $("s-viewers").textContent = String(n);
  } catch { /* server gone: the connection state says so */ }
}

async function connect() {
  const config = await loadConfig();
  let stream = query.get("stream") || config.default_stream || config.streams[0] || "";
  while (!stream) {  // nobody publishes yet: wait for the first live stream
    $("waiting").textContent = "no live streams yet — waiting for a publisher…";
    setState("waiting", "");
    await new Promise((r) => setTimeout(r, 2000));
    stream = (await refreshStreams())[0] || "";
  }
  fg.stream = stream;
  fillPicker(config.streams || [], stream);
  refreshStreams();
  setInterval(refreshStreams, 2000);
  const iceServers = (config.ice_servers || []).map((s) => ({ urls: s.urls, username: s.username, credential: s.credential }));
  pc = fg.pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
  const transceiver = pc.addTransceiver("video", { direction: "recvonly" });
  preferH264(transceiver);
  const jb = Number(query.get("jb") ?? 0);
  if ("jitterBufferTarget" in transceiver.receiver) transceiver.receiver.jitterBufferTarget = jb;
  reportChannel = pc.createDataChannel("viewer");
  pc.ondatachannel = (event) => {
    const ch = event.channel;
    fg.channels = [...(fg.channels || []), ch.label];
    // "JanusDataChannel": the analytics channel when the answer came through an SFU instance (sfu_out)
    if (ch.label === "analytics" || ch.label === "JanusDataChannel") ch.onmessage = (e) => onAnalytics(e.data);
    else if (ch.label === "sync") ch.onmessage = (e) => onSync(e.data);
  };
  pc.ontrack = (event) => {
    video.srcObject = event.streams[0] || new MediaStream([event.track]);
    video.play().catch(() => note("tap the video to start"));
  };
  pc.onconnectionstatechange = () => {
    const s = pc.connectionState;
    setState(s, s === "connected" ? "ok" : (s === "failed" || s === "disconnected") ? "bad" : "");
    if (s === "failed") setTimeout(() => location.reload(), 2000);
  };
  fg.tOffer = performance.now();
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc, query.get("gather") === "full");
  fg.tPosted = performance.now();
  const resp = await fetch("/api/stream/connect", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ offer: pc.localDescription.sdp, stream_id: stream || undefined }),
  });
  const body = await resp.json();
  if (!resp.ok) {
    setState("error", "bad");
    note(body.error || `HTTP ${resp.status}`);
    fg.errors.push(body.error || resp.status);
    $("waiting").textContent = body.error || "cannot connect";
    if (resp.status === 404) {  // the stream is not live (ended, or not yet): come back when it is
      for (;;) {
        await new Promise((r) => setTimeout(r, 2000));
        if ((await refreshStreams()).includes(stream)) { location.reload(); return; }
      }
    }
    return;
  }
  fg.viewerId = body.viewer_id;
  await pc.setRemoteDescription({ type: "answer", sdp: body.answer });
  fg.tAnswer = performance.now();
  if (!fg.frameCallback) { fg.frameCallback = true; video.requestVideoFrameCallback(onFrame); }
  if (/^s=flowgraph-sfu\s*$/m.test(body.answer)) watchSfu();
  if (query.get("stats") !== "0") {
    setInterval(pollStats, 1000);
    setInterval(pollViewers, 3000);
    pollViewers();
  }
}

// Through an SFU instance (sfu_out) a dead instance shows as a stalled picture long before ICE gives up:
// after 1 s without a new frame the page joins again (the server avoids instances that fail their health checks).
function watchSfu() {
  fg.sfu = true;
  fg.reconnects = fg.reconnects || 0;
  let seen = fg.frames, since = performance.now();
  const timer = setInterval(() => {
    if (fg.frames !== seen) { seen = fg.frames; since = performance.now(); return; }
    if (!fg.frames || performance.now() - since < 1000) return;
    clearInterval(timer);
    fg.reconnects += 1;
    const old = pc;
    old.onconnectionstatechange = null;
    old.close();
    fg.firstFrameMs = null;
    connect().catch((err) => { fg.errors.push(String(err)); setTimeout(() => location.reload(), 1000); });
  }, 200);
}

for (const [id, key] of [["show-boxes", "boxes"], ["show-pose", "pose"], ["show-speed", "speed"],
                         ["show-predict", "predict"]]) {
  $(id).addEventListener("change", (e) => { overlay.show[key] = e.target.checked; });
}
video.addEventListener("click", () => video.play());
window.addEventListener("pagehide", () => {
  if (fg.viewerId && fg.stream) fetch(`/whep/${fg.stream}/${fg.viewerId}`, { method: "DELETE", keepalive: true });
});

connect().catch((err) => {
  fg.errors.push(String(err));
  setState("error", "bad");
  note(String(err));
});
