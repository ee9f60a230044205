"""Per-source receive buffer between ingest (any rate, any timing) and the engine tick.

Bounded, drop-oldest, with counters. Latency stays low and steady in three ways:

- clock drift (a sender whose clock runs a little fast or slow) is absorbed by resampling the
  source very slightly (cubic interpolation, at most ``max_adjust`` = 0.5 %): the lowest fill
  level of each 1 s window is kept between ``low_depth`` and ``high_depth`` by a slow PI
  loop, so the level converges without ever dropping or repeating a block (which clicks);
- a standing backlog too large for that (a burst after a stall) is cut by a block per window,
  and a burst in the first second of a stream (nothing to click yet) at once;
- blocks that arrive after their ticks were already concealed, or after ticks the engine
  skipped while the process stalled, are skipped (debt repayment).

A short gap is concealed with a faded repeat of the last block.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

SAMPLES_PER_BLOCK = 960  # 20 ms at 48 kHz
_DEBT_PULLS = 5  # pulls that owed blocks may take to arrive before the debt is forgotten
_RAMP = np.arange(SAMPLES_PER_BLOCK, dtype=np.float64)
_RAMP.flags.writeable = False


@dataclass
class BufferStats:
    pushed: int = 0
    pulled: int = 0
    overruns: int = 0  # blocks dropped because the buffer was full
    underruns: int = 0  # ticks with no block available
    concealed: int = 0  # underruns covered by a faded repeat
    trimmed: int = 0  # blocks dropped to cut a standing backlog


class BlockSource(Protocol):
    """What the engine pulls one 20 ms block from per tick (a receive buffer, a file player)."""

    stats: BufferStats

    @property
    def depth(self) -> int: ...

    def pull(self) -> np.ndarray | None: ...


class SourceBuffer:
    def __init__(
        self,
        capacity: int = 10,
        prefetch: int = 2,
        target_depth: int = 2,
        trim_window: int = 50,
        max_conceal: int = 2,
        max_adjust: float = 0.005,
        low_depth: float = 1.75,
        high_depth: float = 3.0,
        kp: float = 0.004,
        ki: float = 0.0002,
        smoothing: float = 0.3,
    ) -> None:
        self._blocks: deque[np.ndarray] = deque()
        self._samples = 0  # samples held in _blocks
        self._offset = 0.0  # read position inside the head block (fractional while adapting)
        self._before = 0.0  # the sample just before the head block: the interpolator's context
        self._capacity = capacity
        self._prefetch = prefetch
        self._target = target_depth
        self._trim_window = trim_window
        self._max_conceal = max_conceal
        self._max_adjust = max_adjust
        self._low = min(low_depth, float(target_depth))
        self._high = max(high_depth, float(target_depth))
        self._kp = kp  # ratio change per block of level error
        self._ki = ki  # ratio change per block of level error per window
        self._smoothing = smoothing  # of the window minima (1: none)
        self._lowest = float(prefetch)
        self._integral = 0.0
        self._ratio = 1.0  # input samples consumed per output sample
        self._primed = False
        self._last: np.ndarray | None = None
        self._concealing = 0
        self._debt = 0  # ticks played without a real block since the last one
        self._skipped = 0.0  # blocks owed for ticks the engine skipped (a stalled process)
        self._skipped_pulls = 0  # pulls since that debt was last added to
        self._window_pulls = 0
        self._window_min = math.inf
        self._on_push: Callable[[], None] | None = None
        self._unpaced: tuple[int, int, float, float, float] | None = None
        self.stats = BufferStats()

    @property
    def depth(self) -> int:
        """Whole blocks waiting to be played."""
        return int(self.level)

    @property
    def level(self) -> float:
        """Blocks waiting to be played, with the fraction of a partly played block."""
        return (self._samples - self._offset) / SAMPLES_PER_BLOCK

    @property
    def cushion(self) -> float:
        """The smoothed lowest level of recent one-second windows, in blocks, before a pull: a
        block waits about (cushion - 1) ticks plus the time it arrived before its tick."""
        return self._lowest

    @property
    def ratio(self) -> float:
        """The current resampling ratio: above 1 plays faster (the source's clock runs fast)."""
        return self._ratio

    @property
    def ready(self) -> bool:
        """A pull now plays a block that is not owed to a tick already concealed."""
        # After a gap longer than a held loss (an outage), what comes is new audio.
        owed = self._debt * SAMPLES_PER_BLOCK if self._debt <= _DEBT_PULLS else 0
        return self._primed and self._available() - owed >= self._needed()

    def pace(self, on_push: Callable[[], None] | None) -> None:
        """Make this the input the engine's ticks follow (`on_push` is told of every block),
        or, with None, an ordinary input again.

        The ticks then come when its blocks do, so it needs no cushion (one block is played
        as it arrives) and no drift correction (the engine runs on its clock)."""
        self._on_push = on_push
        if on_push is not None and self._unpaced is None:
            self._unpaced = (self._prefetch, self._target, self._max_adjust, self._low, self._high)
            self._prefetch = self._target = 1
            self._max_adjust, self._low, self._high = 0.0, 1.0, 1.0
        elif on_push is None and self._unpaced is not None:
            self._prefetch, self._target, self._max_adjust, self._low, self._high = self._unpaced
            self._unpaced = None
        if self._last is None:  # not started yet: it primes by the new prefetch
            self._primed = len(self._blocks) >= self._prefetch

    def push(self, block: np.ndarray) -> None:
        if len(self._blocks) >= self._capacity:
            self._drop_head()
            self.stats.overruns += 1
        self._blocks.append(block)
        self._samples += len(block)
        self.stats.pushed += 1
        if not self._primed and len(self._blocks) >= self._prefetch:
            self._primed = True
        if self._on_push is not None:
            self._on_push()

    def note_skipped_ticks(self, ticks: int) -> None:
        """The engine skipped `ticks` deadlines (the process stalled). The audio of that time
        arrives late and together; it is skipped, not played as lasting latency."""
        if self._last is not None:  # started: before that, nothing is owed
            self._skipped += ticks
            self._skipped_pulls = 0

    def pull(self) -> np.ndarray | None:
        """One block for this tick, a concealment block, or None (silence)."""
        if self._primed:
            self._track_level()
            if self._available() >= self._needed():
                if self.stats.pulled < self._trim_window:
                    self._start_at_target()
                self._repay_debt()
                self._concealing = 0
                block = self._read()
                self._last = block
                self.stats.pulled += 1
                return block
            # Re-prime so that a jittery source gets a little more cushion after a gap.
            self._primed = False
        if self._last is None:
            return None  # not started yet: waiting is not an underrun
        self.stats.underruns += 1
        self._debt += 1
        if self._concealing < self._max_conceal:
            self._concealing += 1
            self.stats.concealed += 1
            self._last = self._last * np.float32(0.5)
            return self._last
        return None

    # --- reading -------------------------------------------------------------------------

    def _available(self) -> float:
        return self._samples - self._offset

    def _needed(self) -> float:
        # A block's worth of input; a fractional sample missing at the very end is held.
        return min(self._ratio, 1.0) * SAMPLES_PER_BLOCK

    def _read(self) -> np.ndarray:
        if self._ratio == 1.0 and self._offset == 0.0:
            block = self._blocks.popleft()  # the common case: the very block that came in
            self._samples -= len(block)
            self._before = float(block[-1])
            return block
        positions = self._offset + self._ratio * _RAMP
        last = int(positions[-1]) + 3
        span: list[np.ndarray] = []
        have = 0
        for b in self._blocks:
            span.append(b)
            have += len(b)
            if have >= last:
                break
        samples = np.concatenate([np.float32([self._before]), *span])
        end = len(samples) - 1
        index = positions.astype(np.int64) + 1  # samples[0] is the one before the head block
        t = (positions - (index - 1)).astype(np.float32)
        # Catmull-Rom over four samples: linear interpolation would be a low-pass filter that
        # takes 5 dB off 15 kHz half-way between samples, and drift keeps the resampler on.
        # Past the end of what arrived, hold the last sample: off by less than one sample step.
        p0 = samples[np.minimum(index - 1, end)]
        p1 = samples[np.minimum(index, end)]
        p2 = samples[np.minimum(index + 1, end)]
        p3 = samples[np.minimum(index + 2, end)]
        out = p1 + 0.5 * t * (
            p2 - p0 + t * (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3 + t * (3.0 * (p1 - p2) + p3 - p0))
        )
        self._skip(self._ratio * SAMPLES_PER_BLOCK)
        return out.astype(np.float32, copy=False)

    def _drop_head(self) -> None:
        # The audio jumps here anyway: the next block starts from its beginning.
        block = self._blocks.popleft()
        self._samples -= len(block)
        self._before = float(block[-1])
        self._offset = 0.0

    # --- latency control -----------------------------------------------------------------

    def _repay_debt(self) -> None:
        # Ticks already covered by concealment or silence must not be played late as well:
        # after a gap (a loss the jitter buffer waited for, a stall) the blocks arrive together,
        # and playing them all would keep the latency of the gap.
        if self._debt:
            self._cut_owed(self._debt)
            self._debt = 0
        # After a stall the backlog comes through the decoder over a few ticks, so what is not
        # repaid at once stays owed for a few pulls, then is forgotten. (A concealed gap's
        # blocks come at once: that debt ends at the first pull, or it would cut good audio.)
        if self._skipped:
            self._skipped -= self._cut_owed(self._skipped)
            self._skipped_pulls += 1
            if self._skipped <= 0.0 or self._skipped_pulls >= _DEBT_PULLS:
                self._skipped = 0.0

    def _cut_owed(self, blocks: float) -> float:
        """Skip up to `blocks` of what waits above the target; returns the blocks skipped."""
        excess = min(blocks * SAMPLES_PER_BLOCK, self._available() - self._target_samples)
        if excess <= 0:
            return 0.0
        self._skip(excess)
        self.stats.trimmed += max(1, round(excess / SAMPLES_PER_BLOCK))
        return excess / SAMPLES_PER_BLOCK

    def _start_at_target(self) -> None:
        # In the first second of a stream a click does not matter and the backlog of a burst
        # as the connection came up is common: cut it at once instead of resampling it away.
        excess = self._available() - self._target_samples
        if excess > 2 * SAMPLES_PER_BLOCK:
            self._skip(excess)
            self.stats.trimmed += round(excess / SAMPLES_PER_BLOCK)

    @property
    def _target_samples(self) -> float:
        return self._target * SAMPLES_PER_BLOCK

    def _skip(self, samples: float) -> None:
        # Moving the read position is exact to the sample: no block granularity.
        self._offset += samples
        while self._blocks and self._offset >= len(self._blocks[0]):
            self._offset -= len(self._blocks[0])
            block = self._blocks.popleft()
            self._samples -= len(block)
            self._before = float(block[-1])
        if not self._blocks:
            self._offset = 0.0

    def _track_level(self) -> None:
        # The lowest level of a window is the cushion the source really keeps: arrival jitter
        # only adds to it. Drift moves it slowly, whole-block arrivals ripple it. A slow PI
        # loop keeps it between low and high: the integral learns the source's clock rate
        # (a source 0.1 % fast settles near ratio 1.001) and inside the band nothing changes,
        # so a steady source stays bit-exact. A backlog beyond what ±0.5 % absorbs in
        # reasonable time (a burst after a stall) is cut by one block per window instead.
        self._window_min = min(self._window_min, self.level)
        self._window_pulls += 1
        if self._window_pulls < self._trim_window:
            return
        lowest = self._window_min
        self._window_pulls = 0
        self._window_min = math.inf
        if lowest > self._high + 1.5 and len(self._blocks) > 1:
            self._drop_head()
            self.stats.trimmed += 1
            lowest -= 1.0
        self._lowest += (lowest - self._lowest) * self._smoothing
        lowest = self._lowest
        if lowest > self._high:
            error = lowest - self._high
        elif lowest < self._low:
            error = lowest - self._low
        else:
            error = 0.0
        limit = self._max_adjust
        self._integral = max(-limit, min(limit, self._integral + self._ki * error))
        adjust = max(-limit, min(limit, self._integral + self._kp * error))
        if adjust == 0.0 and self._ratio != 1.0:
            # Back to bit-exact playback: round the read position to a whole sample (a shift
            # of at most half a sample, inaudible).
            self._skip(round(self._offset) - self._offset)
        self._ratio = 1.0 + adjust
