"""A stalled process (a long garbage collection, a starved CPU) must not leave lasting latency.

While the event loop is blocked the engine misses its deadlines and skips those ticks; the
sources' packets wait in their sockets meanwhile and arrive together when the loop runs again.
Played in full, that backlog would keep the stall's length as extra latency for many seconds.
Here the process stall is simulated on a manual clock: time jumps while nothing runs, then the
source catches up with every block it owed and the engine resumes.
"""

import asyncio

import numpy as np
import pytest

from router.media.clock import ManualClock
from router.media.engine import Engine, EngineSettings, SourceRole
from router.media.inputs import SAMPLES_PER_BLOCK
from tests.signals import RATE

BLOCK_SECONDS = SAMPLES_PER_BLOCK / RATE


async def source(clock: ManualClock, buffer, phase: float) -> None:
    """A sender paced by the same clock as the engine, `phase` after each tick."""
    n = 0
    while True:
        await clock.sleep_until(phase + n * BLOCK_SECONDS)
        buffer.push(np.full(SAMPLES_PER_BLOCK, 0.1, dtype=np.float32))
        n += 1


async def stalled_run(stall: float, follow_room: bool) -> tuple[Engine, list[float], float]:
    clock = ManualClock()
    engine = Engine(EngineSettings(channels=("floor",), follow_room=follow_room), clock)
    buffer = engine.add_source("desk", SourceRole.ROOM)
    tasks = [
        asyncio.create_task(source(clock, buffer, 0.007)),
        asyncio.create_task(engine.run()),
    ]
    for _ in range(3):
        await asyncio.sleep(0)
    try:
        await clock.advance(10.0)
        before = buffer.level
        clock._now += stall  # the whole process stalls: nobody runs while time passes
        levels = []
        for _ in range(150):  # the 3 s after it, tick by tick
            await clock.advance(BLOCK_SECONDS)
            levels.append(buffer.level)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return engine, levels, before


@pytest.mark.parametrize("follow_room", [False, True], ids=["grid", "following"])
@pytest.mark.parametrize("stall", [0.065, 0.145, 0.5])
async def test_a_stall_leaves_no_lasting_latency(stall, follow_room):
    engine, levels, before = await stalled_run(stall, follow_room)
    assert (engine.lead == "desk") == follow_room
    assert engine.pacer.late_ticks >= 1, "the engine skipped ticks it could not run in time"
    # Within a few ticks of the stall the buffer holds what it held before, not the backlog
    # of the stalled ticks, and stays there.
    assert max(levels[10:]) <= before + 0.5, (before, levels[:12])
