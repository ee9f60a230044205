"""RTP packetisation of already-encoded Opus packets: one stream per channel (RFC 3550/7587)."""

from __future__ import annotations

import secrets
import struct

OPUS_PAYLOAD_TYPE = 111  # what the edges' mountpoints are created with


class RtpStream:
    """Own SSRC and sequence numbers; the timestamp follows the engine's pts (1/48000)."""

    def __init__(self, payload_type: int = OPUS_PAYLOAD_TYPE) -> None:
        self.payload_type = payload_type
        self.ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        # RFC 3550: random initial values, so a restarted router is not mistaken for a replay.
        self._ts_offset = secrets.randbits(32)
        self._first = True

    def packet(self, payload: bytes, pts: int) -> bytes:
        marker = 0x80 if self._first else 0  # the start of a talkspurt: a receiver resyncs
        self._first = False
        header = struct.pack(
            "!BBHII",
            0x80,  # version 2, no padding, no extension, no CSRC
            marker | self.payload_type,
            self._seq,
            (self._ts_offset + pts) & 0xFFFFFFFF,
            self.ssrc,
        )
        self._seq = (self._seq + 1) & 0xFFFF
        return header + payload
