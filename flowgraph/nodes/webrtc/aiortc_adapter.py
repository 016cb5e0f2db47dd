"""Every use flowgraph makes of aiortc's and aioice's internals, in one module, for the versions it was written for.

aiortc has no public API for what a passthrough server needs, so flowgraph reaches inside it — only here:

========================================  ==========================================================================
hook                                      why
========================================  ==========================================================================
``RTCRtpSender._next_encoded_frame``      frames come ready-made from the stream's fan-out (no encoder per viewer)
``RTCRtpSender._send_keyframe``           PLI/FIR from a viewer reach the source (aiortc ignores them in passthrough)
``RTCRtpSender._handle_rtcp_packet``      RTCP (receiver reports, REMB) feeds the viewer's link figures
``RTCRtpSender.__rtp_timestamp``          the sender's random RTP origin, for the page's RTP → pts mapping
``RTCRtpSender.__rtt``                    round-trip time for stats
``RTCRtpSender.__rtp_header_extensions_   a writer that adds the playout-delay header extension
map``
``RTCRtpSender._ssrc``                    matching RTCP reports to the sender
``RTCRtpTransceiver._offerDirection``     refusing offers whose video m-line does not receive
``H264Encoder._packetize``                RTP payloads (single NAL, STAP-A, FU-A) built once per access unit
``RTCRtpReceiver.__decoder_queue``        WHIP ingest: encoded frames taken before aiortc's decoder thread
``RTCRtpReceiver._send_rtcp_pli``         WHIP ingest: keyframe requests to the publisher
``aiortc.codecs.HEADER_EXTENSIONS``       process-wide: playout-delay made negotiable (one more list entry)
``aioice.ice.get_host_addresses``         process-wide: a 127.0.0.1 host candidate for same-host viewers
``RTCPeerConnection.__connect``           process-wide: its unawaited task's failure closes the connection
                                          instead of surfacing as "Task exception was never retrieved"
========================================  ==========================================================================

Importing this module checks the installed aiortc and aioice against :data:`WRITTEN_FOR` and refuses others with an
error naming both; ``tests/nodes/webrtc/test_aiortc_adapter.py`` checks every row of the table against the installed
packages. To try an upgrade: set ``FLOWGRAPH_AIORTC_UNCHECKED=1``, run that test, fix what it names, then widen
:data:`WRITTEN_FOR`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

#: Distribution → the version prefixes this module was written and tested for.
WRITTEN_FOR: dict[str, tuple[str, ...]] = {"aiortc": ("1.16.",), "aioice": ("0.13.",)}
UNCHECKED_ENV = "FLOWGRAPH_AIORTC_UNCHECKED"


class AiortcVersionError(ImportError):
    """The installed aiortc/aioice is not one whose internals this adapter was written for."""


def check_versions(installed: dict[str, str] | None = None) -> None:
    """Raise :class:`AiortcVersionError` naming every package whose version is not in :data:`WRITTEN_FOR`."""
    found = installed if installed is not None else {name: version(name) for name in WRITTEN_FOR}
    wrong = [f"{name} {found[name]} (written for {' or '.join(p + 'x' for p in WRITTEN_FOR[name])})"
             for name in WRITTEN_FOR if not found[name].startswith(WRITTEN_FOR[name])]
    if wrong:
        raise AiortcVersionError(
            f"flowgraph's aiortc adapter ({__name__}) reaches into aiortc/aioice internals and does not know "
            f"{', '.join(wrong)}: install the versions in requirements.txt, or set {UNCHECKED_ENV}=1 and run "
            "tests/nodes/webrtc/test_aiortc_adapter.py to see which assumption broke")


if not os.environ.get(UNCHECKED_ENV):
    check_versions()

from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver  # noqa: E402  (after the version check)
from aiortc.codecs.h264 import H264Encoder  # noqa: E402
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters  # noqa: E402
from aiortc.rtcrtpsender import RTCEncodedFrame  # noqa: E402
from aiortc.rtp import HeaderExtensionsMap  # noqa: E402

log = logging.getLogger("flowgraph.webrtc.aiortc")

_SENDER_RTP_TIMESTAMP = "_RTCRtpSender__rtp_timestamp"
_SENDER_RTT = "_RTCRtpSender__rtt"
_SENDER_HEADER_MAP = "_RTCRtpSender__rtp_header_extensions_map"
_RECEIVER_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_PC_CONNECT = "_RTCPeerConnection__connect"


# -- sending: RTP payloads and the sender's frame source ------------------------------------------------------------
def rtp_payloads(nals: list[bytes]) -> list[bytes]:
    """RTP payloads (packetization-mode 1: single NAL, STAP-A, FU-A) for the NAL units of one access unit."""
    return list(H264Encoder._packetize(nals))


#: Returns the next frame's RTP payloads and RTP timestamp (90 kHz, before the sender's random origin).
NextFrame = Callable[[], Awaitable[tuple[list[bytes], int]]]


def hook_sender(sender: RTCRtpSender, *, next_frame: NextFrame, on_keyframe_request: Callable[[], None],
                on_rtcp: Callable[[Any], None]) -> None:
    """Make ``sender`` send frames from ``next_frame`` (no track, no encoder), report PLI/FIR to
    ``on_keyframe_request`` and every RTCP packet to ``on_rtcp`` (before aiortc handles it). Call before ``send``."""
    original_rtcp = sender._handle_rtcp_packet

    async def next_encoded_frame(codec: Any) -> RTCEncodedFrame:
        payloads, timestamp = await next_frame()
        return RTCEncodedFrame(payloads, timestamp, None)  # type: ignore[arg-type]  # None: no audio level

    async def handle_rtcp(packet: Any) -> None:
        on_rtcp(packet)
        await original_rtcp(packet)

    sender._next_encoded_frame = next_encoded_frame  # type: ignore[method-assign]
    sender._send_keyframe = on_keyframe_request  # type: ignore[method-assign]
    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]


def last_rtp_timestamp(sender: RTCRtpSender) -> int | None:
    """The RTP timestamp of the last packet ``sender`` sent (its random origin + our timestamp)."""
    value = getattr(sender, _SENDER_RTP_TIMESTAMP, None)
    return value if isinstance(value, int) else None


def round_trip_time(sender: RTCRtpSender) -> float | None:
    """The sender's smoothed round-trip time in seconds (from receiver reports), None before the first."""
    value = getattr(sender, _SENDER_RTT, None)
    return value if isinstance(value, float) else None


def sender_ssrc(sender: RTCRtpSender) -> int:
    return int(sender._ssrc)


def set_header_extensions_map(sender: RTCRtpSender, header_map: HeaderExtensionsMap) -> None:
    """Replace ``sender``'s header-extension writer (before ``send()`` configures it)."""
    if not isinstance(getattr(sender, _SENDER_HEADER_MAP, None), HeaderExtensionsMap):
        raise AttributeError(f"RTCRtpSender has no {_SENDER_HEADER_MAP} to replace (see {__name__})")
    setattr(sender, _SENDER_HEADER_MAP, header_map)


def offer_direction(transceiver: RTCRtpTransceiver) -> str | None:
    """The direction the remote offer gave this transceiver's m-line (after ``setRemoteDescription``)."""
    direction = transceiver._offerDirection
    return None if direction is None else str(direction)


# -- receiving (WHIP ingest) ------------------------------------------------------------------------------------------
class _TapQueue:
    """Stands in for ``RTCRtpReceiver``'s decoder queue: encoded frames go to ``deliver``; the end-of-stream
    ``None`` goes on to the decoder thread (which then ends the remote track as usual)."""

    def __init__(self, deliver: Callable[[Any, Any], None]) -> None:
        self._deliver = deliver
        self._inner: queue.Queue[Any] = queue.Queue()

    def put(self, item: Any, *args: Any, **kwargs: Any) -> None:
        if item is None:
            self._inner.put(None)
            return
        codec, encoded_frame = item
        self._deliver(codec, encoded_frame)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.get(*args, **kwargs)


def tap_receiver(receiver: RTCRtpReceiver, deliver: Callable[[Any, Any], None]) -> None:
    """Route a receiver's encoded frames (Annex-B for H.264) to ``deliver(codec, frame)`` instead of its decoder
    (before it starts); nothing is decoded."""
    if not hasattr(receiver, _RECEIVER_DECODER_QUEUE):
        raise AttributeError(f"RTCRtpReceiver has no {_RECEIVER_DECODER_QUEUE} to tap (see {__name__})")
    setattr(receiver, _RECEIVER_DECODER_QUEUE, _TapQueue(deliver))


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Send an RTCP PLI (keyframe request) for ``media_ssrc`` to the publisher."""
    await receiver._send_rtcp_pli(media_ssrc)


# -- process-wide patches (idempotent) ----------------------------------------------------------------------------
def register_header_extension(kind: str, uri: str, local_id: int) -> None:
    """Make ``uri`` negotiable on ``kind`` m-lines: aiortc answers only the extensions in its list."""
    from aiortc.codecs import HEADER_EXTENSIONS

    extensions = HEADER_EXTENSIONS[kind]
    if not any(ext.uri == uri for ext in extensions):
        extensions.append(RTCRtpHeaderExtensionParameters(id=local_id, uri=uri))


_loopback_patched = False


def allow_loopback_candidates() -> None:
    """Make aioice gather a 127.0.0.1 host candidate too (it skips it), so same-host viewers connect.

    Affects every aiortc peer connection of the process, which only adds one candidate.
    """
    global _loopback_patched
    if _loopback_patched:
        return
    import aioice.ice

    original = aioice.ice.get_host_addresses

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses: list[str] = original(use_ipv4, use_ipv6)
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses

    aioice.ice.get_host_addresses = with_loopback
    _loopback_patched = True


_connect_contained = False
#: Peer connections whose connect task failed (ICE, DTLS or SCTP start raised) since the process started.
connect_failures = 0


def contain_connect_failures() -> None:
    """Make a failing connect task close its peer connection instead of leaking the exception.

    ``setRemoteDescription``/``setLocalDescription`` start ICE, DTLS and SCTP in a task aiortc never awaits
    (``asyncio.ensure_future(self.__connect())``). An offer aiortc accepted but cannot connect with — no
    ``a=fingerprint`` (an ``AssertionError`` in DTLS start), bad ICE credentials, a peer that vanishes mid-handshake —
    makes that task fail, and asyncio logs "Task exception was never retrieved" with a traceback whenever the task
    is garbage-collected, while the connection lingers half-started. Wrapped, the failure is one INFO line, counted
    in :data:`connect_failures`, and the connection is closed, so its owner sees ``connectionState == "closed"``
    and cleans up as for any other failure. Affects every peer connection of the process; idempotent.
    """
    global _connect_contained
    if _connect_contained:
        return
    from aiortc import RTCPeerConnection

    original = getattr(RTCPeerConnection, _PC_CONNECT)

    async def connect(pc: RTCPeerConnection) -> None:
        global connect_failures
        try:
            await original(pc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer's description could not be connected with: not our error
            connect_failures += 1
            log.info("peer connection failed to connect (%s: %s): closing it", type(exc).__name__, exc)
            try:
                await pc.close()
            except Exception as close_exc:  # half-started transports: close what can be closed
                log.info("closing a peer connection that failed to connect: %s: %s", type(close_exc).__name__,
                         close_exc)

    setattr(RTCPeerConnection, _PC_CONNECT, connect)
    _connect_contained = True
