"""Clock drift: a source 0.1 % fast or slow for an hour neither grows latency nor clicks.

The engine ticks on its own timeline; the sender's clock runs fast or slow against it. Its sine
is continuous, so any dropped, repeated or concealed block shows as a jump between samples
larger than the sine allows (1018.5 Hz: a block is 20.37 periods, so a dropped or repeated
block shifts the sine by a third of a period).
"""

import asyncio

import numpy as np
import pytest

from router.media.clock import ManualClock
from router.media.engine import Engine, EngineSettings, SourceRole
from router.media.inputs import SAMPLES_PER_BLOCK, SourceBuffer
from router.media.mixer import MixMatrix
from tests.signals import RATE

FREQ, AMPLITUDE = 1018.5, 0.5
BLOCK_SECONDS = SAMPLES_PER_BLOCK / RATE
HOUR_TICKS = round(3600 / BLOCK_SECONDS)
SETTLE_TICKS = round(60 / BLOCK_SECONDS)  # a minute to learn the rate; then nothing may go wrong


def max_sine_step(ratio: float) -> float:
    """The largest sample-to-sample change of the sine, played up to `ratio` faster."""
    return AMPLITUDE * 2 * np.pi * FREQ * ratio / RATE


CLICK = max_sine_step(1.005) * 1.01  # the ratio never goes beyond ±0.5 %


_W = 2 * np.pi * FREQ / RATE
_SIN = AMPLITUDE * np.sin(_W * np.arange(SAMPLES_PER_BLOCK))
_COS = AMPLITUDE * np.cos(_W * np.arange(SAMPLES_PER_BLOCK))


def source_block(n: int) -> np.ndarray:
    """Block n of one continuous sine (sin(a + b) expanded: an hour of blocks in a few seconds)."""
    phase = (_W * SAMPLES_PER_BLOCK * n) % (2 * np.pi)
    return (_SIN * np.cos(phase) + _COS * np.sin(phase)).astype(np.float32)


class FloorWatch:
    """A tick tap: the largest jump in the floor mix, and the source buffer's level and ratio."""

    def __init__(self, buffer: SourceBuffer) -> None:
        self.buffer = buffer
        self.last: float | None = None
        self.max_jump = 0.0
        self.levels: list[float] = []
        self.ratios: list[float] = []
        self.settled: dict[str, int] | None = None
        self.ticks = 0

    def on_tick(self, tick: int, matrix: MixMatrix, blocks: np.ndarray, mixed: np.ndarray) -> None:
        floor = mixed[matrix.row("floor")]
        self.ticks += 1
        if self.ticks > SETTLE_TICKS:
            if self.settled is None:
                self.settled = dict(self.buffer.stats.__dict__)
            jump = float(np.abs(np.diff(floor)).max())
            if self.last is not None:
                jump = max(jump, abs(float(floor[0]) - self.last))
            self.max_jump = max(self.max_jump, jump)
            self.levels.append(self.buffer.level)
            self.ratios.append(self.buffer.ratio)
        self.last = float(floor[-1])

    def check(self) -> None:
        stats = self.buffer.stats.__dict__
        assert self.settled is not None
        for counter in ("underruns", "concealed", "overruns", "trimmed"):
            assert stats[counter] == self.settled[counter], f"{counter} after settling: {stats}"
        # latency stays bounded: after each pull at least a quarter block is left (a margin
        # against jitter) and never more than three blocks (60 ms) wait
        levels = np.array(self.levels)
        assert levels.min() >= 0.25 and levels.max() <= 3.0, (levels.min(), levels.max())
        assert np.abs(np.array(self.ratios) - 1).max() <= 0.005
        # no clicks: never a step the (slightly resampled) sine itself does not make
        assert self.max_jump <= CLICK, self.max_jump


def drifting_engine() -> tuple[Engine, SourceBuffer, FloorWatch, ManualClock]:
    clock = ManualClock()
    engine = Engine(EngineSettings(channels=("floor",)), clock)
    buffer = engine.add_source("desk", SourceRole.ROOM)
    watch = FloorWatch(buffer)
    engine.add_tap(watch)
    return engine, buffer, watch, clock


@pytest.mark.parametrize("drift", [0.001, -0.001])
def test_an_hour_of_drift_without_latency_growth_or_clicks(drift):
    engine, buffer, watch, _ = drifting_engine()
    sent = 0
    for tick in range(HOUR_TICKS):
        due = int((tick + 1) * (1 + drift))  # blocks the fast or slow sender has made by now
        while sent < due:
            buffer.push(source_block(sent))
            sent += 1
        engine.tick(tick)

    watch.check()
    assert buffer.stats.pushed - buffer.stats.pulled == pytest.approx(drift * HOUR_TICKS, abs=4)
    levels = np.array(watch.levels)
    assert levels[-3000:].mean() <= levels[:3000].mean() + 0.5, "latency has not grown"
    # the ratio learned the sender's clock
    assert np.mean(watch.ratios[-30_000:]) == pytest.approx(1 + drift, abs=0.0002)


async def drifting_source(clock: ManualClock, buffer: SourceBuffer, drift: float) -> None:
    """A sender paced by its own clock: its 20 ms are 20 ms / (1 + drift) of the engine's."""
    n = 0
    while True:
        await clock.sleep_until(n * BLOCK_SECONDS / (1 + drift))
        buffer.push(source_block(n))
        n += 1


async def test_drift_through_the_running_engine_on_a_manual_clock():
    """The engine's own loop and the sender as a task, both waiting on the ManualClock."""
    engine, buffer, watch, clock = drifting_engine()
    tasks = [
        asyncio.create_task(drifting_source(clock, buffer, -0.001)),
        asyncio.create_task(engine.run()),
    ]
    for _ in range(3):
        await asyncio.sleep(0)  # both start at time 0
    try:
        await clock.advance(180.0)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert engine.stats.ticks == pytest.approx(180.0 / BLOCK_SECONDS, abs=2)
    watch.check()


def test_the_click_check_sees_a_dropped_or_repeated_block():
    clean = np.concatenate([source_block(n) for n in range(12)])
    assert np.abs(np.diff(clean)).max() <= CLICK
    for k in range(1, 10):
        dropped = np.concatenate([source_block(n) for n in range(12) if n != k])
        repeated = np.concatenate([source_block(n) for n in [*range(k + 1), *range(k, 12)]])
        assert np.abs(np.diff(dropped)).max() > CLICK, k
        assert np.abs(np.diff(repeated)).max() > CLICK, k
