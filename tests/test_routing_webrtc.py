"""End to end with real aiortc peers on loopback: who hears which tone, through real Opus."""

import numpy as np
import pytest

from tests.signals import level_difference_db, steady_tone_db, tone_db
from tests.webrtc_clients import listen, publish

pytestmark = pytest.mark.webrtc

FLOOR_HZ, FR_HZ, ES_HZ = 440.0, 660.0, 880.0
AUDIBLE = -25.0  # dBFS: a 0.3-amplitude sine is about -10.5
ABSENT = -50.0


@pytest.fixture
async def event(server):
    http = server.http
    floor = await publish(http, "/whip/floor", "floor-demo-token", FLOOR_HZ)
    fr = await publish(http, "/whip/booth/fr/fr1", "booth-fr-demo-token", FR_HZ)
    es = await publish(http, "/whip/booth/es/es1", "booth-es-demo-token", ES_HZ)
    await server.wait_flowing({"room", "seat:fr:fr1", "seat:es:es1"})
    r = await http.post(
        "/api/booths/fr/seats/fr1/mic",
        json={"on": True},
        headers={"Authorization": "Bearer booth-fr-demo-token"},
    )
    assert r.status_code == 200, r.text
    yield server, floor, fr, es
    for peer in (floor, fr, es):
        await peer.close()


async def test_each_channel_carries_what_it_must(event):
    server, _floor, fr_seat, es_seat = event
    listeners = {ch: await listen(server.http, ch) for ch in ("floor", "en", "fr", "ne", "es")}
    try:
        heard = {}
        for peer in listeners.values():
            await peer.heard.wait_for(25)  # settle: 0.5 s
        for ch, peer in listeners.items():
            heard[ch] = await peer.heard.collect(50)
        fr = heard["fr"]
        assert steady_tone_db(fr, FR_HZ) > AUDIBLE
        bed = level_difference_db(fr, FLOOR_HZ, FR_HZ)
        assert bed == pytest.approx(-20.0, abs=3.0), "the floor runs under FR at the bed level"
        assert tone_db(fr, ES_HZ) < ABSENT
        for ch in ("floor", "en", "ne", "es"):
            assert steady_tone_db(heard[ch], FLOOR_HZ) > AUDIBLE, ch
            assert tone_db(heard[ch], FR_HZ) < ABSENT, ch
            assert tone_db(heard[ch], ES_HZ) < ABSENT, f"{ch}: ES seat is not live"
        # return feeds: a seat hears the floor, never its own voice
        for seat, own in ((fr_seat, FR_HZ), (es_seat, ES_HZ)):
            back = await seat.heard.collect(40)
            assert steady_tone_db(back, FLOOR_HZ) > AUDIBLE
            assert tone_db(back, own) < ABSENT
        # only one encode per channel however many listen
        engine = server.runtime.engine
        assert engine.consumers("fr") == 1
    finally:
        for peer in listeners.values():
            await peer.close()


async def test_switch_on_same_connection_without_gap(event):
    server, *_ = event
    peer = await listen(server.http, "fr")
    try:
        await peer.heard.wait_for(25)
        before = await peer.heard.collect(25)
        assert steady_tone_db(before, FR_HZ) > AUDIBLE
        mark = peer.heard.mark()
        r = await server.http.post(f"{peer.location}/channel", json={"channel": "es"})
        assert r.status_code == 200 and r.json() == {"channel": "es"}
        await peer.heard.wait_for(mark + 40)
        after = peer.heard.since(mark, skip=10)
        assert steady_tone_db(after, FLOOR_HZ) > AUDIBLE
        assert tone_db(after, FR_HZ) < ABSENT
        # the same connection kept receiving: no arrival gap over 100 ms around the switch
        arrivals = np.array(peer.heard.arrivals[mark - 10 : mark + 30])
        assert np.diff(arrivals).max() < 0.1
        assert len(server.runtime.peers.sessions()) == 4  # 3 publishers + 1 listener
    finally:
        await peer.close()


async def test_delete_ends_sessions_and_seat_goes_off_air(event):
    server, _floor, fr_seat, _es_seat = event
    http = server.http
    peer = await listen(http, "fr")
    assert (await http.delete(peer.location)).status_code == 204
    assert server.runtime.engine.consumers("fr") == 0
    r = await http.delete(fr_seat.location, headers={"Authorization": "Bearer booth-fr-demo-token"})
    assert r.status_code == 204
    assert server.runtime.engine.live_source("fr") is None
    assert not server.runtime.board.seat("fr", "fr1").live
    await peer.close()


async def test_bad_request_does_not_disturb_other_sessions(event):
    server, *_ = event
    peer = await listen(server.http, "fr")
    try:
        await peer.heard.wait_for(10)
        for _ in range(5):
            r = await server.http.post(
                "/whep/fr", content="v=0\r\ngarbage", headers={"Content-Type": "application/sdp"}
            )
            assert r.status_code == 400
        audio = await peer.heard.collect(30)
        assert steady_tone_db(audio, FR_HZ) > AUDIBLE
    finally:
        await peer.close()
