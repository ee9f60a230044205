"""Per-consumer proxy tracks: the same encoded packet goes to every consumer of a feed.

A sender stops its track when its peer connection ends, so every consumer has its own small
track; never hand one shared track to several senders.

A track bound to its transceiver sends through `DirectRtpPath` once the connection is up: the
packet goes out inside the engine's tick, and aiortc's sender loop stays parked in `recv`.
Unbound tracks (and an aiortc without the internals the direct path needs) use the queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from router.media.direct_rtp import DirectRtpPath


class PacketSink(Protocol):
    def offer(self, packet: av.Packet) -> None: ...


class PacketTrack(MediaStreamTrack):
    """An outgoing audio track fed with already-encoded packets, paced by the engine tick."""

    kind = "audio"

    def __init__(self, capacity: int = 3) -> None:
        super().__init__()
        self._queue: deque[av.Packet] = deque()
        self._capacity = capacity
        self._wakeup = asyncio.Event()
        self._transceiver: RTCRtpTransceiver | None = None
        self._direct: DirectRtpPath | None = None
        self.delivered = 0
        self.dropped = 0

    def bind(self, transceiver: RTCRtpTransceiver) -> None:
        """Send through `transceiver`'s SRTP session directly (before the first packet)."""
        if DirectRtpPath.supported(transceiver):
            self._transceiver = transceiver

    @property
    def direct(self) -> bool:
        return self._direct is not None

    def offer(self, packet: av.Packet) -> None:
        if self._transceiver is not None:
            self._send_direct(packet)
            return
        if len(self._queue) >= self._capacity:
            # A stalled consumer loses old audio rather than gaining latency.
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(packet)
        self._wakeup.set()

    def _send_direct(self, packet: av.Packet) -> None:
        direct = self._direct
        if direct is None:
            direct = self._direct = DirectRtpPath.attach(self._transceiver)  # type: ignore[arg-type]
            if direct is None:  # not connected yet: nobody to send to
                self.dropped += 1
                return
        if direct.send(packet, packet.size, packet.pts):
            self.delivered += 1
        else:
            self.dropped += 1

    async def recv(self) -> av.Packet:  # type: ignore[override]
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._wakeup.clear()
            await self._wakeup.wait()
        if self.delivered == 0:
            # The sender starts late (after DTLS): start from the newest packet, not a backlog.
            while len(self._queue) > 1:
                self._queue.popleft()
        self.delivered += 1
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        self._wakeup.set()
