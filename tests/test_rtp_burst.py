"""The direct path's per-listener loop, in C and in Python: real libsrtp, real UDP sockets.

Each packet is read back by a receiving socket and unprotected with the receiver's own libsrtp
session: the header a WebRTC receiver sees (sequence, timestamp, marker, payload type, SSRC,
the mid extension) and the payload must come through exactly, and both implementations must
put the very same bytes on the wire.
"""

from __future__ import annotations

import os
import socket
import struct

import pytest
from pylibsrtp import Policy, Session

from router.media import direct_rtp
from router.media.direct_rtp import _PROTECT, PyRtpStream, implementation

KEY = bytes(range(44))  # AES-256-GCM: 32-byte key and 12-byte salt, what aiortc negotiates
SSRC = 0x11223344
# V=2, X=1 (one-byte extension: mid "0"), PT 111; seq and timestamp are the stream's.
HEADER = (
    bytes([0x90, 111, 0, 0, 0, 0, 0, 0])
    + struct.pack("!I", SSRC)
    + bytes([0xBE, 0xDE, 0, 1, 0x10, ord("0"), 0, 0])
)


def session(direction: int) -> Session:
    return Session(
        Policy(key=KEY, ssrc_type=direction, srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM)
    )


def context_of(tx: Session) -> int:
    return int(direct_rtp._ffi.cast("uintptr_t", tx._srtp[0]))


def kinds() -> list[str]:
    # With CI=true the C extension must have been built: a missing compiler is a failure there.
    if direct_rtp.COMPILED or os.environ.get("CI") == "true":
        return ["c", "python"]
    return ["python"]


@pytest.fixture(params=kinds())
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def udp() -> tuple[socket.socket, socket.socket]:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    rx.bind(("127.0.0.1", 0))
    tx.setblocking(False)
    rx.settimeout(2.0)
    yield tx, rx
    tx.close()
    rx.close()


class SocketHolder:
    """What the ICE transport is to a stream: the owner of its socket (Python sends with it)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        self.sock.sendto(data, address)

    def is_closing(self) -> bool:
        return self.sock.fileno() < 0


def make_stream(kind: str, tx: Session, seq: int = 65534, origin: int = 0xFFFFFF00):
    stream_type, send_burst = implementation(compiled=kind == "c")
    assert (stream_type is PyRtpStream) == (kind == "python")
    return stream_type(_PROTECT, context_of(tx), tx, HEADER, seq, origin), send_burst


def route(stream, sock: socket.socket, to: socket.socket) -> None:
    host, port = to.getsockname()
    stream.route(sock.fileno(), host, port, 0, SocketHolder(sock))


def test_the_c_extension_is_built_in_ci() -> None:
    if os.environ.get("CI") == "true":
        assert direct_rtp.COMPILED, "router/media/_rtp_burst.c was not built (no C compiler?)"


def test_packets_arrive_whole_in_order_with_the_header_a_receiver_needs(kind, udp) -> None:
    tx_sock, rx_sock = udp
    tx, rx = session(Policy.SSRC_ANY_OUTBOUND), session(Policy.SSRC_ANY_INBOUND)
    stream, send_burst = make_stream(kind, tx)
    route(stream, tx_sock, rx_sock)
    payloads = [os.urandom(n) for n in (1, 160, 400, 1275)]
    for i, payload in enumerate(payloads):
        assert send_burst([stream], payload, i * 960) == 1
    got = [rx.unprotect(rx_sock.recv(2048)) for _ in payloads]
    for i, (packet, payload) in enumerate(zip(got, payloads, strict=True)):
        assert packet[0] == 0x90
        assert packet[1] == (111 | 0x80 if i == 0 else 111), "marker on the first packet only"
        seq, timestamp, ssrc = struct.unpack("!HII", packet[2:12])
        assert seq == (65534 + i) & 0xFFFF, "sequence numbers wrap at 16 bits"
        assert timestamp == (0xFFFFFF00 + i * 960) & 0xFFFFFFFF, "timestamps wrap at 32 bits"
        assert ssrc == SSRC
        assert packet[12:20] == HEADER[12:20], "the mid extension is kept"
        assert packet[20:] == payload
    assert (stream.packets, stream.octets) == (4, sum(map(len, payloads)))
    assert stream.wire_bytes == sum(len(HEADER) + len(p) + 16 for p in payloads)  # GCM tag


def test_c_and_python_put_the_same_bytes_on_the_wire(udp) -> None:
    if "c" not in kinds():
        pytest.skip("the C extension is not built here (it is required with CI=true)")
    tx_sock, rx_sock = udp
    wires = {}
    for kind in ("c", "python"):
        stream, send_burst = make_stream(kind, session(Policy.SSRC_ANY_OUTBOUND), seq=7)
        route(stream, tx_sock, rx_sock)
        for i in range(3):
            send_burst([stream], bytes([i]) * 100, i * 960)
        wires[kind] = [rx_sock.recv(2048) for _ in range(3)]
    assert wires["c"] == wires["python"]


def test_one_burst_reaches_every_stream_each_with_its_own_key_and_sequence(kind) -> None:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(6)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
            s.settimeout(2.0)
        streams, keys = [], []
        for n, (out, into) in enumerate(zip(socks[:3], socks[3:], strict=True)):
            key = os.urandom(44)
            tx = Session(
                Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                       srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM)
            )  # fmt: skip
            stream, send_burst = make_stream(kind, tx, seq=100 * n, origin=0)
            route(stream, out, into)
            streams.append(stream)
            keys.append(key)
        payload = b"opus" * 40
        assert send_burst(streams, payload, 960 * 5) == 3
        for n, (into, key) in enumerate(zip(socks[3:], keys, strict=True)):
            rx = Session(
                Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND,
                       srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM)
            )  # fmt: skip
            packet = rx.unprotect(into.recv(2048))
            assert struct.unpack("!H", packet[2:4])[0] == 100 * n
            assert packet[20:] == payload
    finally:
        for s in socks:
            s.close()


def test_a_closed_or_unrouted_stream_sends_nothing_and_keeps_its_sequence(kind, udp) -> None:
    tx_sock, rx_sock = udp
    rx = session(Policy.SSRC_ANY_INBOUND)
    stream, send_burst = make_stream(kind, session(Policy.SSRC_ANY_OUTBOUND), seq=10)
    assert stream.send(b"x" * 50, 0) == -1, "not routed yet"
    route(stream, tx_sock, rx_sock)
    assert stream.send(b"x" * 50, 0) == 1
    stream.close()
    assert send_burst([stream], b"y" * 50, 960) == 0
    route(stream, tx_sock, rx_sock)
    assert stream.send(b"z" * 50, 1920) == 1
    first, second = (rx.unprotect(rx_sock.recv(2048)) for _ in range(2))
    assert [struct.unpack("!H", p[2:4])[0] for p in (first, second)] == [10, 11]
    assert second[20:] == b"z" * 50
    assert stream.packets == 2


def test_what_does_not_fit_a_packet_is_refused(kind, udp) -> None:
    tx_sock, rx_sock = udp
    stream, _ = make_stream(kind, session(Policy.SSRC_ANY_OUTBOUND))
    route(stream, tx_sock, rx_sock)
    assert stream.send(b"\0" * (1500 - len(HEADER) - 15), 0) == -1
    assert stream.send(b"\0" * (1500 - len(HEADER) - 16), 0) == 1
    assert stream.packets == 1


def test_bad_arguments_are_clear_errors(kind, udp) -> None:
    tx_sock, _ = udp
    stream, send_burst = make_stream(kind, session(Policy.SSRC_ANY_OUTBOUND))
    with pytest.raises(ValueError):
        stream.route(tx_sock.fileno(), "listener.local", 5000, 0, SocketHolder(tx_sock))
    with pytest.raises(ValueError):
        implementation(compiled=kind == "c")[0](_PROTECT, 1, None, b"\x80\x6f", 0, 0)
    if kind == "c":
        with pytest.raises(TypeError):
            send_burst([stream, object()], b"x", 0)
        with pytest.raises(TypeError):
            send_burst((stream,), b"x", 0)


def test_a_closed_ice_socket_never_lets_the_stream_write_to_its_reused_descriptor(udp) -> None:
    # The ICE transport may close its socket between two checks of the stream; the process may
    # then reuse that descriptor number for another socket at once.
    if "c" not in kinds():
        pytest.skip("the C extension is not built here (it is required with CI=true)")
    _, rx_sock = udp
    rx = session(Policy.SSRC_ANY_INBOUND)
    stream, _ = make_stream("c", session(Policy.SSRC_ANY_OUTBOUND), seq=1)
    ice = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ice.bind(("127.0.0.1", 0))
    ice_port, fd = ice.getsockname()[1], ice.fileno()
    route(stream, ice, rx_sock)
    ice.close()
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        other.bind(("127.0.0.1", 0))
        assert other.fileno() == fd, "the descriptor number was reused"
        assert stream.send(b"late" * 10, 0) == 1
        data, source = rx_sock.recvfrom(2048)
        assert source[1] == ice_port, "sent from the ICE socket's port, not the new socket's"
        assert rx.unprotect(data)[20:] == b"late" * 10
        stream.close()
        assert stream.fd == -1 and stream.send(b"x", 960) == -1
        assert other.fileno() == fd, "closing the stream left the new socket alone"
        other.sendto(b"still mine", rx_sock.getsockname())
        assert rx_sock.recv(2048) == b"still mine"
    finally:
        other.close()


class RelayLike:
    """Like aioice's TurnTransport: no socket of its own, no is_closing; sendto wraps."""

    def __init__(self, sock: socket.socket, fail: bool = False) -> None:
        self.sock, self.fail, self.sent = sock, fail, 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        if self.fail:
            raise ConnectionError("relay gone")
        self.sent += 1
        self.sock.sendto(data, address)


def test_a_relayed_candidate_sends_through_its_transport_and_one_failure_stops_no_one(
    kind, udp
) -> None:
    tx_sock, rx_sock = udp
    rx = session(Policy.SSRC_ANY_INBOUND)
    relayed, _ = make_stream(kind, session(Policy.SSRC_ANY_OUTBOUND), seq=3)
    broken, send_burst = make_stream(kind, session(Policy.SSRC_ANY_OUTBOUND))
    relay = RelayLike(tx_sock)
    relayed.route_transport(relay, rx_sock.getsockname())
    broken.route_transport(RelayLike(tx_sock, fail=True), rx_sock.getsockname())
    assert send_burst([broken, relayed], b"turn" * 30, 0) == 1
    assert (broken.send_errors, relayed.send_errors, relay.sent) == (1, 0, 1)
    packet = rx.unprotect(rx_sock.recv(2048))
    assert struct.unpack("!H", packet[2:4])[0] == 3
    assert packet[20:] == b"turn" * 30
    relayed.close()
    assert relayed.send(b"x", 960) == -1 and relay.sent == 1


def test_a_transport_that_closes_its_stream_while_sending_is_survived(kind, udp) -> None:
    tx_sock, rx_sock = udp
    stream, send_burst = make_stream(kind, session(Policy.SSRC_ANY_OUTBOUND))

    class ClosingRelay(RelayLike):
        def sendto(self, data: bytes, address: tuple[str, int]) -> None:
            super().sendto(data, address)
            stream.close()  # as a connection's close callback might, mid-burst

    stream.route_transport(ClosingRelay(tx_sock), rx_sock.getsockname())
    assert send_burst([stream, stream], b"once" * 10, 0) == 1, "sent, then closed"
    assert rx_sock.recv(2048)
    assert stream.send(b"x", 960) == -1
