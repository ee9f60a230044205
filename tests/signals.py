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


def _segments(signal: np.ndarray, segment: int) -> list[np.ndarray]:
    x = np.asarray(signal, dtype=np.float64)
    return [x[i : i + segment] for i in range(0, x.size - segment + 1, segment)] or [x]


def steady_tone_db(signal: np.ndarray, freq: float, segment: int = 4800) -> float:
    """Level of the tone at `freq` as the median over 100 ms segments.

    On a loaded machine a concealed gap or a trimmed block shifts the tone's phase; over a 1 s
    window that spreads its energy over neighbouring bins and reads several dB low. The median
    of short segments reads the level the tone is mixed at.
    """
    return float(np.median([tone_db(part, freq) for part in _segments(signal, segment)]))


def level_difference_db(
    signal: np.ndarray, freq: float, reference: float, segment: int = 4800
) -> float:
    """How far the tone at `freq` sits below (or above) the tone at `reference`, in dB.

    The median over 100 ms segments in which the reference tone is present: a relation of two
    mixed sources is then measured where both are playing, and one concealed gap or one late
    tick on a loaded machine (which hits each source's buffer separately) cannot skew it.
    """
    diffs = [
        tone_db(part, freq) - ref
        for part in _segments(signal, segment)
        if (ref := tone_db(part, reference)) > -40.0
    ]
    if not diffs:
        raise AssertionError(f"no segment carries the {reference:g} Hz reference tone")
    return float(np.median(diffs))


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
