"""Meters: sines of known amplitude within 0.5 dB; loudness within 1 LU of pyloudnorm."""

import numpy as np
import pyloudnorm
import pytest

from router.media.mixer import MixPlan, build_matrix, mix
from router.monitoring.levels import LevelMeters
from tests.signals import sine

RATE = 48000


def run_meter(signal: np.ndarray) -> dict:
    matrix = build_matrix(MixPlan(channels=("floor",), floor_inputs=frozenset({"a"})), ["a"])
    meters = LevelMeters()
    for k in range(len(signal) // 960):
        block = signal[k * 960 : (k + 1) * 960][None, :]
        meters.on_tick(k, matrix, block, mix(block, matrix))
    return meters.read()


@pytest.mark.parametrize(("freq", "amplitude"), [(100, 0.5), (997, 0.1), (3000, 0.03), (6000, 0.8)])
def test_sine_meters_match_amplitude_and_reference_loudness(freq, amplitude):
    x = sine(freq, RATE * 2, amplitude)
    level = run_meter(x)["in:a"]
    expected_db = 20 * np.log10(amplitude)
    assert level.peak_db == pytest.approx(expected_db, abs=0.5)
    assert level.rms_db == pytest.approx(expected_db, abs=0.5)  # AES17: a sine reads its peak
    reference = pyloudnorm.Meter(RATE, block_size=0.4).integrated_loudness(x.astype(np.float64))
    assert level.lufs == pytest.approx(reference, abs=1.0)
    assert not level.clipped


def test_speech_like_signal_loudness_matches_reference():
    rng = np.random.default_rng(7)
    noise = rng.standard_normal(RATE * 2).astype(np.float32) * 0.05
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(RATE * 2) / RATE)
    x = (noise * envelope).astype(np.float32)
    level = run_meter(x)["in:a"]
    tail = x[-int(0.4 * RATE) :].astype(np.float64)  # momentary = the last 400 ms
    reference = pyloudnorm.Meter(RATE, block_size=0.4).integrated_loudness(tail)
    assert level.lufs == pytest.approx(reference, abs=1.0)


def test_clip_and_silence_are_reported_per_row():
    matrix = build_matrix(
        MixPlan(channels=("floor",), floor_inputs=frozenset({"a", "b"})), ["a", "b"]
    )
    meters = LevelMeters()
    loud = np.stack([sine(440, 960, 0.8), sine(440, 960, 0.8)])
    meters.on_tick(0, matrix, loud, mix(loud, matrix))
    levels = meters.read()
    assert levels["ch:floor"].clipped and not levels["in:a"].clipped
    silent = np.zeros((2, 960), np.float32)
    meters.on_tick(1, matrix, silent, mix(silent, matrix))
    levels = meters.read()
    assert levels["ch:floor"].peak_db <= -120 and not levels["ch:floor"].clipped


def test_state_follows_a_source_when_others_come_and_go():
    meters = LevelMeters()
    plan = MixPlan(channels=("floor",), floor_inputs=frozenset({"a", "b"}))
    one = build_matrix(plan, ["a"])
    two = build_matrix(plan, ["b", "a"])
    for k in range(30):
        block = sine(997, 960, 0.1, k * 960)[None, :]
        meters.on_tick(k, one, block, mix(block, one))
    for k in range(30, 40):
        blocks = np.stack([np.zeros(960, np.float32), sine(997, 960, 0.1, k * 960)])
        meters.on_tick(k, two, blocks, mix(blocks, two))
    levels = meters.read()
    assert levels["in:a"].lufs == pytest.approx(-23.0, abs=0.5)  # its 400 ms window survived
    assert levels["in:b"].lufs < -60
