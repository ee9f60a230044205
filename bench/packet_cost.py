"""What one listener's packet costs below Python: libsrtp's protect and the loopback sendto.

100 SRTP sessions (AES-256-GCM, what aiortc negotiates between its peers) and 100 UDP sockets
send to a separate receiving process, the way the engine's tick sends one packet per listener.
Each cost is measured two ways: in a tight loop, and in one burst of 100 packets every 20 ms
as the tick sends (the machine idles in between, so the burst starts with cold caches). The
last rows run the router's own per-listener loop (`send_burst` of router/media/direct_rtp.py,
C and Python) over the same sessions and sockets: header, copy, protect and sendto together.

    python bench/packet_cost.py
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import time

from pylibsrtp import Policy, Session

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from router.media import direct_rtp  # noqa: E402

LISTENERS = 100
PAYLOAD = 160  # bytes: an Opus packet of 20 ms at 64 kbit/s
HEADER = struct.Struct("!BBHII")


def udp_sockets(count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    return socks


def receiver(count: int) -> None:
    """Bound sockets that a blocked process reads, so that each send wakes it as a peer does."""
    import selectors

    socks = udp_sockets(count)
    print(",".join(str(s.getsockname()[1]) for s in socks), flush=True)
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + 120  # stops by itself
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            while True:
                try:
                    key.fileobj.recv(2048)  # type: ignore[union-attr]
                except BlockingIOError:
                    break


def measure(ticks: int, burst: bool, send: bool, ports: list[int]) -> tuple[float, float]:
    """CPU per packet (µs) for protect and for sendto."""
    sessions = [
        Session(
            Policy(
                key=os.urandom(44),
                ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
            )
        )
        for _ in range(LISTENERS)
    ]
    socks = udp_sockets(LISTENERS)
    payload = os.urandom(PAYLOAD)
    protect = sendto = 0
    for tick in range(ticks):
        header = HEADER.pack(0x80, 111, tick & 0xFFFF, tick * 960, 1234)
        t0 = time.thread_time_ns()
        packets = [session.protect(header + payload) for session in sessions]
        t1 = time.thread_time_ns()
        if send:
            for sock, packet, port in zip(socks, packets, ports, strict=True):
                try:
                    sock.sendto(packet, ("127.0.0.1", port))
                except BlockingIOError:
                    pass
        t2 = time.thread_time_ns()
        protect += t1 - t0
        sendto += t2 - t1
        if burst:
            time.sleep(0.02)
    for sock in socks:
        sock.close()
    n = ticks * LISTENERS
    return protect / n / 1000, sendto / n / 1000


class _Holder:
    def __init__(self, sock: socket.socket) -> None:
        self.sendto = sock.sendto

    def is_closing(self) -> bool:
        return False


def measure_router_loop(ticks: int, burst: bool, compiled: bool, ports: list[int]) -> float:
    """CPU per packet (µs) of the router's whole per-listener loop."""
    stream_type, send_burst = direct_rtp.implementation(compiled)
    socks = udp_sockets(LISTENERS)
    streams = []
    for sock, port in zip(socks, ports, strict=True):
        tx = Session(
            Policy(
                key=os.urandom(44),
                ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
            )
        )
        context = int(direct_rtp._ffi.cast("uintptr_t", tx._srtp[0]))
        stream = stream_type(
            direct_rtp._PROTECT, context, tx, HEADER.pack(0x80, 111, 0, 0, 1234), 0, 0
        )
        stream.route(sock.fileno(), "127.0.0.1", port, 0, _Holder(sock))
        streams.append(stream)
    payload = os.urandom(PAYLOAD)
    spent = 0
    for tick in range(ticks):
        t0 = time.thread_time_ns()
        send_burst(streams, payload, tick * 960)
        spent += time.thread_time_ns() - t0
        if burst:
            time.sleep(0.02)
    for sock in socks:
        sock.close()
    return spent / (ticks * LISTENERS) / 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ticks", type=int, default=250)
    p.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.receiver:
        receiver(LISTENERS)
        return 0
    rx = subprocess.Popen(
        [sys.executable, __file__, "--receiver"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert rx.stdout is not None
        ports = [int(x) for x in rx.stdout.readline().split(",")]
        print(f"{LISTENERS} listeners, {PAYLOAD}-byte payloads, {args.ticks} ticks; CPU per packet")
        print(f"{'how':<44}{'protect µs':>12}{'sendto µs':>11}")
        for title, burst in (("tight loop", False), ("one burst every 20 ms (as the tick)", True)):
            protect, sendto = measure(args.ticks, burst, True, ports)
            print(f"{title:<44}{protect:>12.1f}{sendto:>11.1f}")
        print(f"\n{'the router per-listener loop, all of it':<44}{'µs':>12}")
        loops = [("C", True)] if direct_rtp.COMPILED else []
        for name, compiled in [*loops, ("Python", False)]:
            for title, burst in (("tight loop", False), ("one burst every 20 ms", True)):
                cost = measure_router_loop(args.ticks, burst, compiled, ports)
                print(f"{name + ', ' + title:<44}{cost:>12.1f}")
    finally:
        rx.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
