"""Sends every channel's already-encoded Opus packets to every edge's mountpoint port as RTP.

The engine calls `offer()` inside its tick, so nothing here may wait on the network: each send
is a non-blocking datagram write, and a send buffer that backs up drops packets (counted).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import av
import pylibsrtp

from router.edges.rtp import RtpStream
from router.media.engine import Engine, Feed

log = logging.getLogger(__name__)

# A healthy UDP socket never buffers; past this many bytes waiting, packets are dropped.
MAX_BUFFERED_BYTES = 256 * 1024


@dataclass(frozen=True)
class RtpTarget:
    """One edge: channel i goes to host:(port_base + 2*i)."""

    edge: str
    host: str
    port_base: int
    srtp_key: bytes | None = None  # 30 bytes of master key + salt; None: plain RTP

    def port(self, channel_index: int) -> int:
        return self.port_base + 2 * channel_index


@dataclass
class TargetStats:
    sent: int = 0
    dropped: int = 0


@dataclass
class _Target:
    spec: RtpTarget
    transport: asyncio.DatagramTransport | None = None
    stats: TargetStats = field(default_factory=TargetStats)
    srtp: pylibsrtp.Session | None = None

    def __post_init__(self) -> None:
        if self.spec.srtp_key is not None:
            # One outbound session covers every channel's SSRC to this edge.
            self.srtp = pylibsrtp.Session(
                pylibsrtp.Policy(
                    key=self.spec.srtp_key,
                    ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                    srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
                )
            )


class _Quiet(asyncio.DatagramProtocol):
    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while an edge restarts: expected, and the next send retries.
        log.debug("RTP send error: %s", exc)


class ChannelSink:
    """A PacketSink for one channel's feed: wraps each packet once, sends it to every edge."""

    def __init__(self, forwarder: RtpForwarder, channel: str, index: int) -> None:
        self.channel = channel
        self.index = index
        self.stream = RtpStream()
        self._forwarder = forwarder

    def offer(self, packet: av.Packet) -> None:
        if packet.pts is None:
            return
        self._forwarder.send(self.index, self.stream.packet(bytes(packet), int(packet.pts)))


class RtpForwarder:
    def __init__(
        self, engine: Engine, channels: Sequence[str], targets: Sequence[RtpTarget]
    ) -> None:
        self._engine = engine
        self._targets = [_Target(t) for t in targets]
        self.sinks = [ChannelSink(self, c, i) for i, c in enumerate(channels)]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for target in self._targets:
            family = (
                socket.AF_INET6
                if ipaddress.ip_address(target.spec.host).version == 6
                else socket.AF_INET
            )
            target.transport, _ = await loop.create_datagram_endpoint(_Quiet, family=family)
        for sink in self.sinks:
            self._engine.subscribe(sink, Feed(sink.channel))

    def close(self) -> None:
        for sink in self.sinks:
            self._engine.unsubscribe(sink)
        for target in self._targets:
            if target.transport is not None:
                target.transport.close()
                target.transport = None

    def send(self, channel_index: int, datagram: bytes) -> None:
        for target in self._targets:
            transport = target.transport
            if transport is None or transport.is_closing():
                continue
            if transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
                target.stats.dropped += 1
                continue
            packet = datagram if target.srtp is None else target.srtp.protect(datagram)
            transport.sendto(packet, (target.spec.host, target.spec.port(channel_index)))
            target.stats.sent += 1

    def stats(self) -> dict[str, TargetStats]:
        return {t.spec.edge: t.stats for t in self._targets}
