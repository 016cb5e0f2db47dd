// Node.js `ws` broadcast server: the baseline beside flowgraph's ws_out in tools/bench/ws_latency.py and
// tools/bench/ws_stalled.py. Sends the message templates given in --templates (a JSON list of
// {"type", "payload"}) --rate times a second to every client of /stream/<id>/analytics, stamping
// payload.timestamp (unix seconds, sub-ms), payload.frame_id and a top-level seq, serialised once per message.
//
//   node broadcast.js --port 9000 --rate 30 --templates templates.json [--check-buffered BYTES]
//
// With --check-buffered, a client whose bufferedAmount exceeds BYTES is skipped (what a careful server does);
// without it, ws.send is called for everyone — Node's idiomatic broadcast, which buffers without limit.
'use strict';
const fs = require('fs');
const { performance } = require('perf_hooks');
const { WebSocketServer, WebSocket } = require('ws');

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const port = Number(arg('--port', '9000'));
const rate = Number(arg('--rate', '30'));
const checkBuffered = Number(arg('--check-buffered', '0'));
const templates = JSON.parse(fs.readFileSync(arg('--templates'), 'utf8'));
const now = () => (performance.timeOrigin + performance.now()) / 1000;

const wss = new WebSocketServer({ port, host: '127.0.0.1', perMessageDeflate: false, maxPayload: 4096 });
let seq = 0;
let skipped = 0;
const loopMs = [];
wss.on('listening', () => {
  process.stdout.write(`ready ${port} ${now()}\n`);
});

const period = 1000 / rate;
const start = performance.now();
let frame = 0;
function tick() {
  for (const template of templates) {
    seq += 1;
    const payload = Object.assign({}, template.payload, { frame_id: frame, timestamp: now() });
    const text = JSON.stringify({ type: template.type, payload, seq });
    const began = performance.now();
    for (const client of wss.clients) {
      if (client.readyState !== WebSocket.OPEN) continue;
      if (checkBuffered && client.bufferedAmount > checkBuffered) { skipped += 1; continue; }
      client.send(text);
    }
    if (wss.clients.size >= 100) loopMs.push(performance.now() - began);
  }
  frame += 1;
  const delay = start + frame * period - performance.now();
  setTimeout(tick, Math.max(0, delay));
}
setTimeout(tick, period);

process.on('SIGTERM', () => {
  loopMs.sort((a, b) => a - b);
  const p50 = loopMs.length ? loopMs[Math.floor(loopMs.length / 2)].toFixed(2) : '-';
  process.stderr.write(`node broadcast: ${seq} messages, ${skipped} skipped sends, send loop p50 ${p50} ms\n`);
  process.exit(0);
});
