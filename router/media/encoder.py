"""One Opus encoder per distinct feed; packets carry pts from the engine's tick counter."""

from __future__ import annotations

import fractions

import av
import numpy as np

from router.media.inputs import SAMPLES_PER_BLOCK

SAMPLE_RATE = 48000
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


class OpusFeedEncoder:
    def __init__(self, bitrate: int, packet_loss_percent: int = 10) -> None:
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = "mono"
        ctx.format = "s16"
        ctx.bit_rate = bitrate
        ctx.time_base = TIME_BASE
        # In-band FEC needs a non-zero expected loss to be used by libopus.
        ctx.options = {
            "application": "audio",
            "frame_duration": "20",
            "fec": "1",
            "packet_loss": str(packet_loss_percent),
        }
        ctx.open()
        self._ctx = ctx

    def encode(self, pcm: np.ndarray, tick: int) -> av.Packet | None:
        """pcm: int16 (960,). The pts is the tick's, so every feed shares one timeline."""
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = tick * SAMPLES_PER_BLOCK
        frame.time_base = TIME_BASE
        packets = self._ctx.encode(frame)
        if not packets:
            return None
        packet = packets[-1]
        packet.pts = tick * SAMPLES_PER_BLOCK
        packet.time_base = TIME_BASE
        return packet
