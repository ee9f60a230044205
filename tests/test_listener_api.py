"""Listener API with real aiortc peers: event status, the original underneath, QR and room page."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
import segno
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from router.app import create_app
from router.signalling.peers import SessionKind
from tests.signals import RATE
from tests.webrtc_clients import Recorder, listen, publish

pytestmark = pytest.mark.webrtc

FLOOR_HZ, FR_HZ, ES_HZ = 440.0, 660.0, 880.0
AUDIBLE = -25.0  # dBFS: a 0.3-amplitude sine is about -10.5
ABSENT = -50.0
FR_TOKEN = {"Authorization": "Bearer booth-fr-demo-token"}
ES_TOKEN = {"Authorization": "Bearer booth-es-demo-token"}


def tone_db(signal: np.ndarray, freq: float) -> float:
    """Level (dBFS) of the sine near `freq`, from the energy within ±0.8 % of it.

    A source buffer may resample a backlogged source by up to 0.5 % (drift compensation),
    which moves its tone a few Hz; summing the band's energy also avoids the window's
    scalloping loss for a tone between two bins.
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.size == 0:
        return -180.0
    window = np.hanning(x.size)
    power = np.abs(np.fft.rfft(x * window)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / RATE)
    band = (freqs > freq * 0.992) & (freqs < freq * 1.008)
    amplitude = np.sqrt(4 * power[band].sum() / (x.size * np.sum(window**2)))
    return float(20 * np.log10(max(amplitude, 1e-9)))


@dataclass
class TwoTrackListener:
    """A WHEP listener whose offer has two recvonly audio m-lines, as the listener page's."""

    pc: RTCPeerConnection
    location: str
    main: Recorder
    under: Recorder

    @property
    def session_id(self) -> str:
        return self.location.rsplit("/", 1)[-1]

    async def close(self) -> None:
        await self.pc.close()
        for rec in (self.main, self.under):
            if rec.task:
                rec.task.cancel()


async def listen_two(
    http: httpx.AsyncClient, channel: str, underneath: bool = False
) -> TwoTrackListener:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    first = pc.addTransceiver("audio", direction="recvonly")
    second = pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    resp = await http.post(
        f"/whep/{channel}",
        params={"underneath": "true"} if underneath else None,
        content=pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp"},
    )
    if resp.status_code != 201:
        await pc.close()
        raise AssertionError(f"{resp.status_code} {resp.text}")
    assert resp.text.count("m=audio ") == 2
    await pc.setRemoteDescription(RTCSessionDescription(sdp=resp.text, type="answer"))
    main, under = Recorder(), Recorder()
    main.start(first.receiver.track)
    under.start(second.receiver.track)
    return TwoTrackListener(pc, resp.headers["location"], main, under)


async def mic(http: httpx.AsyncClient, booth: str, seat: str, on: bool, headers) -> None:
    r = await http.post(f"/api/booths/{booth}/seats/{seat}/mic", json={"on": on}, headers=headers)
    assert r.status_code == 200, r.text


async def switch(http: httpx.AsyncClient, location: str, body: dict) -> httpx.Response:
    return await http.post(f"{location}/channel", json=body)


@pytest.fixture
async def event(server):
    """Floor 440 Hz; FR seat 660 Hz live; ES seat 880 Hz connected but not live."""
    http = server.http
    floor = await publish(http, "/whip/floor", "floor-demo-token", FLOOR_HZ)
    fr = await publish(http, "/whip/booth/fr/fr1", "booth-fr-demo-token", FR_HZ)
    es = await publish(http, "/whip/booth/es/es1", "booth-es-demo-token", ES_HZ)
    await server.wait_flowing({"room", "seat:fr:fr1", "seat:es:es1"})
    await mic(http, "fr", "fr1", True, FR_TOKEN)
    yield server
    for peer in (floor, fr, es):
        await peer.close()


async def heard_now(listener: TwoTrackListener, blocks: int = 50) -> tuple:
    """Skip what was in flight at a switch, then what each track carries; `under` may be empty."""
    await listener.main.wait_for(listener.main.mark() + 10)
    under_mark = listener.under.mark()
    main = await listener.main.collect(blocks)
    return main, listener.under.since(under_mark)


# --------------------------------------------------------------------------- status ---


async def test_status_says_whether_the_event_started_and_who_listens(server):
    http = server.http
    status = (await http.get("/api/status")).json()
    assert set(status) == {"started", "channels"}
    assert status["started"] is False
    assert set(status["channels"]) == {"floor", "en", "fr", "ne", "es"}
    assert all(c == {"live_seat": False, "listeners": 0} for c in status["channels"].values())

    fr = await publish(http, "/whip/booth/fr/fr1", "booth-fr-demo-token", FR_HZ)
    floor = None
    peers = []
    try:
        await server.wait_flowing({"seat:fr:fr1"})
        await mic(http, "fr", "fr1", True, FR_TOKEN)
        status = (await http.get("/api/status")).json()
        assert status["started"] is False, "an interpreter alone is not the event"
        assert status["channels"]["fr"]["live_seat"] is True

        floor = await publish(http, "/whip/floor", "floor-demo-token", FLOOR_HZ)
        await server.wait_flowing({"room"})
        one = await listen(http, "fr")
        two = await listen_two(http, "fr", underneath=True)
        peers = [one, two]
        status = (await http.get("/api/status")).json()
        assert status["started"] is True
        # a listener with the original underneath is still one listener
        assert status["channels"]["fr"] == {"live_seat": True, "listeners": 2}
        assert status["channels"]["es"] == {"live_seat": False, "listeners": 0}

        r = await switch(http, two.location, {"channel": "es"})
        assert r.json() == {"channel": "es", "underneath": True}
        status = (await http.get("/api/status")).json()
        assert status["channels"]["fr"]["listeners"] == 1
        assert status["channels"]["es"]["listeners"] == 1
    finally:
        for peer in peers:
            await peer.close()
        for pub in (fr, floor):
            if pub is not None:
                await pub.close()


# ----------------------------------------------------------------------- underneath ---


async def test_underneath_sends_voice_and_floor_on_separate_tracks(event):
    server = event
    http = server.http
    peers = server.runtime.peers
    listener = await listen_two(http, "fr")
    try:
        session = peers.get(listener.session_id)
        # Off (the default): the channel as the event mixes it; the second track gets nothing.
        main, under = await heard_now(listener)
        assert tone_db(main, FR_HZ) > AUDIBLE
        assert tone_db(main, FLOOR_HZ) - tone_db(main, FR_HZ) == pytest.approx(-20.0, abs=3.0)
        assert under.size == 0
        assert server.runtime.engine.feed_of(session.under) is None

        r = await switch(http, listener.location, {"underneath": True})
        assert r.status_code == 200, r.text
        assert r.json() == {"channel": "fr", "underneath": True}
        main, under = await heard_now(listener)
        assert tone_db(main, FR_HZ) > AUDIBLE
        assert tone_db(main, FLOOR_HZ) < ABSENT, "the first track is the interpreter alone"
        assert under.size > 0
        assert tone_db(under, FLOOR_HZ) > AUDIBLE
        assert tone_db(under, FR_HZ) < ABSENT, "the second track is the floor alone"

        # ES has nobody live: the channel is the floor, the second track sends nothing
        # (no doubled floor, no bandwidth).
        r = await switch(http, listener.location, {"channel": "es"})
        assert r.json() == {"channel": "es", "underneath": True}
        main, under = await heard_now(listener)
        assert tone_db(main, FLOOR_HZ) > AUDIBLE
        assert tone_db(main, ES_HZ) < ABSENT
        assert under.size == 0

        # ES goes live while we listen: the floor comes back on the second track by itself.
        await mic(http, "es", "es1", True, ES_TOKEN)
        main, under = await heard_now(listener)
        assert tone_db(main, ES_HZ) > AUDIBLE
        assert tone_db(main, FLOOR_HZ) < ABSENT
        assert tone_db(under, FLOOR_HZ) > AUDIBLE
        assert tone_db(under, ES_HZ) < ABSENT

        r = await switch(http, listener.location, {"channel": "fr", "underneath": False})
        assert r.json() == {"channel": "fr", "underneath": False}
        main, under = await heard_now(listener)
        assert tone_db(main, FR_HZ) > AUDIBLE
        assert tone_db(main, FLOOR_HZ) - tone_db(main, FR_HZ) == pytest.approx(-20.0, abs=3.0)
        assert under.size == 0
    finally:
        await listener.close()


async def test_underneath_can_start_with_the_session(event):
    listener = await listen_two(event.http, "fr", underneath=True)
    try:
        main, under = await heard_now(listener)
        assert tone_db(main, FR_HZ) > AUDIBLE
        assert tone_db(main, FLOOR_HZ) < ABSENT
        assert tone_db(under, FLOOR_HZ) > AUDIBLE
    finally:
        await listener.close()


async def encodes_per_tick(engine) -> float:
    """Encodes per engine tick over a short window (counts, not time, are compared)."""
    ticks, encodes = engine.stats.ticks, engine.stats.encodes
    while engine.stats.ticks < ticks + 25:  # noqa: ASYNC110 (the engine has no tick event)
        await asyncio.sleep(0.05)
    return (engine.stats.encodes - encodes) / (engine.stats.ticks - ticks)


async def test_underneath_is_encoded_once_per_feed_not_per_listener(event):
    server = event
    engine = server.runtime.engine
    first = await listen_two(server.http, "fr", underneath=True)
    more: list[TwoTrackListener] = []
    try:
        await first.under.wait_for(10)
        with_one = await encodes_per_tick(engine)
        more = [await listen_two(server.http, "fr", underneath=True) for _ in range(3)]
        for listener in more:
            await listener.under.wait_for(10)
        with_four = await encodes_per_tick(engine)
        assert with_four == with_one, "more listeners of the same feeds cost no encode"
        status = (await server.http.get("/api/status")).json()
        assert status["channels"]["fr"]["listeners"] == 4
    finally:
        for listener in [first, *more]:
            await listener.close()


# ----------------------------------------------------------------------- bad input ---


async def test_bad_switch_and_underneath_requests_are_clear_errors(event):
    server = event
    http = server.http
    one = await listen(http, "fr")  # a WHEP client of the wild: one m-line
    two = await listen_two(http, "es")
    try:
        await one.heard.wait_for(10)
        for body, code in (
            ({"underneath": True}, 400),
            ({}, 400),
            ({"underneath": "yes"}, 400),
            ({"chanel": "es"}, 400),
            ({"channel": "xx"}, 404),
            ({"channel": 3}, 400),
        ):
            r = await switch(http, one.location, body)
            assert r.status_code == code, (body, r.text)
            assert set(r.json()) == {"error", "detail"}
        r = await switch(http, one.location, {"underneath": True})
        assert "two audio m-lines" in r.json()["detail"]
        r = await http.post(
            "/whep/fr?underneath=true",
            content=await _one_line_offer(),
            headers={"Content-Type": "application/sdp"},
        )
        assert r.status_code == 400 and "two audio m-lines" in r.json()["detail"], r.text
        r = await http.post(
            "/whep/fr?underneath=perhaps",
            content="v=0",
            headers={"Content-Type": "application/sdp"},
        )
        assert r.status_code == 400 and r.json()["error"] == "bad_request"
        assert server.runtime.peers.count(SessionKind.LISTENER) == 2

        # the documented one-field switch works as before, and no session was disturbed
        r = await switch(http, one.location, {"channel": "es"})
        assert r.status_code == 200 and r.json() == {"channel": "es"}
        assert tone_db(await one.heard.collect(40), FLOOR_HZ) > AUDIBLE
        main, under = await heard_now(two, 40)
        assert tone_db(main, FLOOR_HZ) > AUDIBLE and under.size == 0
    finally:
        await one.close()
        await two.close()


async def _one_line_offer() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


# ------------------------------------------------------------------------ QR, room ---


def qr_modules(svg: str) -> set[tuple[int, int]]:
    """The dark modules of a segno SVG path: runs `h n` along rows drawn at y + 0.5."""
    path = re.search(r"<path class=\"qrline\"[^>]* d=\"([^\"]+)\"", svg)
    assert path, svg[:300]
    dark: set[tuple[int, int]] = set()
    x = y = 0.0
    for cmd, args in re.findall(r"([MmHh])([-\d. ]+)", path.group(1)):
        nums = [float(n) for n in args.split()]
        if cmd == "M":
            x, y = nums
        elif cmd == "m":
            x, y = x + nums[0], y + nums[1]
        else:
            n = int(nums[0])
            dark |= {(int(x) + i, int(y)) for i in range(n)}
            x += n
    return dark


def expected_modules(url: str, border: int = 4) -> set[tuple[int, int]]:
    matrix = segno.make(url, error="m", micro=False).matrix
    return {
        (c + border, r + border) for r, row in enumerate(matrix) for c, v in enumerate(row) if v
    }


async def test_qr_code_encodes_the_listener_link(server):
    http = server.http
    r = await http.get("/api/qr.svg")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert qr_modules(r.text) == expected_modules(f"{server.url}/")
    r = await http.get("/api/qr.svg", params={"lang": "ne"})
    assert qr_modules(r.text) == expected_modules(f"{server.url}/?lang=ne")
    for bad in ("xx", "../fr", "FR"):
        r = await http.get("/api/qr.svg", params={"lang": bad})
        assert r.status_code == 404 and r.json()["error"] == "not_found", bad


async def test_room_page_shows_event_qr_link_and_channels(server):
    r = await server.http.get("/room")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    cfg = server.runtime.config
    assert cfg.event.name in page
    assert "<svg" in page
    short = server.url.split("://", 1)[1]
    assert f">{short}</a>" in page
    for ch in cfg.channels.values():
        assert ch.name in page
    assert (await server.http.get("/room", params={"lang": "xx"})).status_code == 404


async def test_public_url_setting_is_what_the_qr_code_links_to(event_config):
    app = create_app(event_config, public_url="https://interp.example.org/live/")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8000") as http:
        r = await http.get("/api/qr.svg", params={"lang": "es"})
        assert qr_modules(r.text) == expected_modules("https://interp.example.org/live/?lang=es")
        r = await http.get("/room")
        assert ">interp.example.org/live</a>" in r.text
        assert "10.0.0.5" not in r.text


async def test_openapi_documents_the_listener_endpoints(server):
    spec = (await server.http.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in ("/api/status", "/api/qr.svg", "/whep/{channel}"):
        assert path in paths, path
    listen_params = {p["name"] for p in paths["/whep/{channel}"]["post"]["parameters"]}
    assert "underneath" in listen_params
    switch = paths["/whep/sessions/{session_id}/channel"]["post"]
    assert "underneath" in switch["description"]
    schemas = spec["components"]["schemas"]
    assert {"channel", "underneath"} <= set(schemas["ChannelNow"]["properties"])
    assert {"started", "channels"} <= set(schemas["EventStatus"]["properties"])
