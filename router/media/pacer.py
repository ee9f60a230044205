"""Tick pacing against absolute deadlines: late ticks are skipped and counted, never bursted."""

from __future__ import annotations

from router.media.clock import Clock

FRAME_SECONDS = 0.020


class TickPacer:
    def __init__(self, clock: Clock, period: float = FRAME_SECONDS) -> None:
        self._clock = clock
        self._period = period
        self._t0: float | None = None
        self._tick = -1
        self.late_ticks = 0

    @property
    def tick(self) -> int:
        return self._tick

    def deadline(self, tick: int) -> float:
        assert self._t0 is not None
        return self._t0 + tick * self._period

    async def next_tick(self) -> int:
        """Wait for the next tick's deadline and return its index."""
        if self._t0 is None:
            self._t0 = self._clock.now()
            self._tick = 0
            return 0
        tick = self._tick + 1
        behind = self._clock.now() - self.deadline(tick)
        if behind >= self._period:
            # Whole periods missed: drop them so the output stays on the wall clock.
            missed = int(behind // self._period)
            self.late_ticks += missed
            tick += missed
        await self._clock.sleep_until(self.deadline(tick))
        self._tick = tick
        return tick
