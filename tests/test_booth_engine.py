"""Booth audio on a manual clock: crossfaded handover, cough, return feeds and the limiter.

Channel content is read exactly where it is mixed (a tick tap), return feeds through real Opus.
"""

import numpy as np
import pytest

from router.media.clock import ManualClock
from router.media.engine import SourceRole
from router.media.inputs import SAMPLES_PER_BLOCK
from router.media.returnfeed import CEILING, CEILING_DB, Limiter, ReturnProcessor, ReturnSpec
from router.runtime import EventRuntime
from tests.signals import decode_packets, sine, tone_amplitude, tone_db

FLOOR_HZ, FR1_HZ, FR2_HZ, EN_HZ = 440.0, 660.0, 880.0, 1100.0
AMP = 0.2
SOURCES = {
    "room": (FLOOR_HZ, SourceRole.ROOM),
    "seat:fr:fr1": (FR1_HZ, SourceRole.SEAT),
    "seat:fr:fr2": (FR2_HZ, SourceRole.SEAT),
    "seat:en:en1": (EN_HZ, SourceRole.SEAT),
}


def amplitudes(block: np.ndarray, start: int) -> dict[float, float]:
    """Each test tone's amplitude in one block, by least squares on the known frequencies
    (exact on 20 ms, where an FFT's leakage between tones would blur a crossfade)."""
    t = (np.arange(block.size) + start) / 48000
    freqs = [FLOOR_HZ, FR1_HZ, FR2_HZ, EN_HZ]
    basis = np.column_stack([f(2 * np.pi * hz * t) for hz in freqs for f in (np.sin, np.cos)])
    coef, *_ = np.linalg.lstsq(basis, block.astype(np.float64), rcond=None)
    return {hz: float(np.hypot(coef[2 * i], coef[2 * i + 1])) for i, hz in enumerate(freqs)}


class ChannelTap:
    """Keeps one channel's mixed block per tick."""

    def __init__(self, channel: str):
        self.channel = channel
        self.blocks: list[np.ndarray] = []
        self.ticks: list[int] = []

    def on_tick(self, tick, matrix, blocks, mixed):
        self.blocks.append(mixed[matrix.row(self.channel)].copy())
        self.ticks.append(tick)

    def level(self, freq: float) -> np.ndarray:
        """Per tick, the tone's amplitude relative to its source's."""
        return (
            np.array(
                [
                    amplitudes(b, t * SAMPLES_PER_BLOCK)[freq]
                    for b, t in zip(self.blocks, self.ticks, strict=True)
                ]
            )
            / AMP
        )


class Collector:
    def __init__(self):
        self.packets = []

    def offer(self, packet):
        self.packets.append(packet)


class Booths:
    def __init__(self, event_config):
        self.rt = EventRuntime.build(event_config, ManualClock())
        self.engine = self.rt.engine
        self.board = self.rt.board
        self.tick_no = 0
        self.amplitude = dict.fromkeys(SOURCES, AMP)
        self.silent: set[str] = set()
        for sid, (_, role) in SOURCES.items():
            self.engine.add_source(sid, role)
        for booth, seat in (("fr", "fr1"), ("fr", "fr2"), ("en", "en1")):
            self.board.set_connected(booth, seat, True)

    def run(self, count: int) -> None:
        for _ in range(count):
            n = self.tick_no
            for sid, (freq, _) in SOURCES.items():
                if sid not in self.silent:
                    block = sine(
                        freq, SAMPLES_PER_BLOCK, self.amplitude[sid], n * SAMPLES_PER_BLOCK
                    )
                    self.engine.buffer(sid).push(block)
            self.engine.tick(n)
            self.tick_no += 1


@pytest.fixture
def booths(event_config) -> Booths:
    return Booths(event_config)


def test_handover_crossfades_at_a_tick_boundary(booths):
    tap = ChannelTap("fr")
    booths.engine.add_tap(tap)
    booths.board.set_mic("fr", "fr1", True)
    booths.run(20)
    booths.board.request_handover("fr", "fr2")
    booths.board.accept_handover("fr", "fr1")
    switched = len(tap.blocks)
    booths.run(20)
    old, new = tap.level(FR1_HZ), tap.level(FR2_HZ)
    around = slice(switched - 5, switched + 8)
    # never silent: one voice or the other is always there at half level or more
    assert np.all(np.maximum(old, new)[around] > 0.5), (old[around], new[around])
    # never doubled: never both voices above -3 dB at once
    assert not np.any((old > 0.7) & (new > 0.7))
    # the crossfade starts at the switch tick and lasts fade_ticks (40 ms), then only fr2
    both = np.flatnonzero((old > 0.01) & (new > 0.01))
    assert both.tolist() == [switched, switched + 1]
    assert old[switched - 1] == pytest.approx(1.0, abs=0.05) and new[switched - 1] < 0.01
    assert new[switched + 2] == pytest.approx(1.0, abs=0.05) and old[switched + 2] < 0.01
    # the two gains add up to one (a linear crossfade), and the floor bed does not move
    assert np.allclose((old + new)[around], 1.0, atol=0.02)
    bed = tap.level(FLOOR_HZ)
    assert np.allclose(np.delete(bed, [switched, switched + 1])[5:], 0.1, atol=0.001)


def test_cough_carries_silence_not_the_floor(booths):
    tap = ChannelTap("fr")
    booths.engine.add_tap(tap)
    booths.board.set_mic("fr", "fr1", True)
    booths.run(10)
    booths.board.set_cough("fr", "fr1", True)
    mark = len(tap.blocks)
    booths.run(20)
    voice, floor = tap.level(FR1_HZ)[mark:], tap.level(FLOOR_HZ)[mark:]
    assert np.all(voice[2:] < 1e-4), "the voice is muted after the 40 ms fade"
    # the channel keeps its live seat: the floor stays at the bed level, never full
    assert np.allclose(floor[2:], 0.1, atol=0.001)
    assert np.all(floor < 0.12)
    assert booths.board.seat("fr", "fr1").live
    booths.board.set_cough("fr", "fr1", False)
    mark = len(tap.blocks)
    booths.run(10)
    assert np.allclose(tap.level(FR1_HZ)[mark + 2 :], 1.0, atol=0.001)


def test_dropped_live_seat_hands_its_channel_to_the_floor(booths):
    tap = ChannelTap("fr")
    booths.engine.add_tap(tap)
    booths.board.set_mic("fr", "fr1", True)
    booths.run(20)
    booths.silent.add("seat:fr:fr1")  # the seat's packets stop
    mark = len(tap.blocks)
    booths.run(60)
    floor = tap.level(FLOOR_HZ)[mark:]
    full_at = next(i for i, a in enumerate(floor) if a > 0.95)
    assert full_at <= 50, f"the floor is back after {full_at * 20} ms"
    assert all(a > 0.95 for a in floor[full_at:])
    assert not booths.board.seat("fr", "fr1").live


def test_return_feed_relay_partner_and_never_own_voice(booths):
    sinks = {seat: Collector() for seat in ("fr1", "fr2")}
    for seat, sink in sinks.items():
        booths.board.attach_return("fr", seat, sink)
    booths.engine.set_floor_language("es")  # so that EN carries its booth, not the floor
    booths.board.set_mic("en", "en1", True)
    booths.board.set_source("fr", "fr1", "en")  # relay from EN
    booths.run(60)
    fr1 = decode_packets(sinks["fr1"].packets)[SAMPLES_PER_BLOCK * 10 :]
    assert tone_db(fr1, EN_HZ) > -16, "hears the EN seat"
    assert tone_db(fr1, FLOOR_HZ) == pytest.approx(tone_db(fr1, EN_HZ) - 20, abs=2)
    assert tone_db(fr1, FR1_HZ) < -60, "never its own voice"
    # the partner at the partner level (-15 dB)
    assert tone_db(fr1, FR2_HZ) == pytest.approx(20 * np.log10(AMP) - 15, abs=2)
    fr2 = decode_packets(sinks["fr2"].packets)[SAMPLES_PER_BLOCK * 10 :]
    assert tone_db(fr2, FLOOR_HZ) > -16 and tone_db(fr2, EN_HZ) < -60  # auto: the floor
    assert tone_db(fr2, FR2_HZ) < -60
    # partner off, volume down 6 dB
    booths.board.set_return("fr", "fr1", partner_db=-80, volume_db=-6)
    mark = len(sinks["fr1"].packets)
    booths.run(40)
    fr1 = decode_packets(sinks["fr1"].packets[mark:])[SAMPLES_PER_BLOCK * 5 :]
    assert tone_db(fr1, FR2_HZ) < -60
    assert tone_db(fr1, EN_HZ) == pytest.approx(20 * np.log10(AMP) - 6, abs=1)


def test_tone_control_shapes_bass_and_treble():
    proc = ReturnProcessor()
    proc.configure(ReturnSpec(bass_db=-12.0, treble_db=6.0))
    rate = 48000
    low = np.concatenate([proc.process(sine(100, 960, 0.1, i * 960)) for i in range(50)])
    proc2 = ReturnProcessor()
    proc2.configure(ReturnSpec(bass_db=-12.0, treble_db=6.0))
    high = np.concatenate([proc2.process(sine(8000, 960, 0.1, i * 960)) for i in range(50)])
    assert tone_db(low[rate // 2 :], 100) == pytest.approx(-20 - 12, abs=1.5)
    assert tone_db(high[rate // 2 :], 8000) == pytest.approx(-20 + 6, abs=1.5)
    flat = ReturnProcessor()
    block = sine(1000, 960, 0.1)
    assert np.array_equal(flat.process(block), block), "flat and under the ceiling: untouched"


def test_limiter_holds_its_ceiling_during_a_30_db_burst():
    limiter = Limiter()
    quiet, loud = 0.02, 0.02 * 10 ** (30 / 20)  # +30 dB, and then twice full scale with gain
    out = []
    for i in range(150):
        amp = quiet if i < 30 or i >= 50 else loud * 3
        out.append(limiter.process(sine(1000, 960, amp, i * 960)))
    y = np.concatenate(out)
    assert np.max(np.abs(y)) <= CEILING + 1e-6
    assert np.allclose(y[: 30 * 960], sine(1000, 30 * 960, quiet)), "below the ceiling: untouched"
    burst = y[30 * 960 : 50 * 960]
    assert 20 * np.log10(np.max(np.abs(burst))) == pytest.approx(CEILING_DB, abs=0.5)
    # after the burst the gain recovers (release time constant 0.4 s; 2 s later)
    assert tone_amplitude(y[-10 * 960 :], 1000) == pytest.approx(quiet, rel=0.05)


def test_return_feed_never_exceeds_the_ceiling_through_opus(booths):
    sink = Collector()
    booths.board.attach_return("fr", "fr1", sink)
    booths.board.set_return("fr", "fr1", volume_db=10)
    booths.amplitude["room"] = 0.01
    booths.run(50)
    booths.amplitude["room"] = 0.01 * 10 ** (30 / 20) * 3  # +30 dB and more: over full scale
    booths.run(50)
    pcm = decode_packets(sink.packets)
    peak_db = 20 * np.log10(np.max(np.abs(pcm)))
    assert peak_db < CEILING_DB + 0.5, peak_db  # Opus may overshoot a peak by a fraction of a dB
    quiet = pcm[20 * 960 : 45 * 960]
    assert tone_db(quiet, FLOOR_HZ) == pytest.approx(20 * np.log10(0.01) + 10, abs=1)
