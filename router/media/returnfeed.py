"""An interpreter's headphone feed: volume, bass/treble tone and a limiter with a hard ceiling.

Acoustic shock (a sudden loud burst in the headphones) is a documented occupational injury of
interpreters, so the last stage of every seat's return is a limiter whose output can never
exceed `CEILING`: a block-wise gain computer (instant attack, slow release) keeps the level
under the ceiling without clipping, and a final clip is the guarantee. Tone control is a pair
of shelving biquads (RBJ cookbook) with state kept across blocks; at 0 dB they are skipped, so
a flat feed passes bit-exact up to the limiter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import sosfilt

RATE = 48000
CEILING_DB = -6.0
CEILING = float(10 ** (CEILING_DB / 20))
RELEASE_SECONDS = 0.4
BASS_HZ = 250.0
TREBLE_HZ = 3000.0


@dataclass(frozen=True)
class ReturnSpec:
    """How one seat's return is made, on top of the channel it listens to (minus itself)."""

    extra: Mapping[str, float] = field(default_factory=dict)  # source -> gain (booth partners)
    volume_db: float = 0.0
    bass_db: float = 0.0
    treble_db: float = 0.0


def _shelf(freq: float, gain_db: float, high: bool) -> np.ndarray:
    """One RBJ shelving biquad as a scipy `sos` row (slope 1)."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * freq / RATE
    cos, alpha = math.cos(w0), math.sin(w0) / 2 * math.sqrt(2)
    sq = 2 * math.sqrt(a) * alpha
    if high:
        b = (
            a * ((a + 1) + (a - 1) * cos + sq),
            -2 * a * ((a - 1) + (a + 1) * cos),
            a * ((a + 1) + (a - 1) * cos - sq),
        )
        d = (
            (a + 1) - (a - 1) * cos + sq,
            2 * ((a - 1) - (a + 1) * cos),
            (a + 1) - (a - 1) * cos - sq,
        )
    else:
        b = (
            a * ((a + 1) - (a - 1) * cos + sq),
            2 * a * ((a - 1) - (a + 1) * cos),
            a * ((a + 1) - (a - 1) * cos - sq),
        )
        d = (
            (a + 1) + (a - 1) * cos + sq,
            -2 * ((a - 1) + (a + 1) * cos),
            (a + 1) + (a - 1) * cos - sq,
        )
    return np.array([[*(x / d[0] for x in b), 1.0, d[1] / d[0], d[2] / d[0]]])


class ToneControl:
    def __init__(self) -> None:
        self._sos: np.ndarray | None = None
        self._zi: np.ndarray | None = None
        self._settings = (0.0, 0.0)

    def set(self, bass_db: float, treble_db: float) -> None:
        if (bass_db, treble_db) == self._settings:
            return
        self._settings = (bass_db, treble_db)
        rows = []
        if bass_db != 0.0:
            rows.append(_shelf(BASS_HZ, bass_db, high=False))
        if treble_db != 0.0:
            rows.append(_shelf(TREBLE_HZ, treble_db, high=True))
        if not rows:
            self._sos = self._zi = None
            return
        sos = np.vstack(rows)
        # Keep the filter memory when only a gain moves, so turning a knob does not click.
        if self._zi is None or self._sos is None or self._sos.shape != sos.shape:
            self._zi = np.zeros((sos.shape[0], 2))
        self._sos = sos

    def process(self, block: np.ndarray) -> np.ndarray:
        if self._sos is None or self._zi is None:
            return block
        out, self._zi = sosfilt(self._sos, block, zi=self._zi)
        return out.astype(np.float32)


class Limiter:
    """Peak limiter: the output never exceeds `ceiling` (absolute, full scale 1.0).

    The engine hands over a whole 20 ms block at once, which is a free look-ahead: a block
    whose peak would pass the ceiling is scaled down from its first sample, so the limiter
    never has to clip (clipping corners make Opus overshoot); the final clip is only a safety.
    """

    def __init__(self, ceiling: float = CEILING, block: int = 960) -> None:
        self.ceiling = ceiling
        self.gain = 1.0
        self._release = 1 - math.exp(-block / (RELEASE_SECONDS * RATE))

    def process(self, block: np.ndarray) -> np.ndarray:
        peak = float(np.max(np.abs(block))) if block.size else 0.0
        wanted = min(1.0, self.ceiling / peak) if peak > 0 else 1.0
        start = self.gain
        if wanted <= start:
            self.gain = wanted
            if wanted == 1.0:
                return block
            out = block * np.float32(wanted)
        else:
            # release: back towards unity slowly, never above what this block allows
            self.gain = min(wanted, start + (1.0 - start) * self._release)
            out = block * np.linspace(start, self.gain, block.size, dtype=np.float32)
        return np.clip(out, -self.ceiling, self.ceiling)


class ReturnProcessor:
    """Volume, tone and the limiter for one seat, in that order, with state across ticks."""

    def __init__(self) -> None:
        self.tone = ToneControl()
        self.limiter = Limiter()
        self.volume = 1.0

    def configure(self, spec: ReturnSpec) -> None:
        self.volume = float(10 ** (spec.volume_db / 20))
        self.tone.set(spec.bass_db, spec.treble_db)

    def process(self, block: np.ndarray) -> np.ndarray:
        x = block * np.float32(self.volume) if self.volume != 1.0 else block
        return self.limiter.process(self.tone.process(x))
