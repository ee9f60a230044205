"""Ingest: turn any audio track (WebRTC receiver, file player) into 20 ms mono float32 blocks."""

from __future__ import annotations

import logging

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from router.media.inputs import SAMPLES_PER_BLOCK, SourceBuffer

SAMPLE_RATE = 48000
log = logging.getLogger(__name__)


class MonoBlocker:
    """Converts frames once at ingest to 48 kHz mono float32 and cuts them into blocks."""

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._pending = np.zeros(0, dtype=np.float32)

    def blocks(self, frame: av.AudioFrame) -> list[np.ndarray]:
        samples = self._to_mono(frame)
        if len(samples) == SAMPLES_PER_BLOCK and len(self._pending) == 0:
            return [samples]
        self._pending = np.concatenate([self._pending, samples])
        out = []
        while len(self._pending) >= SAMPLES_PER_BLOCK:
            out.append(self._pending[:SAMPLES_PER_BLOCK])
            self._pending = self._pending[SAMPLES_PER_BLOCK:]
        return out

    def _to_mono(self, frame: av.AudioFrame) -> np.ndarray:
        # Fast path: what aiortc's decoder and MediaPlayer give, s16 packed at 48 kHz.
        if frame.format.name == "s16" and frame.sample_rate == SAMPLE_RATE:
            channels = len(frame.layout.channels)
            pcm = frame.to_ndarray().reshape(-1, channels)
            if channels == 1:
                return pcm[:, 0].astype(np.float32) * np.float32(1 / 32768)
            return pcm.mean(axis=1, dtype=np.float32) * np.float32(1 / 32768)
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        parts = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)


async def consume_track(track: MediaStreamTrack, buffer: SourceBuffer) -> None:
    """Read a track until it ends; every received track must be consumed or it leaks."""
    blocker = MonoBlocker()
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if not isinstance(frame, av.AudioFrame):
            continue
        for block in blocker.blocks(frame):
            buffer.push(block)
