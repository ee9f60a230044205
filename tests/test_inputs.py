"""Per-source buffer: bounded, drop-oldest, counted; backlog trimmed; short gaps concealed."""

import numpy as np

from router.media.inputs import SAMPLES_PER_BLOCK, SourceBuffer
from tests.signals import sine, tone_db


def block(value: float) -> np.ndarray:
    return np.full(SAMPLES_PER_BLOCK, value, dtype=np.float32)


def test_waits_for_prefetch_then_plays_in_order():
    buf = SourceBuffer(prefetch=2)
    buf.push(block(1))
    assert buf.pull() is None
    buf.push(block(2))
    assert buf.pull()[0] == 1
    assert buf.pull()[0] == 2


def test_overrun_drops_oldest_and_counts():
    buf = SourceBuffer(capacity=4, prefetch=1)
    for i in range(10):
        buf.push(block(i))
    assert buf.depth == 4
    assert buf.stats.overruns == 6
    assert [buf.pull()[0] for _ in range(4)] == [6, 7, 8, 9]


def test_underrun_is_concealed_briefly_then_silent():
    buf = SourceBuffer(prefetch=1, max_conceal=2)
    buf.push(block(0.8))
    assert buf.pull()[0] == np.float32(0.8)
    first = buf.pull()
    assert first is not None and 0 < first[0] < 0.8
    second = buf.pull()
    assert second is not None and second[0] < first[0]
    assert buf.pull() is None
    assert buf.stats.underruns == 3 and buf.stats.concealed == 2


def test_standing_backlog_is_trimmed_to_target():
    buf = SourceBuffer(capacity=10, prefetch=1, target_depth=2, trim_window=50)
    for _ in range(8):  # a burst leaves 8 blocks (160 ms) queued
        buf.push(block(0))
    depths = []
    for _ in range(400):  # then the source runs at exactly the tick rate
        buf.push(block(0))
        buf.pull()
        depths.append(buf.depth)
    assert depths[-1] <= 3
    assert buf.stats.trimmed >= 5
    assert buf.stats.underruns == 0


def test_drift_fast_source_keeps_latency_bounded():
    buf = SourceBuffer(capacity=10, prefetch=2, target_depth=2)
    # a source 1% fast: one extra block every 100 ticks, for 10,000 ticks
    for t in range(10_000):
        buf.push(block(0))
        if t % 100 == 0:
            buf.push(block(0))
        buf.pull()
    assert buf.depth <= 4
    assert buf.stats.overruns == 0


def test_blocks_released_after_a_gap_do_not_keep_its_latency():
    buf = SourceBuffer(capacity=10, prefetch=2, target_depth=2)
    for _ in range(100):  # steady state: one block per tick
        buf.push(block(0))
        buf.pull()
    steady = buf.depth
    # one packet lost: the jitter buffer waits 3 ticks, then releases 4 blocks at once
    for _ in range(3):
        assert buf.pull() is not None or buf.stats.underruns  # concealed or silent
    for _ in range(4):
        buf.push(block(1))
    buf.pull()
    for _ in range(3):
        buf.push(block(0))
        buf.pull()
    assert buf.depth <= steady, "latency is back to what it was within a few ticks"
    assert buf.stats.trimmed >= 1


def test_drift_resampling_keeps_the_top_of_the_band():
    # Resampling at 0.3 % visits every fractional position and modulates a 15 kHz tone: read
    # by one FFT the cubic interpolator loses 2.1 dB of it, linear interpolation lost 3.8 dB.
    n = SAMPLES_PER_BLOCK * 300
    x = sine(15000, n)
    buf = SourceBuffer(trim_window=10**9)  # no level control: the ratio stays where it is set
    buf._ratio = 1.003
    out = []
    for k in range(300):
        buf.push(x[k * SAMPLES_PER_BLOCK : (k + 1) * SAMPLES_PER_BLOCK])
        if k >= 4:
            out.append(buf.pull())
    y = np.concatenate(out[10:])
    assert tone_db(y, 15000 * 1.003) > tone_db(x, 15000) - 3.0
    assert tone_db(y, 15000 * 1.003) < tone_db(x, 15000) + 0.5


def test_resampling_reads_to_the_very_end_of_what_arrived():
    # Every ratio the level control may set, with exactly one block waiting: a fast ratio reads
    # past the last sample that arrived (that sample is held), never past the array.
    for ratio in np.linspace(0.995, 1.005, 41):
        buf = SourceBuffer(prefetch=1, trim_window=10**9)
        buf._ratio = float(ratio)
        buf.push(block(0.5))
        out = buf.pull()
        assert out is not None and out.shape == (SAMPLES_PER_BLOCK,)
        assert np.allclose(out, 0.5, atol=1e-3)
