"""Bridges two offers: the viewer's (flowgraph's page and WHEP players offer) and Janus's (the Streaming plugin
of Janus 1.1, Debian's version, only offers).

Each side gets an answer made from the other side's offer: the viewer's answer carries Janus's ICE credentials,
candidates, fingerprint, SSRCs and feedback under the viewer's own mids and payload types; Janus's answer carries
the viewer's credentials and fingerprint under Janus's mids. The DTLS roles are fixed (viewer = client: Janus
gets ``setup:active``, the viewer ``setup:passive``); the ICE roles need no fixing because Janus runs ICE-lite
(the viewer, a full agent, controls). Header extensions are kept only where both offered them, under the viewer's
ids (Janus takes the ids from the answer it is given); the ``mid`` extension is dropped because the two sides
name their m-lines differently, and RTX is not negotiated (Janus then retransmits NACKed packets as they were).
Janus sends the mountpoint's payload type unchanged, so the mountpoint must use the viewer's H.264 payload type
(:func:`h264_choice`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from flowgraph.nodes.webrtc.errors import BadOffer

#: Session name of answers that came through the SFU (the viewer page keys its stall watchdog on it).
SESSION_NAME = "flowgraph-sfu"
DROP_EXTENSIONS = ("urn:ietf:params:rtp-hdrext:sdes:mid", "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
                   "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id")


@dataclass
class Section:
    kind: str
    port: str
    proto: str
    fmts: list[str]
    lines: list[str] = field(default_factory=list)   # a= and c= lines, in order

    def attrs(self, name: str) -> list[str]:
        prefix = f"a={name}:"
        return [line[len(prefix):] for line in self.lines if line.startswith(prefix)]

    def attr(self, name: str) -> str | None:
        found = self.attrs(name)
        return found[0] if found else None

    def flag(self, name: str) -> bool:
        return f"a={name}" in self.lines


@dataclass
class Sdp:
    session: list[str]
    media: list[Section]

    def attr(self, name: str) -> str | None:
        """A session-level attribute, or the first media section's."""
        prefix = f"a={name}:"
        for line in self.session:
            if line.startswith(prefix):
                return line[len(prefix):]
        for m in self.media:
            value = m.attr(name)
            if value is not None:
                return value
        return None

    def flag(self, name: str) -> bool:
        return f"a={name}" in self.session or any(m.flag(name) for m in self.media)


def parse(text: str) -> Sdp:
    session: list[str] = []
    media: list[Section] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("m="):
            parts = line[2:].split()
            if len(parts) < 3:
                raise BadOffer(f"malformed m-line: {line[:80]!r}")
            media.append(Section(parts[0], parts[1], parts[2], parts[3:]))
        elif media:
            media[-1].lines.append(line)
        else:
            session.append(line)
    return Sdp(session, media)


@dataclass
class H264Choice:
    pt: int
    fmtp: str


def h264_choice(offer: Sdp) -> H264Choice:
    """The viewer's H.264 packetization-mode 1 payload type, constrained baseline preferred."""
    video = next((m for m in offer.media if m.kind == "video" and m.port != "0"), None)
    if video is None:
        raise BadOffer("the offer has no video m-line")
    fmtps = {}
    for value in video.attrs("fmtp"):
        pt, _, params = value.partition(" ")
        fmtps[pt] = params
    candidates = []
    for value in video.attrs("rtpmap"):
        pt, _, codec = value.partition(" ")
        if codec.lower().startswith("h264/90000") and pt in video.fmts:
            params = fmtps.get(pt, "")
            if "packetization-mode=1" not in params:
                continue
            plid = next((p.split("=", 1)[1].lower() for p in params.split(";") if p.strip().startswith(
                "profile-level-id=")), "")
            rank = 0 if plid.startswith("42e0") else 1 if plid.startswith("4200") else 2
            candidates.append((rank, video.fmts.index(pt), int(pt), params))
    if not candidates:
        raise BadOffer("the offer has no H.264 (packetization-mode=1) video codec; the SFU sends H.264 only")
    best = min(candidates)
    return H264Choice(best[2], best[3])


def _extensions(section: Section) -> dict[str, str]:
    """URI -> id (the ``a=extmap`` lines of a section)."""
    found = {}
    for value in section.attrs("extmap"):
        ident, _, rest = value.partition(" ")
        uri = rest.split()[0] if rest.split() else ""
        found[uri] = ident.split("/")[0]
    return found


def _ice(s: Sdp) -> list[str]:
    ufrag, pwd, fingerprint = s.attr("ice-ufrag"), s.attr("ice-pwd"), s.attr("fingerprint")
    if not (ufrag and pwd and fingerprint):
        raise BadOffer("the offer lacks ICE credentials or a DTLS fingerprint")
    return [f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}", f"a=fingerprint:{fingerprint}"]


def _candidates(section: Section, *, drop_mdns: bool = False) -> list[str]:
    out = []
    for c in section.attrs("candidate"):
        if drop_mdns and ".local " in c:
            continue
        out.append(f"a=candidate:{c}")
    return out


def _header(name: str) -> list[str]:
    return ["v=0", f"o=- {secrets.randbits(62)} 2 IN IP4 127.0.0.1", f"s={name}", "t=0 0"]


def bridge(viewer_offer: Sdp, janus_offer: Sdp, choice: H264Choice) -> tuple[str, str]:
    """(answer for the viewer, answer for Janus)."""
    j_video = next((m for m in janus_offer.media if m.kind == "video"), None)
    j_data = next((m for m in janus_offer.media if m.kind == "application"), None)
    if j_video is None:
        raise BadOffer("Janus offered no video (mountpoint misconfigured)")
    j_ice = _ice(janus_offer)
    v_ice = _ice(viewer_offer)
    j_candidates = [c for m in janus_offer.media for c in _candidates(m)]
    j_ext = _extensions(j_video)
    pt = str(choice.pt)
    janus_pt = j_video.fmts[0]
    feedback = [fb.partition(" ")[2] for fb in j_video.attrs("rtcp-fb") if fb.partition(" ")[0] == janus_pt]

    # -- the viewer's answer: its mids and payload type, Janus's transport -----------------------------------
    v_lines = _header(SESSION_NAME)
    v_mids: list[str] = []
    body: list[str] = []
    first_bundled = True
    video_done = False
    for m in viewer_offer.media:
        mid = m.attr("mid") or str(len(v_mids))
        if m.kind == "video" and m.port != "0" and not video_done:
            video_done = True
            v_video_ext = _extensions(m)
            shared = [(uri, ident) for uri, ident in v_video_ext.items()
                      if uri in j_ext and uri not in DROP_EXTENSIONS]
            body += [f"m=video 9 UDP/TLS/RTP/SAVPF {pt}", "c=IN IP4 0.0.0.0", f"a=mid:{mid}", "a=sendonly",
                     "a=rtcp-mux", *j_ice, "a=setup:passive", f"a=rtpmap:{pt} H264/90000",
                     f"a=fmtp:{pt} {choice.fmtp}", *[f"a=rtcp-fb:{pt} {fb}" for fb in feedback if fb],
                     *[f"a=extmap:{ident} {uri}" for uri, ident in shared]]
            ssrc = next((s.split()[0] for s in j_video.attrs("ssrc")), None)
            if ssrc:
                body += ["a=msid:flowgraph video", f"a=ssrc:{ssrc} cname:flowgraph-sfu"]
            v_mids.append(mid)
        elif m.kind == "application" and m.port != "0" and j_data is not None:
            body += [f"m=application 9 {m.proto} {' '.join(m.fmts)}", "c=IN IP4 0.0.0.0", f"a=mid:{mid}",
                     *j_ice, "a=setup:passive", f"a=sctp-port:{j_data.attr('sctp-port') or '5000'}",
                     f"a=max-message-size:{j_data.attr('max-message-size') or '262144'}"]
            v_mids.append(mid)
        else:
            body += [f"m={m.kind} 0 {m.proto} {' '.join(m.fmts)}", "c=IN IP4 0.0.0.0", f"a=mid:{mid}",
                     "a=inactive"]
            continue
        if first_bundled:
            body += [*j_candidates, "a=end-of-candidates"]
            first_bundled = False
    v_lines += [f"a=group:BUNDLE {' '.join(v_mids)}", "a=msid-semantic: WMS *"]
    if janus_offer.flag("ice-lite"):
        v_lines.append("a=ice-lite")
    viewer_answer = "\r\n".join(v_lines + body) + "\r\n"

    # -- Janus's answer: its mids and payload type, the viewer's transport ----------------------------------
    v_video = next(m for m in viewer_offer.media if m.kind == "video" and m.port != "0")
    v_ext = _extensions(v_video)
    viewer_has_data = any(m.kind == "application" and m.port != "0" for m in viewer_offer.media)
    v_candidates = [c for m in viewer_offer.media for c in _candidates(m, drop_mdns=True)]
    j_lines = _header("-")
    j_mids: list[str] = []
    body = []
    for m in janus_offer.media:
        mid = m.attr("mid") or str(len(j_mids))
        if m.kind == "video":
            shared = [(uri, v_ext[uri]) for uri in j_ext if uri in v_ext and uri not in DROP_EXTENSIONS]
            body += [f"m=video 9 UDP/TLS/RTP/SAVPF {janus_pt}", "c=IN IP4 0.0.0.0", f"a=mid:{mid}", "a=recvonly",
                     "a=rtcp-mux", *v_ice, "a=setup:active", f"a=rtpmap:{janus_pt} H264/90000",
                     f"a=fmtp:{janus_pt} {choice.fmtp}",
                     *[f"a=rtcp-fb:{janus_pt} {fb}" for fb in feedback if fb],
                     *[f"a=extmap:{ident} {uri}" for uri, ident in shared]]
        elif m.kind == "application" and viewer_has_data:
            body += [f"m=application 9 {m.proto} {' '.join(m.fmts)}", "c=IN IP4 0.0.0.0", f"a=mid:{mid}",
                     *v_ice, "a=setup:active", f"a=sctp-port:{m.attr('sctp-port') or '5000'}"]
        else:
            body += [f"m={m.kind} 0 {m.proto} {' '.join(m.fmts)}", "c=IN IP4 0.0.0.0", f"a=mid:{mid}",
                     "a=inactive"]
            continue
        if not j_mids:
            body += [*v_candidates, "a=end-of-candidates"]
        j_mids.append(mid)
    j_lines += [f"a=group:BUNDLE {' '.join(j_mids)}", "a=msid-semantic: WMS *"]
    janus_answer = "\r\n".join(j_lines + body) + "\r\n"
    return viewer_answer, janus_answer
