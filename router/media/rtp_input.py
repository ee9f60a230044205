"""Plain RTP into the floor: a sound desk (or another system) sending Opus, L16 or L24 by UDP.

Each configured input listens on one UDP port. Packets go through the same low-latency
`AudioJitterBuffer` as WebRTC audio (reordering, duplicates, a bounded wait for a lost
packet), are decoded (libopus through PyAV, or big-endian PCM) and land in the source's
`SourceBuffer` as 48 kHz mono blocks, where drift compensation and the engine tick take over.
Anything that is not a usable packet is counted and dropped; nothing a sender does can raise
out of the protocol.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket, is_rtcp

from router.media.engine import Engine, SourceRole
from router.media.ingest import MonoBlocker
from router.media.inputs import SourceBuffer
from router.media.jitter import (
    AudioJitterBuffer,
    ConcealingOpusDecoder,
    EncodedFrame,
    JitterBatch,
    LostFrame,
)

log = logging.getLogger(__name__)

Codec = Literal["opus", "L16", "L24"]


@dataclass(frozen=True)
class RtpFormat:
    codec: Codec = "opus"
    payload_type: int | None = None  # None: any
    channels: int = 1  # PCM only; Opus says it in the stream
    sample_rate: int = 48000  # PCM only; Opus is 48 kHz


@dataclass
class RtpStats:
    packets: int = 0  # RTP packets accepted
    rtcp: int = 0  # RTCP packets on the same port, ignored
    bad: int = 0  # not RTP, or a payload that cannot be right for the codec
    wrong_payload_type: int = 0
    decode_errors: int = 0
    streams: int = 0  # distinct SSRCs seen (a sender restart is a new stream)


class PcmDecoder:
    """RTP L16/L24 (RFC 3551, network byte order, interleaved) to mono s16 frames."""

    def __init__(self, width: int, channels: int, sample_rate: int) -> None:
        self._width = width
        self._channels = channels
        self._rate = sample_rate
        self._time_base = fractions.Fraction(1, sample_rate)
        self._pts = 0
        self._last_len = 0

    def valid(self, payload: bytes) -> bool:
        return len(payload) > 0 and len(payload) % (self._width * self._channels) == 0

    def decode(self, frame: JitterFrame) -> list[av.AudioFrame]:
        items = frame.items if isinstance(frame, JitterBatch) else [EncodedFrame(0, frame.data)]
        out = []
        for item in items:
            if isinstance(item, LostFrame):
                # Silence of a packet's length keeps the timing; the buffer conceals the rest.
                pcm = np.zeros(self._last_len, dtype=np.int16)
            else:
                pcm = self._samples(item.data)
                self._last_len = len(pcm)
            if len(pcm):
                out.append(self._frame(pcm))
        return out

    def _samples(self, data: bytes) -> np.ndarray:
        if self._width == 2:
            pcm = np.frombuffer(data, dtype=">i2").astype(np.int32)
        else:
            # L24: keep the top 16 bits; the mix leaves as 16-bit Opus anyway.
            raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            pcm = ((raw[:, 0] << 24) | (raw[:, 1] << 16)) >> 16
        # Mono as everywhere in the router: the mean of the channels.
        return pcm.reshape(-1, self._channels).mean(axis=1).astype(np.int16)

    def _frame(self, pcm: np.ndarray) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += len(pcm)
        return frame


class _Decoder:
    """Jitter buffer and decoder for one stream (one SSRC)."""

    def __init__(self, fmt: RtpFormat) -> None:
        self.jitter = AudioJitterBuffer(capacity=128)
        self.pcm: PcmDecoder | None = None
        self.opus: ConcealingOpusDecoder | None = None
        if fmt.codec == "opus":
            self.opus = ConcealingOpusDecoder()
        else:
            width = 2 if fmt.codec == "L16" else 3
            self.pcm = PcmDecoder(width, fmt.channels, fmt.sample_rate)

    def valid(self, payload: bytes) -> bool:
        return self.pcm.valid(payload) if self.pcm is not None else len(payload) > 0

    def decode(self, frame: JitterFrame) -> list[av.AudioFrame]:
        if self.pcm is not None:
            return self.pcm.decode(frame)
        assert self.opus is not None
        return [f for f in self.opus.decode(frame) if isinstance(f, av.AudioFrame)]


class RtpInput:
    """One UDP port feeding one floor source, `rtp:<id>`; started and closed by the app."""

    def __init__(
        self,
        input_id: str,
        host: str,
        port: int,
        fmt: RtpFormat,
        engine: Engine,
        role: SourceRole = SourceRole.ROOM,
    ) -> None:
        self.id = input_id
        self.source_id = f"rtp:{input_id}"
        self.host = host
        self.port = port
        self.format = fmt
        self.stats = RtpStats()
        self._engine = engine
        self.role = role
        self._transport: asyncio.DatagramTransport | None = None
        self._buffer: SourceBuffer | None = None
        self._ssrc: int | None = None
        self._decoder: _Decoder | None = None
        self._blocker = MonoBlocker()

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when configured as 0)."""
        if self._transport is None:
            return self.host, self.port
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    async def start(self) -> None:
        """Listen; the floor source appears with the first audio packet (not before: a silent
        port is no floor input, and the event has not started because of it)."""
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), local_addr=(self.host, self.port)
            )
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"RTP input {self.id!r}: cannot listen on {self.host}:{self.port}: {exc.strerror}",
            ) from exc
        self._transport = transport  # type: ignore[assignment]

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._buffer is not None:
            self._engine.remove_source(self.source_id, self._buffer)
            self._buffer = None

    def receive(self, data: bytes) -> None:
        try:
            self._receive(data)
        except Exception:
            # A sender must never be able to break the input (or the event loop's logs).
            self.stats.decode_errors += 1
            log.exception("RTP input %s: packet failed", self.id)

    def _receive(self, data: bytes) -> None:
        if self._transport is None:
            return
        if len(data) >= 2 and is_rtcp(data):
            self.stats.rtcp += 1
            return
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            self.stats.bad += 1
            return
        pt = self.format.payload_type
        if pt is not None and packet.payload_type != pt:
            self.stats.wrong_payload_type += 1
            return
        if packet.ssrc != self._ssrc or self._decoder is None:
            # A new sender (or a restarted one): fresh sequence numbers, fresh decoder state.
            self._ssrc = packet.ssrc
            self._decoder = _Decoder(self.format)
            self._blocker = MonoBlocker()
            self.stats.streams += 1
        if not self._decoder.valid(packet.payload):
            self.stats.bad += 1
            return
        self.stats.packets += 1
        if self._buffer is None:
            self._buffer = self._engine.add_source(self.source_id, self.role)
        packet._data = packet.payload  # type: ignore[attr-defined]  # what the buffer reads
        _, ready = self._decoder.jitter.add(packet)
        if ready is None:
            return
        for frame in self._decoder.decode(ready):
            for block in self._blocker.blocks(frame):
                self._buffer.push(block)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: RtpInput) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._owner.receive(data)

    def error_received(self, exc: Exception) -> None:
        log.warning("RTP input %s: %s", self._owner.id, exc)
