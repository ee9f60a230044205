"""Sending already-encoded packets straight through an aiortc sender's SRTP session.

aiortc's RTCRtpSender costs about 80 µs of Python per packet per listener: a task wake-up per
packet, an RtpPacket object, a full serialize, NTP time from datetime, two awaits down to the
socket. For a listener that only forwards the engine's shared Opus packet, the work that is
really per listener is the 12-byte header, the SRTP protect and the sendto. `DirectRtpPath`
does just that, synchronously, inside the engine's tick.

It keeps what the rest of aiortc relies on: the negotiated SSRC, payload type and mid header
extension, and the sender's counters that its RTCP sender reports are built from (packet and
octet counts, the NTP/RTP timestamp pair), so RTCP, stats and receivers see a normal sender.
The attributes it reads are aiortc internals; `attach` checks each of them and returns None
when one is missing, and the caller keeps aiortc's own path.
"""

from __future__ import annotations

import logging
import secrets
import struct

from aiortc.clock import current_ntp_time
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpparameters import RTCRtpParameters
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

log = logging.getLogger(__name__)

_SEQ_TS = struct.Struct("!HI")
_SR_EVERY = 25  # packets between refreshes of the sender report's NTP/RTP timestamp pair
# The sender's name-mangled counters that its RTCP sender reports read.
_PACKETS = "_RTCRtpSender__packet_count"
_OCTETS = "_RTCRtpSender__octet_count"
_NTP = "_RTCRtpSender__ntp_timestamp"
_RTP_TS = "_RTCRtpSender__rtp_timestamp"
_DTLS_PACKETS = "_RTCDtlsTransport__tx_packets"
_DTLS_BYTES = "_RTCDtlsTransport__tx_bytes"


class DirectRtpPath:
    """One sender's RTP stream, written directly: header, SRTP, the ICE pair's socket."""

    def __init__(self, transceiver: RTCRtpTransceiver, dtls: RTCDtlsTransport) -> None:
        sender = transceiver.sender
        codec = transceiver._codecs[0]
        extensions = HeaderExtensionsMap()
        extensions.configure(RTCRtpParameters(headerExtensions=transceiver._headerExtensions))
        template = RtpPacket(payload_type=codec.payloadType, ssrc=sender._ssrc)
        template.extensions.mid = transceiver.mid
        self._header = bytearray(template.serialize(extensions))
        self._marker = True  # the first packet of a talkspurt
        self._sender = sender
        self._dtls = dtls
        self._srtp = dtls._tx_srtp
        self._ice = dtls.transport._connection
        self._pair: object = None
        self._route: tuple = (None, None)
        self._seq = secrets.randbelow(1 << 15)
        self._origin = secrets.randbits(32)
        self._packets = 0
        self._octets = 0
        self._wire = 0  # protected bytes and packets not yet added to the DTLS transport's counters
        self._wire_packets = 0

    @classmethod
    def attach(cls, transceiver: RTCRtpTransceiver) -> DirectRtpPath | None:
        """The direct path once the connection is up; None while it is not, or when this aiortc
        does not have the internals it needs (then the caller keeps aiortc's own sender)."""
        dtls = transceiver.sender.transport
        if dtls is None or dtls._state is not State.CONNECTED:
            return None
        return cls(transceiver, dtls)

    @staticmethod
    def supported(transceiver: RTCRtpTransceiver) -> bool:
        sender = transceiver.sender
        return all(
            hasattr(obj, name)
            for obj, name in (
                (transceiver, "_codecs"),
                (transceiver, "_headerExtensions"),
                (sender, "_ssrc"),
                (sender, _PACKETS),
                (sender, _OCTETS),
                (sender, _NTP),
                (sender, _RTP_TS),
            )
        )

    def send(self, payload: bytes, pts: int) -> bool:
        """Send one packet (pts in 1/48000, the RTP clock of Opus); False once closed."""
        if self._dtls._state is not State.CONNECTED:
            return False
        pair = self._ice._nominated.get(1)
        if pair is not self._pair:
            # The nominated pair is fixed once connected; its address is a computed property.
            if pair is None:
                return False
            self._pair, self._route = pair, (pair.protocol.transport, pair.remote_addr)
        header = self._header
        timestamp = (self._origin + pts) & 0xFFFFFFFF
        _SEQ_TS.pack_into(header, 2, self._seq, timestamp)
        if self._marker:
            header[1] |= 0x80
            self._marker = False
            data = bytes(header) + payload
            header[1] &= 0x7F
        else:
            data = bytes(header) + payload
        protected = self._srtp.protect(data)
        transport, address = self._route
        transport.sendto(protected, address)
        self._seq = (self._seq + 1) & 0xFFFF
        self._count(len(payload), len(protected), timestamp)
        return True

    def _count(self, octets: int, wire: int, timestamp: int) -> None:
        sender = self._sender
        self._packets += 1
        self._octets += octets
        self._wire += wire
        self._wire_packets += 1
        # Sender reports go out at any moment: their packet and octet counts stay exact.
        setattr(sender, _PACKETS, self._packets)
        setattr(sender, _OCTETS, self._octets)
        if self._packets % _SR_EVERY == 1:
            # A sender report needs one consistent NTP/RTP pair, not one per packet; the
            # transport's byte counters only feed getStats.
            setattr(sender, _NTP, current_ntp_time())
            setattr(sender, _RTP_TS, timestamp)
            dtls = self._dtls
            setattr(dtls, _DTLS_PACKETS, getattr(dtls, _DTLS_PACKETS, 0) + self._wire_packets)
            setattr(dtls, _DTLS_BYTES, getattr(dtls, _DTLS_BYTES, 0) + self._wire)
            self._wire = self._wire_packets = 0
