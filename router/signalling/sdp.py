"""Cheap checks on an SDP offer before any peer connection is made for it."""

from __future__ import annotations

import re


class SdpError(ValueError):
    pass


_OPUS = re.compile(r"^a=rtpmap:\d+ opus/48000(/2)?\s*$", re.IGNORECASE | re.MULTILINE)


def check_audio_offer(sdp: str) -> None:
    """Raise SdpError with a clear reason unless `sdp` looks like an audio offer with Opus."""
    if not sdp.strip():
        raise SdpError("empty SDP offer")
    lines = sdp.replace("\r\n", "\n").split("\n")
    if lines[0].strip() != "v=0":
        raise SdpError('not an SDP offer: it must start with "v=0"')
    audio = [ln for ln in lines if ln.startswith("m=audio ")]
    if not audio:
        raise SdpError("the offer has no audio section (m=audio)")
    if not _OPUS.search(sdp):
        raise SdpError("the offer does not include the Opus codec (opus/48000/2)")
    if not any(ln.startswith("a=fingerprint:") for ln in lines):
        raise SdpError("the offer has no DTLS fingerprint (a=fingerprint)")
    if not any(ln.startswith("a=ice-ufrag:") for ln in lines):
        raise SdpError("the offer has no ICE credentials (a=ice-ufrag)")
