"""Meters for every input and channel, computed once per tick inside the engine.

Peak is the sample peak in dBFS. RMS is in dBFS as AES17 reads it (a full-scale sine reads
0 dBFS). Loudness is ITU-R BS.1770 momentary loudness (K-weighted, 400 ms) in LUFS.
Readers (the technician stream, /metrics) take a snapshot at 10-20 Hz: the peak and RMS since
the previous read, the momentary loudness now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import sosfilt

from router.media.mixer import MixMatrix

# BS.1770-4 K-weighting at 48 kHz: the head shelf, then the RLB high-pass.
K_WEIGHTING_48K = np.array(
    [
        [
            1.53512485958697,
            -2.69169618940638,
            1.19839281085285,
            1.0,
            -1.69065929318241,
            0.73248077421585,
        ],
        [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621],
    ]
)
MOMENTARY_BLOCKS = 20  # 400 ms of 20 ms blocks
FLOOR_DB = -120.0
CLIP_LEVEL = 1.0  # mixes are float before saturation: anything beyond full scale will clip
SQRT2 = math.sqrt(2.0)


def to_db(amplitude: float) -> float:
    return 20.0 * math.log10(amplitude) if amplitude > 1e-6 else FLOOR_DB


def lufs_from_mean_square(ms: float) -> float:
    return -0.691 + 10.0 * math.log10(ms) if ms > 1e-12 else FLOOR_DB


@dataclass(frozen=True)
class Level:
    peak_db: float
    rms_db: float
    lufs: float
    clipped: bool

    def as_dict(self) -> dict[str, float | bool]:
        return {
            "peak_db": round(self.peak_db, 1),
            "rms_db": round(self.rms_db, 1),
            "lufs": round(self.lufs, 1),
            "clipped": self.clipped,
        }


def meter_name(kind: str, ident: str) -> str:
    return f"{kind}:{ident}"


class LevelMeters:
    """A TickTap: keeps per-row filter state, a 400 ms ring and accumulators since the last read.

    Rows are named `in:<source>` and `ch:<channel>`; state follows a name when sources come and go.
    """

    def __init__(self) -> None:
        self._names: tuple[str, ...] = ()
        self._zi = np.zeros((2, 0, 2))
        self._ring = np.zeros((0, MOMENTARY_BLOCKS))
        self._filled = np.zeros(0, dtype=np.int64)
        self._peak = np.zeros(0)
        self._sq_sum = np.zeros(0)
        self._clips = np.zeros(0, dtype=np.int64)
        self._count = 0
        self._pos = 0
        self.ticks = 0

    def on_tick(self, tick: int, matrix: MixMatrix, blocks: np.ndarray, mixed: np.ndarray) -> None:
        names = tuple(meter_name("in", s) for s in matrix.sources) + tuple(
            meter_name("ch", c) for c in matrix.channels
        )
        if names != self._names:
            self._rename(names)
        rows = np.vstack([blocks, mixed]) if len(blocks) else mixed
        weighted, self._zi = sosfilt(K_WEIGHTING_48K, rows, axis=1, zi=self._zi)
        self._ring[:, self._pos] = np.mean(weighted * weighted, axis=1)
        self._filled = np.minimum(self._filled + 1, MOMENTARY_BLOCKS)
        self._pos = (self._pos + 1) % MOMENTARY_BLOCKS
        peaks = np.max(np.abs(rows), axis=1)
        self._peak = np.maximum(self._peak, peaks)
        self._clips += peaks > CLIP_LEVEL
        self._sq_sum += np.mean(rows * rows, axis=1)
        self._count += 1
        self.ticks += 1

    def read(self) -> dict[str, Level]:
        """Levels since the previous read (peak, RMS) and momentary loudness now."""
        out: dict[str, Level] = {}
        count = max(self._count, 1)
        momentary = self._ring.sum(axis=1) / np.maximum(self._filled, 1)
        for i, name in enumerate(self._names):
            out[name] = Level(
                peak_db=to_db(float(self._peak[i])),
                rms_db=to_db(math.sqrt(float(self._sq_sum[i]) / count) * SQRT2),
                lufs=lufs_from_mean_square(float(momentary[i])),
                clipped=bool(self._clips[i]),
            )
        self._peak[:] = 0.0
        self._sq_sum[:] = 0.0
        self._clips[:] = 0
        self._count = 0
        return out

    def _rename(self, names: tuple[str, ...]) -> None:
        old = {n: i for i, n in enumerate(self._names)}
        n = len(names)
        zi = np.zeros((2, n, 2))
        ring = np.zeros((n, MOMENTARY_BLOCKS))
        filled = np.zeros(n, dtype=np.int64)
        peak, sq, clips = np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64)
        for i, name in enumerate(names):
            j = old.get(name)
            if j is not None:
                zi[:, i] = self._zi[:, j]
                ring[i] = self._ring[j]
                filled[i] = self._filled[j]
                peak[i], sq[i], clips[i] = self._peak[j], self._sq_sum[j], self._clips[j]
        self._names = names
        self._zi, self._ring, self._filled = zi, ring, filled
        self._peak, self._sq_sum, self._clips = peak, sq, clips
