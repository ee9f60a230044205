"""Sending already-encoded packets straight through an aiortc sender's SRTP session.

aiortc's RTCRtpSender costs about 80 µs of Python per packet per listener: a task wake-up per
packet, an RtpPacket object, a full serialize, NTP time from datetime, two awaits down to the
socket. For a listener that only forwards the engine's shared Opus packet, the work that is
really per listener is the 12-byte header, the SRTP protect and the sendto. `DirectRtpPath`
does just that, synchronously, inside the engine's tick: its `RtpStream` keeps the header in a
buffer of its own, copies the payload in behind it, and libsrtp protects it in place. The
stream is C (`router/media/_rtp_burst.c`, whose `send_burst` serves all of a feed's listeners
in one call) when it was built, else `PyRtpStream`, the same in Python.

It keeps what the rest of aiortc relies on: the negotiated SSRC, payload type and mid header
extension, and the sender's counters that its RTCP sender reports are built from (packet and
octet counts, the NTP/RTP timestamp pair), so RTCP, stats and receivers see a normal sender.
The attributes it reads are aiortc internals (and pylibsrtp's binding, pinned with aiortc in
pyproject.toml); `supported` checks aiortc's, and the caller keeps aiortc's own path when one
is missing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import struct
from collections.abc import Callable
from typing import Protocol

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
_PROTECT = int(_ffi.cast("uintptr_t", _ffi.addressof(_lib, "srtp_protect")))
# The sender's name-mangled counters that its RTCP sender reports read.
_PACKETS = "_RTCRtpSender__packet_count"
_OCTETS = "_RTCRtpSender__octet_count"
_NTP = "_RTCRtpSender__ntp_timestamp"
_RTP_TS = "_RTCRtpSender__rtp_timestamp"
_DTLS_PACKETS = "_RTCDtlsTransport__tx_packets"
_DTLS_BYTES = "_RTCDtlsTransport__tx_bytes"


class RtpStream(Protocol):
    """One listener's SRTP-protected RTP stream: `router.media._rtp_burst.RtpStream` (C) or
    `PyRtpStream`, the same in Python."""

    packets: int
    octets: int
    wire_bytes: int
    refused: int
    last_status: int
    send_errors: int

    def route(self, fd: int, host: str, port: int, scope_id: int, holder: object) -> None: ...

    def route_transport(self, holder: object, address: tuple) -> None: ...

    def close(self) -> None: ...

    def send(self, payload: bytes | av.Packet, pts: int) -> int: ...


def _never() -> bool:
    return False


class PyRtpStream:
    """What `_rtp_burst.RtpStream` does, in Python: for an install without a C compiler.
    The header stays in a libsrtp buffer of its own, the payload is copied in behind it, and
    libsrtp protects it in place (pylibsrtp's `Session.protect` would add a bytes copy, type
    checks and an allocation per packet)."""

    def __init__(
        self, protect: int, context: int, owner: object, header: bytes, seq: int, origin: int
    ) -> None:
        del protect  # libsrtp is called through pylibsrtp's binding
        if not 12 <= len(header) <= _MTU - _TAG_ROOM:
            raise ValueError("an RTP header is 12 bytes or more")
        self._owner = owner
        self._context = _ffi.cast("srtp_t", context)
        self._cdata = _ffi.new("char[]", _MTU)
        self._buf = _ffi.buffer(self._cdata)
        self._hlen = len(header)
        self._buf[0 : self._hlen] = header
        self._pt = header[1] & 0x7F
        self._length = _ffi.new("int *")
        self._marker = True
        self._holder: object = None
        self._address: tuple | None = None
        self._closing: Callable[[], bool] = _never
        self.seq = seq & 0xFFFF
        self._origin = origin
        self.fd = -1
        self.packets = self.octets = self.wire_bytes = self.refused = self.send_errors = 0
        self.last_status = 0

    def route(self, fd: int, host: str, port: int, scope_id: int, holder: object) -> None:
        del scope_id  # the transport's sendto takes the plain address
        if fd < 0 or not 0 <= port <= 65535:
            raise ValueError("fd or port out of range")
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                socket.inet_pton(family, host)
                break
            except OSError:
                continue
        else:
            raise ValueError(f"not a numeric address: {host}")
        self.fd, self._holder, self._address = fd, holder, (host, port)
        self._closing = getattr(holder, "is_closing", _never)

    def route_transport(self, holder: object, address: tuple) -> None:
        self.fd, self._holder, self._address = -1, holder, address
        self._closing = getattr(holder, "is_closing", _never)

    def close(self) -> None:
        self.fd, self._holder, self._address = -1, None, None

    def send(self, payload: bytes | av.Packet, pts: int) -> int:
        size = len(payload) if isinstance(payload, bytes) else payload.size
        buf, hlen = self._buf, self._hlen
        if self._address is None or hlen + size + _TAG_ROOM > _MTU:
            return -1
        timestamp = (self._origin + pts) & 0xFFFFFFFF
        _SEQ_TS.pack_into(buf, 2, self.seq, timestamp)
        _BYTE.pack_into(buf, 1, self._pt | 0x80 if self._marker else self._pt)
        length = self._length
        length[0] = hlen + size
        buf[hlen : length[0]] = payload
        # In place: the header is authenticated, not encrypted, so it stays valid for the next.
        status = _lib.srtp_protect(self._context, self._cdata, length)
        if status:
            self.refused += 1
            self.last_status = status
            return -1
        self.seq = (self.seq + 1) & 0xFFFF
        self._marker = False
        wire = length[0]
        self.packets += 1
        self.octets += size
        self.wire_bytes += wire
        if self._closing():
            return 0  # the connection closed since the last check: a lost packet
        try:
            self._holder.sendto(buf[0:wire], self._address)  # type: ignore[attr-defined]
        except Exception:  # as in C: one listener's transport failing must not stop the burst
            self.send_errors += 1
            return 0
        return 1


def py_send_burst(streams: list[RtpStream], payload: bytes | av.Packet, pts: int) -> int:
    return sum(stream.send(payload, pts) == 1 for stream in streams)


try:
    from router.media import _rtp_burst
except ImportError:  # installed without a C compiler: the same path in Python
    _rtp_burst = None  # type: ignore[assignment]

COMPILED = _rtp_burst is not None
SendBurst = Callable[[list[RtpStream], "bytes | av.Packet", int], int]


def implementation(compiled: bool = COMPILED) -> tuple[type, SendBurst]:
    """The stream class and burst function: C when built (and `compiled`), else Python."""
    if compiled and _rtp_burst is not None:
        return _rtp_burst.RtpStream, _rtp_burst.send_burst
    return PyRtpStream, py_send_burst


class DirectRtpPath:
    """One sender's RTP stream, written directly: header, SRTP, the ICE pair's socket."""

    def __init__(
        self, transceiver: RTCRtpTransceiver, dtls: RTCDtlsTransport, compiled: bool = COMPILED
    ) -> None:
        sender = transceiver.sender
        codec = transceiver._codecs[0]
        extensions = HeaderExtensionsMap()
        extensions.configure(RTCRtpParameters(headerExtensions=transceiver._headerExtensions))
        template = RtpPacket(payload_type=codec.payloadType, ssrc=sender._ssrc)
        template.extensions.mid = transceiver.mid
        session = dtls._tx_srtp
        self._origin = secrets.randbits(32)
        stream_type, self.send_burst = implementation(compiled)
        self.stream: RtpStream = stream_type(
            _PROTECT,
            int(_ffi.cast("uintptr_t", session._srtp[0])),
            session,  # keeps the libsrtp context alive
            template.serialize(extensions),
            secrets.randbelow(1 << 15),
            self._origin,
        )
        self._sender = sender
        self._dtls = dtls
        self._ice = dtls.transport._connection
        self._pair: object = None
        self._transport: asyncio.BaseTransport | None = None
        self._closing: Callable[[], bool] = _never
        self._synced_packets = 0
        self._synced_wire = 0
        self._refused_seen = 0

    @classmethod
    def attach(
        cls, transceiver: RTCRtpTransceiver, compiled: bool = COMPILED
    ) -> DirectRtpPath | None:
        """The direct path once the connection is up; None while it is not, or when this aiortc
        does not have the internals it needs (then the caller keeps aiortc's own sender)."""
        dtls = transceiver.sender.transport
        if dtls is None or dtls._state is not State.CONNECTED:
            return None
        return cls(transceiver, dtls, compiled)

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

    def ready(self, pts: int) -> RtpStream | None:
        """The stream, routed to the ICE pair's socket, when the packet of `pts` may go out now;
        None once the connection is closed (the stream is then closed too, before its socket)."""
        transport = self._transport
        if (
            self._dtls._state is not State.CONNECTED
            or transport is None
            or self._closing()
            or self._ice._nominated.get(1) is not self._pair
        ) and not self._reroute():
            return None
        self._sync(pts)
        if self.stream.refused != self._refused_seen:
            if not self._refused_seen:
                log.warning(
                    "libsrtp refused a packet (status %d); dropping", self.stream.last_status
                )
            self._refused_seen = self.stream.refused
        return self.stream

    def send(self, payload: bytes | av.Packet, pts: int) -> bool:
        """Send one packet on its own (the engine sends in bursts); False when it cannot."""
        stream = self.ready(pts)
        return stream is not None and stream.send(payload, pts) == 1

    def _reroute(self) -> bool:
        self.close()
        pair = self._ice._nominated.get(1)
        if self._dtls._state is not State.CONNECTED or pair is None:
            return False
        transport = pair.protocol.transport
        # A TURN transport has no is_closing(); the DTLS state says when it is gone.
        closing = getattr(transport, "is_closing", _never)
        if transport is None or closing():
            return False
        host, port = pair.remote_addr
        try:
            sock = transport.get_extra_info("socket")
            if sock is None:
                # A relayed candidate: its transport wraps every datagram for the TURN server.
                self.stream.route_transport(transport, pair.remote_addr)
            else:
                family, _, _, _, address = socket.getaddrinfo(
                    host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
                )[0]
                scope_id = address[3] if family == socket.AF_INET6 else 0
                self.stream.route(sock.fileno(), address[0], port, scope_id, transport)
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("no direct route to %s:%s (%s)", host, port, exc)
            return False
        # The nominated pair is fixed once connected: this runs once per connection.
        self._pair, self._transport, self._closing = pair, transport, closing
        return True

    def _sync(self, pts: int) -> None:
        # aiortc's RTCP sender builds its sender reports from these. `FeedFanout` checks a
        # stream every 25 ticks, so they may be up to half a second old, which no receiver can
        # tell from a report sent a moment earlier (reports come every 5 s).
        stream, sender = self.stream, self._sender
        setattr(sender, _PACKETS, stream.packets)
        setattr(sender, _OCTETS, stream.octets)
        if stream.packets - self._synced_packets >= _SR_EVERY or not self._synced_packets:
            # One consistent NTP/RTP pair: the packet about to go out, and now.
            setattr(sender, _NTP, current_ntp_time())
            setattr(sender, _RTP_TS, (self._origin + pts) & 0xFFFFFFFF)
            dtls = self._dtls
            wire = stream.wire_bytes - self._synced_wire
            packets = stream.packets - self._synced_packets
            setattr(dtls, _DTLS_PACKETS, getattr(dtls, _DTLS_PACKETS, 0) + packets)
            setattr(dtls, _DTLS_BYTES, getattr(dtls, _DTLS_BYTES, 0) + wire)
            self._synced_packets, self._synced_wire = stream.packets, stream.wire_bytes

    def close(self) -> None:
        self.stream.close()
        self._pair = self._transport = None
        self._closing = _never
