"""Engine pacing on a manual clock: absolute deadlines, no drift, late ticks skipped; and
ticks that follow a lead input's arrivals (the room's desk feed)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from router.media.clock import ManualClock
from router.media.inputs import SAMPLES_PER_BLOCK, SourceBuffer
from router.media.pacer import TickPacer


async def run_pacer(pacer: TickPacer, clock: ManualClock, released: list[tuple[int, float]]):
    while True:
        tick = await pacer.next_tick()
        released.append((tick, clock.now()))


async def test_no_drift_over_ten_thousand_ticks():
    clock = ManualClock(start=100.0)
    pacer = TickPacer(clock)
    released: list[tuple[int, float]] = []
    task = asyncio.create_task(run_pacer(pacer, clock, released))
    await asyncio.sleep(0)
    # uneven steps that never line up with the 20 ms period
    steps = [0.007, 0.013, 0.0031, 0.0169]
    total = 0.0
    i = 0
    while total < 200.0:
        step = steps[i % len(steps)]
        await clock.advance(step)
        total += step
        i += 1
    task.cancel()
    ticks = [t for t, _ in released]
    assert ticks == list(range(len(ticks)))
    assert len(ticks) == pytest.approx(10_001, abs=1)
    # each tick is released exactly at its absolute deadline, never late
    for tick, at in released:
        assert at == pytest.approx(100.0 + tick * 0.02, abs=1e-9)
    assert pacer.late_ticks == 0


async def test_late_ticks_are_skipped_and_counted_not_bursted():
    clock = ManualClock()
    pacer = TickPacer(clock)
    assert await pacer.next_tick() == 0
    await clock.advance(0.02)
    assert await pacer.next_tick() == 1
    # the loop was blocked for 110 ms: ticks 2..6 are past
    await clock.advance(0.11)
    tick = await pacer.next_tick()
    assert tick == 6
    assert pacer.late_ticks == 4
    # the next tick waits for its own deadline again: no catch-up burst
    waiter = asyncio.create_task(pacer.next_tick())
    await asyncio.sleep(0)
    assert not waiter.done()
    await clock.advance(0.14 - 0.13 + 1e-9)
    assert await waiter == 7
    assert clock.now() == pytest.approx(0.14)


async def test_slightly_late_tick_is_produced_at_once():
    clock = ManualClock()
    pacer = TickPacer(clock)
    await pacer.next_tick()
    await clock.advance(0.035)  # 15 ms past tick 1's deadline, before tick 2's
    assert await pacer.next_tick() == 1
    assert pacer.late_ticks == 0


# --- following a lead input ----------------------------------------------------------------

PERIOD = 0.02


def numbered(n: int) -> np.ndarray:
    """A block that says which one it is (a faded repeat of it cannot end in .25)."""
    return np.full(SAMPLES_PER_BLOCK, n + 1.25, dtype=np.float32)


class LeadRun:
    """A paced receive buffer, fed at given times on a manual clock, pulled at every tick as
    the engine does; records when each tick ran and which block it played."""

    def __init__(self, arrivals: list[list[float] | float], **pacer: float) -> None:
        self.clock = ManualClock()
        self.pacer = TickPacer(self.clock, **pacer)
        self.buffer = SourceBuffer()
        self.buffer.pace(self.pacer.arrived)
        self.pacer.follow(self.buffer)
        # one time per block, or a list: the jitter buffer releases held blocks together
        self.arrivals = arrivals
        self.pushed: dict[int, float] = {}  # block -> when it arrived
        self.ticks: list[tuple[int, float, int | None]] = []  # (tick, time, block played)
        self.levels: list[float] = []

    async def _send(self) -> None:
        n = 0
        for at in self.arrivals:
            group = at if isinstance(at, list) else [at]
            await self.clock.sleep_until(group[0])
            for _ in group:
                self.pushed[n] = self.clock.now()
                self.buffer.push(numbered(n))
                n += 1

    async def _tick(self) -> None:
        while True:
            tick = await self.pacer.next_tick()
            self.levels.append(self.buffer.level)
            block = self.buffer.pull()
            value = None if block is None else float(block[0])
            played = int(value) - 1 if value is not None and value % 1 == 0.25 else None
            self.ticks.append((tick, self.clock.now(), played))

    async def run(self, seconds: float) -> LeadRun:
        tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._tick())]
        for _ in range(3):
            await asyncio.sleep(0)
        try:
            await self.clock.advance(seconds)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return self

    def played(self) -> dict[int, float]:
        """block -> when the tick that played it ran"""
        return {b: at for _, at, b in self.ticks if b is not None}


async def test_ticks_run_as_the_leads_blocks_arrive_whatever_their_jitter():
    rng = np.random.default_rng(7)
    phase = 0.0137  # not on the 20 ms grid the pacer started with
    arrivals = [phase + n * PERIOD + rng.uniform(-0.004, 0.004) for n in range(1500)]
    run = await LeadRun(arrivals).run(arrivals[-1] + 0.001)
    played = run.played()
    assert sorted(played) == list(range(1500)), "every block played once, in order"
    # each block is played in the tick that runs the moment it arrives: no waiting at all
    waits = [played[n] - run.pushed[n] for n in range(1500)]
    assert max(waits) == pytest.approx(0.0, abs=1e-9)
    assert run.pacer.following and run.pacer.lead_timeouts == 0 and run.pacer.late_ticks == 0
    assert run.buffer.stats.concealed == 0 and run.buffer.stats.trimmed == 0
    ticks = [t for t, _, _ in run.ticks]
    assert ticks == list(range(len(ticks)))


async def test_a_block_later_than_the_grace_is_concealed_and_costs_no_lasting_latency():
    # block 300 is 35 ms late; the jitter buffer holds 301 behind it and releases both
    arrivals: list[list[float] | float] = [0.005 + n * PERIOD for n in range(600)]
    arrivals[300] = [arrivals[300] + 0.035] * 2
    del arrivals[301]
    run = await LeadRun(arrivals).run(0.005 + 599 * PERIOD + 0.001)
    played = run.played()
    assert 300 not in played, "its tick was concealed: played late it would be lasting latency"
    assert sorted(played) == [n for n in range(600) if n != 300]
    assert run.pacer.lead_timeouts == 1
    assert run.buffer.stats.concealed == 1
    # the concealed tick waited the grace (20 ms) beyond the block's expected time
    concealed = [at for _, at, b in run.ticks if b is None and at > 1.0]
    assert concealed == [pytest.approx(0.005 + 300 * PERIOD + 0.020, abs=1e-3)]
    # 301 plays as it arrives, and from 302 on every block again the moment it arrives
    assert played[301] == run.pushed[301]
    assert all(played[n] == run.pushed[n] for n in range(302, 600))


async def test_a_silent_lead_leaves_the_grid_running_and_sets_the_phase_when_it_returns():
    first = [0.003 + n * PERIOD for n in range(100)]  # 2 s, then 3 s of nothing
    second = [5.0117 + n * PERIOD for n in range(100)]  # back at another phase
    run = await LeadRun([*first, *second]).run(second[-1] + 0.001)
    times = [at for _, at, _ in run.ticks]
    gaps = np.diff(times)
    # while it is silent the ticks keep the 20 ms grid (after the grace, and 1 s of waiting)
    silent = [g for t, g in zip(times[1:], gaps, strict=True) if 3.1 < t < 4.9]
    assert silent and max(silent) == pytest.approx(PERIOD, abs=1e-9)
    assert min(silent) == pytest.approx(PERIOD, abs=1e-9)
    # from its first block back, each block plays the moment it arrives
    played = run.played()
    assert all(played[n] == run.pushed[n] for n in range(100, 200))
    assert run.pacer.following


@pytest.mark.parametrize("drift", [0.0001, -0.0001, 0.003, -0.003])
async def test_a_leads_clock_is_followed_within_half_a_percent(drift):
    period = PERIOD / (1 + drift)  # its 20 ms by our clock
    arrivals = [0.009 + n * period for n in range(15_000)]  # 5 minutes
    run = await LeadRun(arrivals).run(arrivals[-1] + 0.001)
    played = run.played()
    assert sorted(played) == list(range(15_000))
    assert all(played[n] == run.pushed[n] for n in range(15_000))
    assert run.buffer.stats.trimmed == 0 and run.buffer.stats.concealed == 0


@pytest.mark.parametrize("drift", [0.02, -0.02])
async def test_a_lead_off_by_more_than_half_a_percent_cannot_drag_the_engine(drift):
    period = PERIOD / (1 + drift)  # a broken sender, 2 % fast or slow
    arrivals = [0.009 + n * period for n in range(3000)]
    run = await LeadRun(arrivals).run(arrivals[-1] + 0.001)
    times = np.array([at for _, at, _ in run.ticks])
    rate = (len(times) - 1) * PERIOD / (times[-1] - times[0])  # ticks against real time
    assert abs(rate - 1) <= 0.0055
    # what it sends too much is cut, what it sends too little concealed: never more than
    # three blocks wait behind the one played (60 ms)
    assert max(run.levels[100:]) <= 4.0
    if drift > 0:
        assert run.buffer.stats.trimmed > 0
    else:
        assert run.pacer.lead_timeouts > 0


async def test_a_stalled_process_skips_the_ticks_it_missed_while_following():
    clock = ManualClock()
    pacer = TickPacer(clock)
    buffer = SourceBuffer()
    buffer.pace(pacer.arrived)
    pacer.follow(buffer)
    assert await pacer.next_tick() == 0
    await clock.advance(0.005)
    buffer.push(numbered(0))
    assert await pacer.next_tick() == 1  # at the block's arrival
    assert clock.now() == pytest.approx(0.005)
    buffer.pull()
    await clock.advance(0.2)  # nothing ran for 200 ms: nine blocks wait in the socket
    for n in range(1, 10):
        buffer.push(numbered(n))
    tick = await pacer.next_tick()
    assert pacer.late_ticks == tick - 2 >= 8
