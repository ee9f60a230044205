"""Per-source receive buffer between ingest (any rate, any timing) and the engine tick.

Bounded, drop-oldest, with counters; keeps latency low by dropping blocks that arrive after
their ticks were already concealed, and by trimming a standing backlog; conceals a short gap
with a faded repeat of the last block.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

SAMPLES_PER_BLOCK = 960  # 20 ms at 48 kHz


@dataclass
class BufferStats:
    pushed: int = 0
    pulled: int = 0
    overruns: int = 0  # blocks dropped because the buffer was full
    underruns: int = 0  # ticks with no block available
    concealed: int = 0  # underruns covered by a faded repeat
    trimmed: int = 0  # blocks dropped to cut a standing backlog


class SourceBuffer:
    def __init__(
        self,
        capacity: int = 10,
        prefetch: int = 2,
        target_depth: int = 2,
        trim_window: int = 50,
        max_conceal: int = 2,
    ) -> None:
        self._blocks: deque[np.ndarray] = deque()
        self._capacity = capacity
        self._prefetch = prefetch
        self._target = target_depth
        self._trim_window = trim_window
        self._max_conceal = max_conceal
        self._primed = False
        self._last: np.ndarray | None = None
        self._concealing = 0
        self._debt = 0  # ticks played without a real block since the last one
        self._window_pulls = 0
        self._window_min = capacity
        self.stats = BufferStats()

    @property
    def depth(self) -> int:
        return len(self._blocks)

    def push(self, block: np.ndarray) -> None:
        if len(self._blocks) >= self._capacity:
            self._blocks.popleft()
            self.stats.overruns += 1
        self._blocks.append(block)
        self.stats.pushed += 1
        if not self._primed and len(self._blocks) >= self._prefetch:
            self._primed = True

    def pull(self) -> np.ndarray | None:
        """One block for this tick, a concealment block, or None (silence)."""
        if self._primed:
            self._track_backlog()
            if self._blocks:
                self._repay_debt()
                self._concealing = 0
                block = self._blocks.popleft()
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

    def _repay_debt(self) -> None:
        # Ticks already covered by concealment or silence must not be played late as well:
        # after a gap (a loss the jitter buffer waited for, a stall) the blocks arrive together,
        # and playing them all would keep the latency of the gap.
        if self._debt:
            excess = min(self._debt, len(self._blocks) - self._target)
            for _ in range(max(excess, 0)):
                self._blocks.popleft()
                self.stats.trimmed += 1
            self._debt = 0

    def _track_backlog(self) -> None:
        # The smallest depth seen over a window is latency nobody needs: cut one block of it.
        self._window_min = min(self._window_min, len(self._blocks))
        self._window_pulls += 1
        if self._window_pulls >= self._trim_window:
            if self._window_min > self._target:
                self._blocks.popleft()
                self.stats.trimmed += 1
            self._window_pulls = 0
            self._window_min = self._capacity
