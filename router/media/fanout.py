"""Per-consumer proxy tracks: the same encoded packet goes to every consumer of a feed.

A sender stops its track when its peer connection ends, so every consumer has its own small
track; never hand one shared track to several senders.

A track bound to its transceiver sends through `DirectRtpPath` once the connection is up: the
packet goes out inside the engine's tick, and aiortc's sender loop stays parked in `recv`.
`FeedFanout` keeps the direct streams of a feed gathered and sends each packet to all of them
in one call (C when it was built). Unbound tracks (and an aiortc without the internals the
direct path needs) use the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from router.media.direct_rtp import COMPILED, DirectRtpPath, RtpStream, SendBurst

log = logging.getLogger(__name__)


class PacketSink(Protocol):
    def offer(self, packet: av.Packet) -> None: ...


class PacketTrack(MediaStreamTrack):
    """An outgoing audio track fed with already-encoded packets, paced by the engine tick."""

    kind = "audio"

    def __init__(self, capacity: int = 3) -> None:
        super().__init__()
        self._compiled = COMPILED
        self._queue: deque[av.Packet] = deque()
        self._capacity = capacity
        self._wakeup = asyncio.Event()
        self._transceiver: RTCRtpTransceiver | None = None
        self._direct: DirectRtpPath | None = None
        self._handed = 0  # packets aiortc's sender took from the queue
        self.dropped = 0

    def bind(self, transceiver: RTCRtpTransceiver, compiled: bool = COMPILED) -> None:
        """Send through `transceiver`'s SRTP session directly (before the first packet), in
        bursts through the C extension if `compiled` and it was built, else in Python."""
        if DirectRtpPath.supported(transceiver):
            self._transceiver = transceiver
            self._compiled = compiled

    @property
    def direct(self) -> bool:
        return self._direct is not None

    @property
    def connecting(self) -> bool:
        """Bound to the direct path, live, and its stream not up yet."""
        return self._transceiver is not None and self.readyState == "live" and not self.direct

    @property
    def delivered(self) -> int:
        """Packets sent on the direct path or handed to aiortc's sender."""
        direct = self._direct
        return self._handed + (direct.stream.packets if direct is not None else 0)

    def offer(self, packet: av.Packet) -> None:
        """One packet for this track alone (`FeedFanout` sends direct tracks' in bursts)."""
        if self._transceiver is None:
            self._enqueue(packet)
            return
        direct = self._direct_path()
        if direct is None or not direct.send(packet, packet.pts):
            self.dropped += 1  # not connected yet, or closed: nobody to send to

    def ready_path(self, pts: int) -> DirectRtpPath | None:
        """The direct path when its stream is up and may send the packet of `pts` in a burst."""
        if self._transceiver is None or self.readyState != "live":
            return None
        direct = self._direct_path()
        return direct if direct is not None and direct.ready(pts) is not None else None

    def _enqueue(self, packet: av.Packet) -> None:
        if len(self._queue) >= self._capacity:
            # A stalled consumer loses old audio rather than gaining latency.
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(packet)
        self._wakeup.set()

    def _direct_path(self) -> DirectRtpPath | None:
        if self._direct is None:
            transceiver = self._transceiver
            assert transceiver is not None
            self._direct = DirectRtpPath.attach(transceiver, self._compiled)
        return self._direct

    async def recv(self) -> av.Packet:  # type: ignore[override]
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._wakeup.clear()
            await self._wakeup.wait()
        if self._handed == 0:
            # The sender starts late (after DTLS): start from the newest packet, not a backlog.
            while len(self._queue) > 1:
                self._queue.popleft()
        self._handed += 1
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        if self._direct is not None:
            self._direct.close()
        self._wakeup.set()


_RECHECK_TICKS = 25  # ticks between checks of every gathered stream (connection, RTCP counters)


class FeedFanout:
    """The sinks of one feed. The direct listeners' streams are gathered and checked every few
    ticks, and at once when a sink comes, goes or is still connecting; in between, a packet goes
    out to all of them in one call, with no Python per listener. (A stream whose connection
    closed in between writes to its own duplicate of the socket until the next check.)"""

    def __init__(self) -> None:
        self.sinks: list[PacketSink] = []
        self._bursts: list[tuple[SendBurst, list[RtpStream]]] = []
        self._others: list[PacketSink] = []
        self._stale = True
        self._ticks = 0

    def add(self, sink: PacketSink) -> None:
        self.sinks.append(sink)
        self._stale = True

    def remove(self, sink: PacketSink) -> None:
        self.sinks.remove(sink)
        self._stale = True

    def deliver(self, packet: av.Packet) -> int:
        """Send `packet` to every sink; returns how many failed (each logged), the others are
        served regardless."""
        pts = packet.pts
        self._ticks += 1
        if self._stale or self._ticks % _RECHECK_TICKS == 0:
            self._gather(pts)
        failed = 0
        for sink in self._others:
            try:
                sink.offer(packet)
            except Exception:
                failed += 1
                log.exception("delivery to %r failed", sink)
        for send_burst, streams in self._bursts:
            send_burst(streams, packet, pts)
        return failed

    def _gather(self, pts: int) -> None:
        # One burst per implementation: one, unless a test mixes C and Python.
        bursts: dict[SendBurst, list[RtpStream]] = {}
        others: list[PacketSink] = []
        stale = False
        for sink in self.sinks:
            if type(sink) is PacketTrack:
                try:
                    direct = sink.ready_path(pts)
                except Exception:
                    log.exception("direct path of %r failed", sink)
                    direct = None
                if direct is not None:
                    bursts.setdefault(direct.send_burst, []).append(direct.stream)
                    continue
                # A direct track still connecting is looked at again next tick.
                stale = stale or sink.connecting
            others.append(sink)
        self._bursts, self._others, self._stale = list(bursts.items()), others, stale
