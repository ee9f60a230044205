"""The engine on a manual clock: real Opus packets, checked by FFT after decoding."""

import asyncio

import numpy as np
import pytest

from router.media.clock import ManualClock
from router.media.engine import Engine, EngineSettings, Feed, Layer, SourceRole
from router.media.inputs import SAMPLES_PER_BLOCK
from tests.signals import decode_packets, sine, tone_db

CHANNELS = ("floor", "en", "fr", "es")
TONES = {"room": 440.0, "panel-a": 550.0, "seat-fr": 660.0, "seat-es": 880.0}
ROLES = {
    "room": SourceRole.ROOM,
    "panel-a": SourceRole.PANELLIST,
    "seat-fr": SourceRole.SEAT,
    "seat-es": SourceRole.SEAT,
}


class Collector:
    def __init__(self):
        self.packets = []

    def offer(self, packet):
        self.packets.append(packet)


def make_engine() -> Engine:
    engine = Engine(EngineSettings(channels=CHANNELS, bed_gain=0.1), ManualClock())
    for sid, role in ROLES.items():
        engine.add_source(sid, role)
    return engine


def run_ticks(engine: Engine, start: int, count: int) -> None:
    for tick in range(start, start + count):
        for sid, freq in TONES.items():
            engine.buffer(sid).push(sine(freq, SAMPLES_PER_BLOCK, 0.2, tick * SAMPLES_PER_BLOCK))
        engine.tick(tick)


def steady(packets) -> np.ndarray:
    return decode_packets(packets)[SAMPLES_PER_BLOCK * 10 :]


def test_channels_carry_what_they_must():
    engine = make_engine()
    engine.set_live("fr", "seat-fr")
    sinks = {ch: Collector() for ch in CHANNELS}
    for ch, sink in sinks.items():
        engine.subscribe(sink, Feed(ch))
    run_ticks(engine, 0, 50)
    fr = steady(sinks["fr"].packets)
    assert tone_db(fr, 660) > -16
    assert tone_db(fr, 440) == pytest.approx(tone_db(fr, 660) - 20, abs=2)
    assert tone_db(fr, 880) < -50
    for ch in ("floor", "en", "es"):
        pcm = steady(sinks[ch].packets)
        assert tone_db(pcm, 440) > -16 and tone_db(pcm, 550) > -16
        assert tone_db(pcm, 660) < -50 and tone_db(pcm, 880) < -50


def test_one_encode_per_feed_shared_by_all_consumers():
    engine = make_engine()
    sinks = [Collector() for _ in range(20)]
    for i, sink in enumerate(sinks):
        engine.subscribe(sink, Feed("fr" if i % 2 else "es"))
    run_ticks(engine, 0, 10)
    assert engine.stats.encodes == 20  # two feeds x ten ticks
    assert sinks[1].packets[3] is sinks[3].packets[3]


def test_only_consumed_channels_are_encoded():
    engine = make_engine()
    run_ticks(engine, 0, 10)
    assert engine.stats.encodes == 0


def test_pts_follow_the_tick_counter_across_a_switch():
    engine = make_engine()
    engine.set_live("fr", "seat-fr")
    sink = Collector()
    engine.subscribe(sink, Feed("fr"))
    run_ticks(engine, 0, 30)
    engine.subscribe(sink, Feed("es"))
    run_ticks(engine, 30, 30)
    assert [p.pts for p in sink.packets] == [t * SAMPLES_PER_BLOCK for t in range(60)]
    after = decode_packets(sink.packets[40:])
    assert tone_db(after, 440) > -16 and tone_db(after, 660) < -40


def test_return_feeds_never_carry_the_own_voice():
    engine = make_engine()
    engine.set_live("fr", "seat-fr")
    panel = Collector()
    seat_on_own_channel = Collector()
    seat_on_floor = Collector()
    engine.subscribe(panel, Feed("floor", minus="panel-a"))
    engine.subscribe(seat_on_own_channel, Feed("fr", minus="seat-fr"))
    engine.subscribe(seat_on_floor, Feed("floor", minus="seat-fr"))
    run_ticks(engine, 0, 50)
    p = steady(panel.packets)
    assert tone_db(p, 550) < -45 and tone_db(p, 440) > -16
    s = steady(seat_on_own_channel.packets)
    assert tone_db(s, 660) < -45 and tone_db(s, 440) > -40
    # a seat's mix-minus of the floor is the floor itself: shared with plain floor listeners
    assert engine.stats.encodes == 50 * 3


def test_missing_source_is_silence_not_a_wait():
    engine = make_engine()
    sink = Collector()
    engine.subscribe(sink, Feed("floor"))
    for tick in range(20):  # only the panellist delivers
        engine.buffer("panel-a").push(sine(550, SAMPLES_PER_BLOCK, 0.2, tick * 960))
        engine.tick(tick)
    assert len(sink.packets) == 20
    pcm = steady(sink.packets)
    assert tone_db(pcm, 550) > -16 and tone_db(pcm, 440) < -50


async def test_a_failing_consumer_does_not_stop_the_engine():
    clock = ManualClock()
    engine = make_engine()

    class Broken:
        def offer(self, packet):
            raise RuntimeError("boom")

    good = Collector()
    engine.subscribe(Broken(), Feed("floor"))
    engine.subscribe(good, Feed("floor"))
    engine.pacer = type(engine.pacer)(clock)
    task = asyncio.create_task(engine.run())
    await asyncio.sleep(0)
    for _ in range(25):
        await clock.advance(0.02)
    task.cancel()
    assert len(good.packets) == 26
    assert engine.stats.errors == 26


def test_unknown_channel_is_refused():
    engine = make_engine()
    with pytest.raises(KeyError):
        engine.subscribe(Collector(), Feed("xx"))


def test_layers_voice_and_under_share_encodes_and_stay_silent_when_unneeded():
    engine = make_engine()
    engine.set_live("fr", "seat-fr")
    voice, under, under_es, plain_floor = Collector(), Collector(), Collector(), Collector()
    engine.subscribe(voice, Feed("fr", layer=Layer.VOICE))
    engine.subscribe(under, Feed("fr", layer=Layer.UNDER))
    engine.subscribe(under_es, Feed("es", layer=Layer.UNDER))
    engine.subscribe(plain_floor, Feed("floor"))
    run_ticks(engine, 0, 50)
    v = steady(voice.packets)
    assert tone_db(v, 660) > -16 and tone_db(v, 440) < -45, "the seat alone, no bed"
    u = steady(under.packets)
    assert tone_db(u, 440) > -16 and tone_db(u, 660) < -45, "the floor under FR"
    assert under.packets[5] is plain_floor.packets[5], "the floor is encoded once"
    assert under_es.packets == [], "nobody is live on ES: nothing to put under it"
    assert engine.stats.encodes == 50 * 2


def test_taps_see_every_tick_and_a_failing_tap_is_isolated():
    engine = make_engine()
    seen = []

    class Meter:
        def on_tick(self, tick, matrix, blocks, mixed):
            seen.append((tick, mixed.shape, float(np.abs(mixed[matrix.row("floor")]).max())))

    class Broken:
        def on_tick(self, tick, matrix, blocks, mixed):
            raise RuntimeError("boom")

    engine.add_tap(Broken())
    engine.add_tap(Meter())
    run_ticks(engine, 0, 10)
    assert [t for t, _, _ in seen] == list(range(10))
    assert seen[-1][1] == (len(CHANNELS), SAMPLES_PER_BLOCK)
    assert seen[-1][2] > 0.3  # room + panellist, 0.2 each
    assert engine.stats.errors == 10


async def test_ticks_follow_the_room_feed_and_the_other_inputs_keep_up():
    """With follow_room, each tick runs the moment the room's block arrives (the floor waits
    for no tick), while a seat sending at its own phase still fills every tick."""
    clock = ManualClock()
    engine = Engine(EngineSettings(channels=CHANNELS, bed_gain=0.1, follow_room=True), clock)
    room = engine.add_source("room", SourceRole.ROOM)
    seat = engine.add_source("seat-fr", SourceRole.SEAT)
    engine.set_live("fr", "seat-fr")
    assert engine.lead == "room"
    sinks = {ch: Collector() for ch in ("floor", "fr")}
    for ch, sink in sinks.items():
        engine.subscribe(sink, Feed(ch))
    rng = np.random.default_rng(3)
    room_pushes: list[float] = []
    ticks: list[float] = []

    class Times:
        def on_tick(self, tick, matrix, blocks, mixed):
            ticks.append(clock.now())

    engine.add_tap(Times())

    async def send(buffer, freq: float, phase: float, pushes: list[float] | None) -> None:
        for n in range(500):
            await clock.sleep_until(phase + n * 0.02 + rng.uniform(-0.003, 0.003))
            if pushes is not None:
                pushes.append(clock.now())
            buffer.push(sine(freq, SAMPLES_PER_BLOCK, 0.2, n * SAMPLES_PER_BLOCK))

    tasks = [
        asyncio.create_task(send(room, 440.0, 0.0137, room_pushes)),
        asyncio.create_task(send(seat, 660.0, 0.0041, None)),
        asyncio.create_task(engine.run()),
    ]
    for _ in range(3):
        await asyncio.sleep(0)
    try:
        await clock.advance(1.0)
        seat_underruns = seat.stats.underruns
        await clock.advance(8.9)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert engine.pacer.following and engine.pacer.lead_timeouts == 0
    # from the room's first block on, every tick ran at the very moment one of its blocks came
    first = room_pushes[0]
    assert {round(t, 9) for t in ticks if t >= first} <= {round(t, 9) for t in room_pushes}
    assert room.stats.concealed == 0
    assert seat.stats.underruns == seat_underruns, "the seat's cushion absorbs the room's jitter"
    floor = steady(sinks["floor"].packets)
    assert tone_db(floor, 440) > -16 and tone_db(floor, 660) < -50
    fr = steady(sinks["fr"].packets)
    assert tone_db(fr, 660) > -16
    assert tone_db(fr, 440) == pytest.approx(tone_db(fr, 660) - 20, abs=2)


def test_the_lead_is_the_first_room_input_with_a_receive_buffer():
    engine = Engine(EngineSettings(channels=CHANNELS, follow_room=True), ManualClock())
    engine.add_source("seat-fr", SourceRole.SEAT)
    engine.add_source("panel-a", SourceRole.PANELLIST)
    assert engine.lead is None
    desk = engine.add_source("desk", SourceRole.ROOM)
    second = engine.add_source("room", SourceRole.ROOM)
    assert engine.lead == "desk"
    # a paced buffer plays its first block at once; an ordinary one waits for two
    second.push(sine(440, SAMPLES_PER_BLOCK))
    assert not second.ready
    engine.remove_source("desk")
    assert engine.lead == "room" and second.ready
    desk.push(sine(440, SAMPLES_PER_BLOCK))
    assert not desk.ready, "no longer the lead: back to its cushion of two blocks"

    class Player:  # makes its own blocks when pulled: nothing to follow
        stats = second.stats
        depth = 0

        def pull(self):
            return None

    engine.attach("room", SourceRole.ROOM, Player())
    assert engine.lead is None and not engine.pacer.following
    off = Engine(EngineSettings(channels=CHANNELS), ManualClock())
    off.add_source("room", SourceRole.ROOM)
    assert off.lead is None
