"""Test signals: per-source sine tones and FFT measurements of which tones a signal carries."""

from __future__ import annotations

import fractions

import av
import numpy as np

RATE = 48000


def sine(freq: float, samples: int, amplitude: float = 0.3, start: int = 0) -> np.ndarray:
    t = (np.arange(samples) + start) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def tone_amplitude(signal: np.ndarray, freq: float) -> float:
    """Amplitude (0..1 full scale) of the sine at `freq`, by a Hann-windowed FFT."""
    x = np.asarray(signal, dtype=np.float64)
    if x.size == 0:
        return 0.0
    window = np.hanning(x.size)
    spectrum = np.abs(np.fft.rfft(x * window))
    freqs = np.fft.rfftfreq(x.size, 1 / RATE)
    k = int(np.argmin(np.abs(freqs - freq)))
    peak = spectrum[max(k - 2, 0) : k + 3].max()
    return float(2 * peak / window.sum())


def tone_db(signal: np.ndarray, freq: float) -> float:
    return 20 * np.log10(max(tone_amplitude(signal, freq), 1e-9))


def dominant_frequency(signal: np.ndarray) -> float:
    x = np.asarray(signal, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    spectrum[:5] = 0
    return float(np.fft.rfftfreq(x.size, 1 / RATE)[int(np.argmax(spectrum))])


def decode_packets(packets: list[av.Packet]) -> np.ndarray:
    """Decode our Opus packets with a fresh real decoder; mono float32."""
    ctx = av.CodecContext.create("libopus", "r")
    ctx.sample_rate = RATE
    ctx.layout = "mono"
    ctx.format = "s16"
    out = []
    for p in packets:
        copy = av.Packet(bytes(p))
        copy.pts = p.pts
        copy.time_base = fractions.Fraction(1, RATE)
        for frame in ctx.decode(copy):
            out.append(frame.to_ndarray().reshape(-1).astype(np.float32) / 32768)
    return np.concatenate(out) if out else np.zeros(0, np.float32)
