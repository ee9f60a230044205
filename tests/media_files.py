"""Small media files made in the tests: WAV and a video with an audio track, each one sine."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np


def _tone(freq: float, seconds: float, rate: int, amplitude: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(
    path: Path, freq: float, seconds: float, rate: int = 44100, channels: int = 2, amplitude=0.3
) -> Path:
    """16-bit PCM WAV (a rate other than 48 kHz and stereo: the player must convert)."""
    pcm = (_tone(freq, seconds, rate, amplitude) * 32767).astype(np.int16)
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout=layout)
        for start in range(0, len(pcm), 1024):
            chunk = np.repeat(pcm[start : start + 1024], channels).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = fractions.Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def write_video(path: Path, freq: float, seconds: float, amplitude: float = 0.3) -> Path:
    """An MP4 video message: MPEG-4 pictures and an AAC stereo sine at 44.1 kHz."""
    rate = 44100
    pcm = _tone(freq, seconds, rate, amplitude)
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("aac", rate=rate, layout="stereo")
        for i in range(int(seconds * 10)):
            picture = np.full((48, 64, 3), (i * 25) % 256, np.uint8)
            vf = av.VideoFrame.from_ndarray(picture, format="rgb24")
            vf.pts = i
            for packet in video.encode(vf):
                out.mux(packet)
        for start in range(0, len(pcm), 1024):
            chunk = pcm[start : start + 1024]
            af = av.AudioFrame.from_ndarray(
                np.stack([chunk, chunk]), format="fltp", layout="stereo"
            )
            af.sample_rate = rate
            af.pts = start
            af.time_base = fractions.Fraction(1, rate)
            for packet in audio.encode(af):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                out.mux(packet)
    return path


def heard_db(signal: np.ndarray, freq: float) -> float:
    """Level (dBFS) of the sine near `freq` in audio received over WebRTC.

    Like tests.signals.tone_db, but the peak is searched within ±0.6 % of `freq`: the router
    may play a source up to 0.5 % faster or slower while it absorbs clock drift or jitter.
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.size == 0:
        return -180.0
    window = np.hanning(x.size)
    spectrum = np.abs(np.fft.rfft(x * window))
    freqs = np.fft.rfftfreq(x.size, 1 / 48000)
    span = max(0.006 * freq, 2 * freqs[1])
    near = spectrum[(freqs >= freq - span) & (freqs <= freq + span)]
    amplitude = 2 * near.max() / window.sum()
    return float(20 * np.log10(max(amplitude, 1e-9)))
