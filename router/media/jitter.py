"""Low-latency audio jitter buffer and loss-concealing Opus decoder for aiortc.

aiortc's own audio JitterBuffer (capacity=16, prefetch=4) adds 80 ms up front and, after a
single lost packet, settles at ~280 ms of delay for the rest of the call (aiortc issue 543):
its ``add()`` hands out at most one frame per packet, so it can never drain the backlog a
gap builds up. Interpreters listen to themselves through this path, so that delay is
unacceptable.

``AudioJitterBuffer`` releases in-order packets immediately and, after a loss, releases
everything that became ready in one ``JitterBatch``. Because the receiver passes whatever
``add()`` returns straight to the decoder thread, ``ConcealingOpusDecoder`` unpacks the batch
and fills lost frames with a short faded repeat. ``install_audio_jitter_buffer()`` wires both
into ``aiortc.rtcrtpreceiver``.
"""

from __future__ import annotations

import fractions
import logging
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

import av
import numpy as np
from aiortc import rtcrtpreceiver
from aiortc.codecs import get_decoder
from aiortc.codecs.base import Decoder
from aiortc.codecs.opus import OpusDecoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add, uint16_gt
from av.frame import Frame

logger = logging.getLogger(__name__)

# A jump larger than this (either way) means the sender restarted its sequence; aiortc uses
# the same threshold.
MAX_MISORDER = 100

OPUS_SAMPLE_RATE = 48000
OPUS_TIME_BASE = fractions.Fraction(1, OPUS_SAMPLE_RATE)

_UINT32_MASK = 0xFFFFFFFF


def _int32_diff(a: int, b: int) -> int:
    """Signed difference ``a - b`` of two wrapping 32-bit RTP timestamps."""
    return ((a - b + 0x80000000) & _UINT32_MASK) - 0x80000000


class EncodedFrame(NamedTuple):
    """A received encoded frame inside a batch; ``timestamp`` is in RTP clock units."""

    timestamp: int
    data: bytes


class LostFrame(NamedTuple):
    """Marker for a frame declared lost; ``timestamp`` is interpolated (RTP clock units)."""

    timestamp: int


BatchItem = EncodedFrame | LostFrame


class JitterBatch(JitterFrame):
    """Several frames released by one ``add()`` call, in playout order.

    ``data``/``timestamp`` are those of the first received frame, so a decoder that ignores
    batches still decodes something sensible. (Only if the packets that ended a wait were
    all padding does a batch hold no received frame; then ``data`` is empty and
    ``timestamp`` is the first lost frame's.) The receiver rewrites ``timestamp`` into its
    own (zero-based) timeline after ``add()`` returns, but not the items, so ``pts_of()``
    translates item timestamps through ``reference_timestamp``.
    """

    def __init__(self, items: Sequence[BatchItem]) -> None:
        if not items:
            raise ValueError("a JitterBatch needs at least one item")
        first = next((item for item in items if isinstance(item, EncodedFrame)), None)
        reference = first if first is not None else items[0]
        super().__init__(data=first.data if first else b"", timestamp=reference.timestamp)
        self.items: list[BatchItem] = list(items)
        # Raw RTP timestamp that ``timestamp`` started as, before the receiver remapped it.
        self.reference_timestamp: int = reference.timestamp

    def pts_of(self, item: BatchItem) -> int:
        """Timestamp of ``item`` on the same timeline as ``self.timestamp``."""
        return self.timestamp + _int32_diff(item.timestamp, self.reference_timestamp)


class AudioJitterBuffer:
    """Drop-in replacement for aiortc's JitterBuffer for audio (one packet per frame).

    In-order packets leave immediately. A missing packet is waited for only until
    ``max_hold`` newer packets have arrived; it is then declared lost and everything ready
    leaves in one ``JitterBatch``. So at most ``max_hold`` packets are ever held and the added
    latency falls back to zero after every loss.

    ``capacity`` and ``prefetch`` are accepted for interface compatibility; prefetching is
    exactly the latency this class exists to avoid, so it is ignored.
    """

    def __init__(
        self,
        capacity: int,
        prefetch: int = 0,
        is_video: bool = False,
        *,
        max_hold: int = 3,
    ) -> None:
        if capacity <= 0 or capacity & (capacity - 1):
            raise ValueError("capacity must be a power of 2")
        if is_video:
            # Video frames span several packets; keep aiortc's buffer for those.
            raise ValueError("AudioJitterBuffer only handles audio")
        if max_hold < 1:
            raise ValueError("max_hold must be at least 1")
        self._capacity = capacity
        self._prefetch = prefetch
        self.max_hold = max_hold

        self._next_seq: int | None = None  # next sequence number to release
        self._highest_seq: int | None = None  # newest sequence number seen, for `reordered`
        self._held: dict[int, RtpPacket] = {}
        # Last released (or declared lost) position, to interpolate lost timestamps.
        self._last_seq: int | None = None
        self._last_ts: int | None = None
        # Recently released sequence numbers tell duplicates apart from late packets.
        self._recent: deque[int] = deque(maxlen=MAX_MISORDER)

        self.received = 0
        self.lost = 0
        self.late = 0
        self.duplicates = 0
        self.reordered = 0
        self.resets = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def held(self) -> int:
        """Number of packets currently waiting for a missing predecessor."""
        return len(self._held)

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """Add a depayloaded packet (``packet._data``); return (pli_flag, ready frames)."""
        self.received += 1
        seq = packet.sequence_number
        if self._next_seq is None:
            self._reset(seq)
        assert self._next_seq is not None

        ahead = uint16_add(seq, -self._next_seq)
        if ahead >= 0x8000:
            if 0x10000 - ahead > MAX_MISORDER:
                self._restart(seq)
            else:
                # Behind the release point: already played, or already concealed.
                if seq in self._recent:
                    self.duplicates += 1
                else:
                    self.late += 1
                return False, None
        elif ahead > MAX_MISORDER:
            self._restart(seq)

        if seq in self._held:
            self.duplicates += 1
            return False, None
        if self._highest_seq is None or uint16_gt(seq, self._highest_seq):
            self._highest_seq = seq
        else:
            self.reordered += 1
        self._held[seq] = packet
        return False, self._release()

    def _reset(self, seq: int) -> None:
        self._next_seq = seq
        self._highest_seq = None
        self._held.clear()
        self._last_seq = None
        self._last_ts = None
        self._recent.clear()

    def _restart(self, seq: int) -> None:
        # Sender restart: packets held from the old stream can no longer be played in
        # order with the new one, so they count as lost.
        self.resets += 1
        self.lost += len(self._held)
        self._reset(seq)

    def _release(self) -> JitterFrame | None:
        assert self._next_seq is not None
        items: list[BatchItem] = []
        while self._held:
            seq = self._next_seq
            packet = self._held.pop(seq, None)
            if packet is not None:
                self._recent.append(seq)
                data: bytes = packet._data  # type: ignore[attr-defined]
                if data:
                    items.append(EncodedFrame(packet.timestamp, data))
                    self._last_seq, self._last_ts = seq, packet.timestamp
                # else: padding-only packet; it fills its slot but carries no audio.
            elif len(self._held) >= self.max_hold:
                # Waited long enough: anything arriving for `seq` from now on is late.
                timestamp = self._lost_timestamp(seq)
                items.append(LostFrame(timestamp))
                self._last_seq, self._last_ts = seq, timestamp
                self.lost += 1
            else:
                break
            self._next_seq = uint16_add(seq, 1)

        if not items:
            return None
        if len(items) == 1 and isinstance(items[0], EncodedFrame):
            # Common case: keep it a plain JitterFrame, exactly what aiortc would produce.
            return JitterFrame(data=items[0].data, timestamp=items[0].timestamp)
        return JitterBatch(items)

    def _lost_timestamp(self, seq: int) -> int:
        # Interpolate between the last released frame and the next held one; for Opus this
        # gives the exact timestamp unless DTX was active across the gap.
        # Padding-only packets may repeat an old timestamp, so prefer one carrying audio.
        after = min(
            self._held.values(),
            key=lambda p: (not p._data, uint16_add(p.sequence_number, -seq)),  # type: ignore[attr-defined]
        )
        if self._last_seq is None or self._last_ts is None:
            return after.timestamp
        seq_span = uint16_add(after.sequence_number, -self._last_seq)
        ts_span = (after.timestamp - self._last_ts) & _UINT32_MASK
        step = uint16_add(seq, -self._last_seq)
        return (self._last_ts + ts_span * step // seq_span) & _UINT32_MASK


class _AudioSnapshot(NamedTuple):
    """Private copy of a decoded frame: the frame itself goes downstream, where a consumer
    may modify it in place on another thread while we still want to repeat it."""

    samples: np.ndarray
    format: str
    layout: str
    planar: bool
    channels: int
    sample_rate: int
    time_base: fractions.Fraction

    @classmethod
    def of(cls, frame: av.AudioFrame) -> _AudioSnapshot:
        return cls(
            samples=frame.to_ndarray().copy(),
            format=frame.format.name,
            layout=frame.layout.name,
            planar=frame.format.is_planar,
            channels=frame.layout.nb_channels,
            sample_rate=frame.sample_rate,
            time_base=frame.time_base or OPUS_TIME_BASE,
        )


class ConcealingOpusDecoder(Decoder):
    """aiortc's Opus decoder plus batch unpacking and simple packet-loss concealment.

    Each lost frame becomes a copy of the last decoded frame faded by ``fade`` per repeat
    (ramped within the frame to avoid clicks), at most ``max_conceal`` in a row; longer gaps
    produce nothing and are left to the downstream playout buffer. Output matches aiortc's
    decoder: s16 stereo 48 kHz AudioFrames, pts in 1/48000 units.
    """

    def __init__(self, max_conceal: int = 3, fade: float = 0.5) -> None:
        if max_conceal < 0:
            raise ValueError("max_conceal must be >= 0")
        if not 0.0 <= fade <= 1.0:
            raise ValueError("fade must be within [0, 1]")
        self.max_conceal = max_conceal
        self.fade = fade
        self._decoder = OpusDecoder()
        self._last: _AudioSnapshot | None = None
        self._conceal_run = 0
        self.concealed = 0

    def decode(self, encoded_frame: JitterFrame) -> list[Frame]:
        """Decode a JitterFrame or JitterBatch into a list of AudioFrames in playout order."""
        if not isinstance(encoded_frame, JitterBatch):
            return self._decode_one(encoded_frame.data, encoded_frame.timestamp)
        frames: list[Frame] = []
        for item in encoded_frame.items:
            pts = encoded_frame.pts_of(item)
            if isinstance(item, LostFrame):
                frames.extend(self._conceal(pts))
            else:
                frames.extend(self._decode_one(item.data, pts))
        return frames

    def _decode_one(self, data: bytes, pts: int) -> list[Frame]:
        if not data:
            # PyAV treats an empty packet as end-of-stream and the decoder then fails every
            # later packet; aiortc's receiver passes padding-only packets on as b"".
            return []
        try:
            frames = self._decoder.decode(JitterFrame(data=data, timestamp=pts))
        except av.FFmpegError as exc:
            # Handled here rather than in aiortc's worker so one corrupt packet does not
            # throw away the rest of its batch; for audio it is just another lost frame.
            logger.warning("Opus decode failed, concealing: %s", exc)
            return self._conceal(pts)
        audio = [frame for frame in frames if isinstance(frame, av.AudioFrame)]
        if audio:
            self._last = _AudioSnapshot.of(audio[-1])
            self._conceal_run = 0
        return frames

    def _conceal(self, pts: int) -> list[Frame]:
        if self._last is None or self._conceal_run >= self.max_conceal:
            return []
        self._conceal_run += 1
        self.concealed += 1
        last = self._last
        samples = last.samples.astype(np.float32)
        per_channel = samples.shape[1] if last.planar else samples.shape[1] // last.channels
        gains = np.linspace(
            self.fade ** (self._conceal_run - 1),
            self.fade**self._conceal_run,
            num=per_channel,
            endpoint=False,
            dtype=np.float32,
        )
        # Packed audio interleaves channels in one row; planar has one row per channel.
        samples *= gains if last.planar else np.repeat(gains, last.channels)
        frame = av.AudioFrame.from_ndarray(
            np.round(samples).astype(last.samples.dtype), format=last.format, layout=last.layout
        )
        frame.sample_rate = last.sample_rate
        frame.pts = pts
        frame.time_base = last.time_base
        return [frame]


def _jitter_buffer_factory(
    capacity: int, prefetch: int = 0, is_video: bool = False
) -> JitterBuffer | AudioJitterBuffer:
    if is_video:
        return JitterBuffer(capacity=capacity, prefetch=prefetch, is_video=True)
    return AudioJitterBuffer(capacity=capacity, prefetch=prefetch)


def _decoder_factory(codec: RTCRtpCodecParameters) -> Decoder:
    if codec.mimeType.lower() == "audio/opus":
        return ConcealingOpusDecoder()
    return get_decoder(codec)


def install_audio_jitter_buffer() -> None:
    """Make every RTCRtpReceiver created from now on use the low-latency audio path.

    Patching is the only seam: RTCRtpReceiver builds its jitter buffer in ``__init__`` and
    its decoder thread calls ``get_decoder`` through module globals, with no hook to pass our
    own (aiortc issue 543). The buffer and decoder must be swapped together, since a batch
    released after a loss is only fully decoded by ``ConcealingOpusDecoder``. Idempotent:
    it always installs the same two functions.
    """
    rtcrtpreceiver.JitterBuffer = _jitter_buffer_factory  # type: ignore[misc,assignment]
    rtcrtpreceiver.get_decoder = _decoder_factory
