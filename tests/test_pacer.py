"""Engine pacing on a manual clock: absolute deadlines, no drift, late ticks skipped."""

import asyncio

import pytest

from router.media.clock import ManualClock
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
