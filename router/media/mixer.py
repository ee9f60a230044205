"""Mixing rules as pure functions: a plan becomes a gain matrix, blocks become channel blocks.

Floor = room feed + remote panellists + media. Channel X = the seat live into X plus the floor
at the bed gain; with no live seat, X carries the floor at full level (auto-floor). A channel
in the floor's own language is auto-floor even with a seat live: its booth has nothing to
interpret while its language is spoken, and the listeners hear the speaker, not a booth.
Mixing stays in float32; only the final conversion to int16 saturates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

FLOOR = "floor"


@dataclass(frozen=True)
class MixPlan:
    channels: tuple[str, ...]  # includes FLOOR
    floor_inputs: frozenset[str]
    live: Mapping[str, str] = field(default_factory=dict)  # channel -> live source
    bed_gain: float = 0.1
    input_gains: Mapping[str, float] = field(default_factory=dict)
    auto_floor: frozenset[str] = frozenset()  # channels in the floor language: floor only
    # Silenced everywhere, yet a muted live seat still holds its channel (the cough key): the
    # channel carries the bed, never the floor at full level.
    muted: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MixMatrix:
    """gains[c, s]: how much of source s is in channel c."""

    channels: tuple[str, ...]
    sources: tuple[str, ...]
    gains: np.ndarray
    live: Mapping[str, int] = field(default_factory=dict)  # channel -> column of its live seat

    def row(self, channel: str) -> int:
        return self.channels.index(channel)

    def column(self, source: str) -> int | None:
        return self.sources.index(source) if source in self.sources else None


def build_matrix(plan: MixPlan, sources: Sequence[str]) -> MixMatrix:
    channels = tuple(plan.channels)
    srcs = tuple(sources)
    gains = np.zeros((len(channels), len(srcs)), dtype=np.float32)
    col = {s: i for i, s in enumerate(srcs)}
    live_cols: dict[str, int] = {}
    floor_row = np.zeros(len(srcs), dtype=np.float32)

    def gain(source: str) -> float:
        return 0.0 if source in plan.muted else plan.input_gains.get(source, 1.0)

    for s in plan.floor_inputs:
        if s in col:
            floor_row[col[s]] = gain(s)
    for r, ch in enumerate(channels):
        live = plan.live.get(ch) if ch != FLOOR and ch not in plan.auto_floor else None
        if live is None or live not in col:
            gains[r] = floor_row
        else:
            gains[r] = floor_row * np.float32(plan.bed_gain)
            gains[r, col[live]] += gain(live)
            live_cols[ch] = col[live]
    return MixMatrix(channels, srcs, gains, live_cols)


def remap(matrix: MixMatrix, gains: np.ndarray, sources: Sequence[str]) -> MixMatrix:
    """`gains` (in `matrix`'s columns) re-expressed over `sources`; gone sources are dropped."""
    out = np.zeros((len(matrix.channels), len(sources)), dtype=np.float32)
    live: dict[str, int] = {}
    new_col = {s: i for i, s in enumerate(sources)}
    for c, source in enumerate(matrix.sources):
        if source in new_col:
            out[:, new_col[source]] = gains[:, c]
    for channel, c in matrix.live.items():
        if matrix.sources[c] in new_col:
            live[channel] = new_col[matrix.sources[c]]
    return MixMatrix(matrix.channels, tuple(sources), out, live)


def fade_ramp(done: int, length: int, samples: int) -> np.ndarray:
    """Weights of the new mix for one block of a crossfade `length` samples long, `done` in."""
    return np.clip((np.arange(samples, dtype=np.float32) + done + 1) / length, 0.0, 1.0)


def mix(blocks: np.ndarray, matrix: MixMatrix) -> np.ndarray:
    """blocks: (sources, samples) float32 -> (channels, samples) float32, not yet clipped."""
    if blocks.shape[0] == 0:
        return np.zeros((len(matrix.channels), blocks.shape[1]), dtype=np.float32)
    return matrix.gains @ blocks


def feed_gains(
    matrix: MixMatrix,
    channel: str,
    minus: str | Iterable[str] | None = None,
    voice_only: bool = False,
) -> np.ndarray:
    """Per-source gains of one feed of a channel.

    `minus` removes one source or several (a return feed never carries its own voice; the
    room's return carries nothing picked up in the room); `voice_only` keeps just the live
    seat, without the floor bed (auto-floor channels are unchanged).
    """
    row = matrix.gains[matrix.row(channel)]
    live = matrix.live.get(channel)
    if voice_only and live is not None:
        gains = np.zeros_like(row)
        gains[live] = row[live]
    else:
        gains = row.copy()
    for source in minus_ids(minus):
        c = matrix.column(source)
        if c is not None:
            gains[c] = 0.0
    return gains


def minus_ids(minus: str | Iterable[str] | None) -> tuple[str, ...]:
    if minus is None:
        return ()
    if isinstance(minus, str):
        return (minus,)
    return tuple(sorted(minus))


def to_int16(block: np.ndarray) -> np.ndarray:
    """Saturate instead of wrapping around (Janus's int16 wrap-around is a known trap)."""
    return (np.clip(block, -1.0, 32767 / 32768) * 32768).astype(np.int16)
