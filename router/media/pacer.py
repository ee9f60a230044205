"""Tick pacing: on a fixed grid, or following the arrivals of one lead input.

On the grid, tick n is due at t0 + n·period; late ticks are skipped and counted, never
bursted.

With a lead input (the room's desk feed), a tick runs as soon as the lead's next block is
there. On a grid the room's audio would wait for the tick (0-20 ms, depending on the phase
the sender happened to start at) and keep a block of cushion against arrivals that miss
it; following the lead, it waits for neither, like a packet through a forwarding server.
The pacer predicts when the lead's next block is due (a smoothed clock of its arrivals)
and waits for it `grace` at most beyond that: a block later than that is concealed like a
lost one (`lead_timeouts`), and the ticks go on. A tick never runs more than `early` before
the prediction, and the prediction moves at most `max_step` per tick from the period, so
whatever the lead does the engine's pace stays within 0.5 % of real time and the other
inputs' buffers keep up. Without a lead, or one that has sent nothing for `lost_after`,
the pacer keeps the grid.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from router.media.clock import Clock

FRAME_SECONDS = 0.020


class Lead(Protocol):
    @property
    def ready(self) -> bool:
        """A pull now would play a fresh block (not one owed to a tick already concealed)."""
        ...


class TickPacer:
    def __init__(
        self,
        clock: Clock,
        period: float = FRAME_SECONDS,
        *,
        grace: float = 0.020,
        early: float = 0.010,
        max_step: float = 0.0001,
        smoothing: float = 0.1,
        lost_after: float = 1.0,
    ) -> None:
        self._clock = clock
        self._period = period
        self._grace = grace
        self._early = early
        self._max_step = max_step  # 0.5 % of a 20 ms period
        self._smoothing = smoothing
        self._lost_after = lost_after
        self._tick = -1
        self._next = 0.0  # when the next tick is due (following: the lead's next block)
        self._lead: Lead | None = None
        self._arrival: float | None = None  # the lead's latest block
        self._locked = False  # `_next` is on the lead's arrivals
        self._waiter: asyncio.Future[None] | None = None
        self.late_ticks = 0  # ticks skipped because the process could not run them in time
        self.lead_timeouts = 0  # ticks that waited the whole grace for the lead in vain

    @property
    def tick(self) -> int:
        return self._tick

    @property
    def following(self) -> bool:
        """The ticks follow the lead's arrivals (it has sent within `lost_after`)."""
        return self._locked

    def follow(self, lead: Lead | None) -> None:
        """Follow `lead`'s arrivals from its first block on; None: back to the grid."""
        self._lead = lead
        self._arrival = None
        self._locked = False
        self._wake()

    def arrived(self) -> None:
        """The lead has a new block (called by its buffer, on the event loop)."""
        self._arrival = self._clock.now()
        self._wake()

    async def next_tick(self) -> int:
        """Wait until the next tick is due and return its index."""
        if self._tick < 0:
            self._next = self._clock.now()
        ready_before = self._lead is not None and self._lead.ready
        while True:
            now = self._clock.now()
            lead = self._lead
            if lead is not None and self._arrival is not None:
                if now - self._arrival >= self._lost_after:
                    self._locked = False  # silent: the grid goes on from here
                elif not self._locked:
                    # A lead that starts (or comes back): its first block sets the phase.
                    self._locked = True
                    self._next = self._arrival
                    ready_before = False
            if self._locked and lead is not None:
                latest = self._next + self._grace
                self._skip(now - latest)
                if lead.ready and now >= self._next - self._early:
                    self._follow(None if ready_before else self._arrival)
                    return self._advance()
                if now >= latest:
                    self.lead_timeouts += 1
                    return self._advance()
                await self._wait(self._next - self._early if lead.ready else latest)
            else:
                if now >= self._next:
                    self._skip(now - self._next)
                    return self._advance()
                await self._wait(self._next)

    def _follow(self, arrival: float | None) -> None:
        # The prediction moves toward the arrival that made the lead ready, by a fraction and
        # at most max_step; a block that was already waiting means the prediction is late.
        error = -self._max_step if arrival is None else self._smoothing * (arrival - self._next)
        self._next += max(-self._max_step, min(self._max_step, error))

    def _skip(self, behind: float) -> None:
        # Whole periods missed (the process stalled): drop them so the output stays on time.
        if behind >= self._period:
            missed = int(behind // self._period)
            self.late_ticks += missed
            self._tick += missed
            self._next += missed * self._period

    def _advance(self) -> int:
        self._tick += 1
        self._next += self._period
        return self._tick

    async def _wait(self, deadline: float) -> None:
        """Sleep until `deadline`, or until the lead's next block or a change of lead."""
        waiter = self._clock.timer(deadline)
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None
            waiter.cancel()  # a timer resolved early must not stay armed

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
