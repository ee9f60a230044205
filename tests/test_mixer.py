"""Mixing rules by FFT, one sine per source."""

import numpy as np
import pytest

from router.media.mixer import FLOOR, MixPlan, build_matrix, feed_gains, mix, to_int16
from tests.signals import sine, tone_amplitude

N = 4800  # 100 ms: 10 Hz FFT bins
CHANNELS = (FLOOR, "en", "fr", "es")
ROOM, PANEL, SEAT_FR, SEAT_ES = 440.0, 550.0, 660.0, 880.0
SOURCES = ["room", "panel", "seat-fr", "seat-es"]


def blocks() -> np.ndarray:
    return np.stack([sine(f, N, 0.2) for f in (ROOM, PANEL, SEAT_FR, SEAT_ES)])


def plan(**kw) -> MixPlan:
    args = dict(channels=CHANNELS, floor_inputs=frozenset({"room", "panel"}), bed_gain=0.1)
    args.update(kw)
    return MixPlan(**args)


def channel(out: np.ndarray, name: str) -> np.ndarray:
    return out[CHANNELS.index(name)]


def test_floor_is_room_plus_panellists_and_no_seat():
    out = mix(blocks(), build_matrix(plan(live={"fr": "seat-fr"}), SOURCES))
    floor = channel(out, FLOOR)
    assert tone_amplitude(floor, ROOM) == pytest.approx(0.2, rel=0.02)
    assert tone_amplitude(floor, PANEL) == pytest.approx(0.2, rel=0.02)
    assert tone_amplitude(floor, SEAT_FR) < 1e-3
    assert tone_amplitude(floor, SEAT_ES) < 1e-3


def test_live_channel_carries_seat_over_floor_bed():
    out = mix(blocks(), build_matrix(plan(live={"fr": "seat-fr"}, bed_gain=0.1), SOURCES))
    fr = channel(out, "fr")
    assert tone_amplitude(fr, SEAT_FR) == pytest.approx(0.2, rel=0.02)
    # -20 dB bed: the floor at a tenth of its amplitude
    assert tone_amplitude(fr, ROOM) == pytest.approx(0.02, rel=0.05)
    assert tone_amplitude(fr, SEAT_ES) < 1e-3


def test_bed_off_removes_floor_under_interpretation():
    out = mix(blocks(), build_matrix(plan(live={"fr": "seat-fr"}, bed_gain=0.0), SOURCES))
    fr = channel(out, "fr")
    assert tone_amplitude(fr, SEAT_FR) == pytest.approx(0.2, rel=0.02)
    assert tone_amplitude(fr, ROOM) < 1e-4


def test_auto_floor_when_no_seat_is_live():
    out = mix(blocks(), build_matrix(plan(live={"fr": "seat-fr"}), SOURCES))
    for name in ("en", "es"):
        ch = channel(out, name)
        assert tone_amplitude(ch, ROOM) == pytest.approx(0.2, rel=0.02)
        assert tone_amplitude(ch, SEAT_ES) < 1e-3, "a seat that is not live is not heard"


def test_live_seat_without_source_falls_back_to_floor():
    out = mix(blocks(), build_matrix(plan(live={"fr": "gone"}), SOURCES))
    assert tone_amplitude(channel(out, "fr"), ROOM) == pytest.approx(0.2, rel=0.02)


def test_mix_minus_removes_only_the_own_voice():
    b = blocks()
    matrix = build_matrix(plan(live={"fr": "seat-fr"}), SOURCES)
    panel_return = feed_gains(matrix, FLOOR, minus="panel") @ b
    assert tone_amplitude(panel_return, PANEL) < 1e-4
    assert tone_amplitude(panel_return, ROOM) == pytest.approx(0.2, rel=0.02)
    seat_hears_own = feed_gains(matrix, "fr", minus="seat-fr") @ b
    assert tone_amplitude(seat_hears_own, SEAT_FR) < 1e-4
    assert tone_amplitude(seat_hears_own, ROOM) == pytest.approx(0.02, rel=0.05)


def test_voice_only_layer_drops_the_bed_but_not_auto_floor():
    b = blocks()
    matrix = build_matrix(plan(live={"fr": "seat-fr"}), SOURCES)
    fr_voice = feed_gains(matrix, "fr", voice_only=True) @ b
    assert tone_amplitude(fr_voice, SEAT_FR) == pytest.approx(0.2, rel=0.02)
    assert tone_amplitude(fr_voice, ROOM) < 1e-4
    es_voice = feed_gains(matrix, "es", voice_only=True) @ b
    assert tone_amplitude(es_voice, ROOM) == pytest.approx(0.2, rel=0.02)


def test_input_gain_scales_the_source():
    out = mix(blocks(), build_matrix(plan(input_gains={"room": 0.5}), SOURCES))
    assert tone_amplitude(channel(out, FLOOR), ROOM) == pytest.approx(0.1, rel=0.02)


def test_saturation_clips_instead_of_wrapping():
    loud = np.stack([sine(ROOM, N, 0.9), sine(ROOM, N, 0.9)])
    p = MixPlan(channels=(FLOOR,), floor_inputs=frozenset({"a", "b"}))
    out = to_int16(mix(loud, build_matrix(p, ["a", "b"]))[0])
    assert out.max() == 32767 and out.min() == -32768
    # wrap-around would put negative samples where the sine peaks positive
    peaks = sine(ROOM, N, 1.0) > 0.99
    assert (out[peaks] > 30000).all()


def test_no_sources_is_silence():
    p = MixPlan(channels=CHANNELS, floor_inputs=frozenset())
    out = mix(np.zeros((0, N), np.float32), build_matrix(p, []))
    assert out.shape == (len(CHANNELS), N) and not out.any()
