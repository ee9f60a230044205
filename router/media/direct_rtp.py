"""Sending already-encoded packets straight through an aiortc sender's SRTP session.

aiortc's RTCRtpSender costs about 80 µs of Python per packet per listener: a task wake-up per
packet, an RtpPacket object, a full serialize, NTP time from datetime, two awaits down to the
socket. For a listener that only forwards the engine's shared Opus packet, the work that is
really per listener is the 12-byte header, the SRTP protect and the sendto. `DirectRtpPath`
does just that, synchronously, inside the engine's tick: the header stays in a buffer of its
own, the payload is copied in behind it, and libsrtp protects it in place (pylibsrtp's
`Session.protect` would add a bytes copy, type checks and an allocation per packet).

It keeps what the rest of aiortc relies on: the negotiated SSRC, payload type and mid header
extension, and the sender's counters that its RTCP sender reports are built from (packet and
octet counts, the NTP/RTP timestamp pair), so RTCP, stats and receivers see a normal sender.
The attributes it reads are aiortc internals (and pylibsrtp's binding, pinned with aiortc in
pyproject.toml); `supported` checks aiortc's, and the caller keeps aiortc's own path when one
is missing.
"""

from __future__ import annotations

import logging
import secrets
import struct

import av
from aiortc.clock import current_ntp_time
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpparameters import RTCRtpParameters
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from pylibsrtp._binding import ffi as _ffi
from pylibsrtp._binding import lib as _lib

log = logging.getLogger(__name__)

_SEQ_TS = struct.Struct("!HI")
_BYTE = struct.Struct("!B")
_MTU = 1500  # the packet buffer; an Opus packet of 20 ms (at most 1275 bytes) fits with its tag
_TAG_ROOM = 16  # the longest SRTP authentication tag (AES-GCM)
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
        header = template.serialize(extensions)
        self._hlen = len(header)
        self._pt = header[1]
        self._session = dtls._tx_srtp  # keeps the libsrtp context below alive
        self._context = self._session._srtp[0]
        self._cdata = _ffi.new("char[]", _MTU)
        self._buf = _ffi.buffer(self._cdata)
        self._buf[0 : self._hlen] = header
        self._length = _ffi.new("int *")
        self._marker = True  # the first packet of a talkspurt
        self._failures = 0
        self._sender = sender
        self._dtls = dtls
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

    def send(self, payload: bytes | av.Packet, size: int, pts: int) -> bool:
        """Send one packet of `size` bytes (pts in 1/48000, the RTP clock of Opus); False once
        closed, or when libsrtp refuses it."""
        if self._dtls._state is not State.CONNECTED:
            return False
        pair = self._ice._nominated.get(1)
        if pair is not self._pair:
            # The nominated pair is fixed once connected; its address is a computed property.
            if pair is None:
                return False
            self._pair, self._route = pair, (pair.protocol.transport, pair.remote_addr)
        buf, hlen = self._buf, self._hlen
        if hlen + size + _TAG_ROOM > _MTU:
            return False
        timestamp = (self._origin + pts) & 0xFFFFFFFF
        _SEQ_TS.pack_into(buf, 2, self._seq, timestamp)
        if self._marker:
            _BYTE.pack_into(buf, 1, self._pt | 0x80)
        length = self._length
        length[0] = hlen + size
        buf[hlen : length[0]] = payload
        # In place: the header is authenticated, not encrypted, so it stays valid for the next.
        status = _lib.srtp_protect(self._context, self._cdata, length)
        if status:
            self._failures += 1
            if self._failures == 1:
                log.warning("libsrtp refused a packet (status %d); dropping", status)
            return False
        if self._marker:
            _BYTE.pack_into(buf, 1, self._pt)
            self._marker = False
        wire = length[0]
        transport, address = self._route
        transport.sendto(buf[0:wire], address)
        self._seq = (self._seq + 1) & 0xFFFF
        self._count(size, wire, timestamp)
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
