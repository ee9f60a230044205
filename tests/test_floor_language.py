"""Floor language: the channel in the language spoken on the floor carries the floor."""

import numpy as np
import pytest

from router.media.clock import ManualClock
from router.media.engine import Engine, EngineSettings, Feed, Layer, SourceRole
from router.media.inputs import SAMPLES_PER_BLOCK
from router.media.mixer import FLOOR, MixPlan, build_matrix, mix
from tests.signals import decode_packets, sine, tone_amplitude, tone_db

N = 4800
CHANNELS = (FLOOR, "en", "fr")
ROOM, SEAT_EN, SEAT_FR = 440.0, 550.0, 660.0
SOURCES = ["room", "seat-en", "seat-fr"]
TECH = {"Authorization": "Bearer technician-demo-token"}


def blocks() -> np.ndarray:
    return np.stack([sine(f, N, 0.2) for f in (ROOM, SEAT_EN, SEAT_FR)])


def test_floor_language_channel_carries_the_floor_even_with_a_seat_live():
    plan = MixPlan(
        channels=CHANNELS,
        floor_inputs=frozenset({"room"}),
        live={"en": "seat-en", "fr": "seat-fr"},
        bed_gain=0.1,
        auto_floor=frozenset({"fr"}),
    )
    matrix = build_matrix(plan, SOURCES)
    out = mix(blocks(), matrix)
    fr = out[CHANNELS.index("fr")]
    assert tone_amplitude(fr, ROOM) == pytest.approx(0.2, rel=0.02), "the floor at full level"
    assert tone_amplitude(fr, SEAT_FR) < 1e-4, "the FR booth is not heard while French is spoken"
    en = out[CHANNELS.index("en")]
    assert tone_amplitude(en, SEAT_EN) == pytest.approx(0.2, rel=0.02)
    assert tone_amplitude(en, ROOM) == pytest.approx(0.02, rel=0.05), "EN is interpreted"
    assert "fr" not in matrix.live and matrix.live["en"] == 1


class Collector:
    def __init__(self):
        self.packets = []

    def offer(self, packet):
        self.packets.append(packet)


def test_engine_follows_the_floor_language():
    engine = Engine(
        EngineSettings(channels=CHANNELS, languages={"en": "en", "fr": "fr"}, floor_language="en"),
        ManualClock(),
    )
    tones = {"room": ROOM, "seat-en": SEAT_EN, "seat-fr": SEAT_FR}
    engine.add_source("room", SourceRole.ROOM)
    engine.add_source("seat-en", SourceRole.SEAT)
    engine.add_source("seat-fr", SourceRole.SEAT)
    engine.set_live("en", "seat-en")
    engine.set_live("fr", "seat-fr")
    sinks = {ch: Collector() for ch in ("en", "fr")}
    for ch, sink in sinks.items():
        engine.subscribe(sink, Feed(ch))
    under = Collector()
    engine.subscribe(under, Feed("en", layer=Layer.UNDER))

    def run(start: int, count: int) -> dict[str, np.ndarray]:
        marks = {ch: len(s.packets) for ch, s in sinks.items()}
        for tick in range(start, start + count):
            for sid, freq in tones.items():
                block = sine(freq, SAMPLES_PER_BLOCK, 0.2, tick * SAMPLES_PER_BLOCK)
                engine.buffer(sid).push(block)
            engine.tick(tick)
        return {
            ch: decode_packets(s.packets[marks[ch] :])[SAMPLES_PER_BLOCK * 10 :]
            for ch, s in sinks.items()
        }

    assert engine.auto_floor_channels() == {"en"}
    heard = run(0, 50)
    assert tone_db(heard["en"], ROOM) > -16 and tone_db(heard["en"], SEAT_EN) < -50
    assert tone_db(heard["fr"], SEAT_FR) > -16
    assert not under.packets, "nothing goes under a channel that carries the floor itself"

    engine.set_floor_language("fr")  # a French-speaking delegate takes the floor
    assert engine.auto_floor_channels() == {"fr"}
    heard = run(50, 50)
    assert tone_db(heard["fr"], ROOM) > -16 and tone_db(heard["fr"], SEAT_FR) < -50
    assert tone_db(heard["en"], SEAT_EN) > -16
    assert tone_db(heard["en"], ROOM) == pytest.approx(tone_db(heard["en"], SEAT_EN) - 20, abs=2)
    assert engine.live_source("fr") == "seat-fr", "the booth's state is untouched"


async def test_floor_language_api(server):
    http = server.http
    assert (await http.get("/api/floor")).json() == {"language": "en", "auto_floor": ["en"]}
    r = await http.put("/api/floor/language", json={"language": "ne"}, headers=TECH)
    assert r.status_code == 200, r.text
    assert r.json() == {"language": "ne", "auto_floor": ["ne"]}
    assert (await http.get("/api/event")).json()["floor_language"] == "ne"
    assert server.runtime.engine.auto_floor_channels() == {"ne"}
    # a language without a channel: every booth interprets
    r = await http.put("/api/floor/language", json={"language": "ar"}, headers=TECH)
    assert r.json() == {"language": "ar", "auto_floor": []}

    r = await http.put("/api/floor/language", json={"language": "fr"})
    assert r.status_code == 401
    r = await http.put(
        "/api/floor/language",
        json={"language": "fr"},
        headers={"Authorization": "Bearer floor-demo-token"},
    )
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    for bad in ({"language": "French!"}, {"lang": "fr"}, {"language": 3}):
        r = await http.put("/api/floor/language", json=bad, headers=TECH)
        assert r.status_code == 400 and r.json()["error"] == "bad_request", bad
    assert server.runtime.engine.floor_language == "ar"
