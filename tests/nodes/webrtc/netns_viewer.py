"""A headless aiortc viewer run as its own process (inside a network namespace by test_impaired_viewer.py).

    python netns_viewer.py BASE_URL STREAM_ID SECONDS

Connects through ``POST BASE_URL/api/stream/connect``, counts encoded video frames as they arrive (through the
adapter's receiver tap: nothing is decoded, so a slow machine measures the network, not a decoder) and the
analytics messages on the data channel. Prints one JSON line when connected (``{"viewer_id": ...}``), then one per
second: ``t`` (seconds since the first frame), ``frames`` and ``analytics`` (totals) and ``lag_ms`` — the largest
extra delay of that second's frames: arrival time minus the frame's RTP timestamp, less the smallest such
difference seen (on one host both clocks are this machine's, so this is queueing and loss recovery, not an offset).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any


async def main(base: str, stream_id: str, seconds: float) -> int:
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from flowgraph.nodes.webrtc.aiortc_adapter import tap_receiver

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("video", direction="recvonly")
    pc.createDataChannel("viewer")
    counts = {"frames": 0, "analytics": 0}
    base_delay: list[float] = []
    window: list[float] = []
    first: list[float] = []

    unwrap = {"last": None, "add": 0}

    def deliver(codec: Any, frame: Any) -> None:
        now = time.monotonic()
        counts["frames"] += 1
        if not first:
            first.append(now)
        stamp = int(frame.timestamp)
        if unwrap["last"] is not None and stamp < unwrap["last"] - 2**31:  # the 32-bit RTP clock wrapped
            unwrap["add"] += 2**32
        unwrap["last"] = stamp
        delay = now - (stamp + unwrap["add"]) / 90_000
        if not base_delay or delay < base_delay[0]:
            base_delay[:] = [delay]
        window.append(delay)

    def on_channel(channel: Any) -> None:
        if channel.label == "analytics":
            channel.on("message", lambda message: counts.__setitem__("analytics", counts["analytics"] + 1))

    tap_receiver(transceiver.receiver, deliver)
    pc.on("datachannel", on_channel)
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        async with http.post(f"{base}/api/stream/connect",
                             json={"offer": pc.localDescription.sdp, "stream_id": stream_id}) as response:
            body = await response.json(content_type=None)
            if response.status != 200:
                print(json.dumps({"error": f"connect answered {response.status}: {body}"}), flush=True)
                return 1
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body["answer"], type="answer"))
    print(json.dumps({"viewer_id": body["viewer_id"]}), flush=True)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        await asyncio.sleep(1.0)
        lag = None
        if window and base_delay:
            lag = round((max(window) - base_delay[0]) * 1000, 1)
        window.clear()
        t = None if not first else round(time.monotonic() - first[0], 2)
        print(json.dumps({"t": t, "frames": counts["frames"], "analytics": counts["analytics"], "lag_ms": lag,
                          "state": pc.connectionState}), flush=True)
    await pc.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]))))
