"""Janus Streaming edges, for real: the router feeds the edge by RTP and proxies the handshake.

Janus runs from a generated config in this test's loopback-only namespace (see janus_edge.py);
an aiortc listener connects through the router's /api/listen and must hear, by FFT, the right
tone on every channel, after each switch, and again after the edge is killed and restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from router.app import create_app
from router.config import JanusEdge
from router.signalling.ice import restrict_host_candidates
from tests.conftest import RunningServer, start_server
from tests.janus_edge import (
    ADMIN_KEY,
    API_SECRET,
    ICE_ADDRESS,
    JanusProcess,
    add_ice_interface,
    free_tcp_port,
    free_udp_block,
    janus_binary,
    remove_ice_interface,
)
from tests.signals import level_difference_db, steady_tone_db
from tests.webrtc_clients import Peer, Recorder, publish

pytestmark = [pytest.mark.webrtc, pytest.mark.janus]

FLOOR_HZ, FR_HZ, NE_HZ, ES_HZ = 440.0, 660.0, 880.0, 1100.0
TONES = {"floor": FLOOR_HZ, "en": FLOOR_HZ, "fr": FR_HZ, "ne": NE_HZ, "es": ES_HZ}
AUDIBLE = -25.0  # dBFS; the interpreter arrives at about -13.5 (0.3 sine, upmix -3 dB)
ABSENT = -50.0
READY_TIMEOUT = 30.0


@pytest.fixture
def janus(tmp_path) -> JanusProcess:
    janus_binary()
    add_ice_interface()
    proc = JanusProcess(tmp_path / "janus", free_tcp_port())
    proc.write_config()
    proc.start()
    yield proc
    proc.stop()
    remove_ice_interface()


@pytest.fixture
def edge_srtp() -> bool:
    """Plain RTP to the edge; a test parametrizes it to True for SRTP."""
    return False


@pytest.fixture
async def edge_server(event_config, loopback_ice, janus, edge_srtp) -> AsyncIterator[RunningServer]:
    edge = JanusEdge(
        id="edge1",
        api_url=janus.api_url,
        api_secret=API_SECRET,
        admin_key=ADMIN_KEY,
        rtp_host="127.0.0.1",
        rtp_port_base=free_udp_block(2 * len(event_config.channels)),
        srtp=edge_srtp,
    )
    config = event_config.model_copy(update={"edges": [edge]})
    app = create_app(config, ice_hosts=["127.0.0.1"])
    srv, task, url = await start_server(app)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield RunningServer(app, url, http)
    srv.should_exit = True
    await task


@pytest.fixture
async def interpreted(edge_server) -> AsyncIterator[RunningServer]:
    """The floor at 440 Hz; FR, NE and ES seats live with their own tones; EN carries the floor."""
    http = edge_server.http
    peers: list[Peer] = [await publish(http, "/whip/floor", "floor-demo-token", FLOOR_HZ)]
    for booth, seat, hz in (("fr", "fr1", FR_HZ), ("ne", "ne1", NE_HZ), ("es", "es1", ES_HZ)):
        token = f"booth-{booth}-demo-token"
        peers.append(await publish(http, f"/whip/booth/{booth}/{seat}", token, hz))
    await edge_server.wait_flowing({"room", "seat:fr:fr1", "seat:ne:ne1", "seat:es:es1"})
    await mics_on(edge_server)
    edge = edge_server.app.state.edges.edges[0]
    await asyncio.wait_for(edge.wait_ready(), READY_TIMEOUT)
    yield edge_server
    for peer in peers:
        await peer.close()


@dataclass
class EdgeListener:
    pc: RTCPeerConnection
    session: str
    offer: str
    heard: Recorder

    async def close(self) -> None:
        await self.pc.close()
        if self.heard.task:
            self.heard.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.heard.task


async def listen_via_edge(http: httpx.AsyncClient, channel: str) -> EdgeListener:
    r = await http.post("/api/listen", json={"channel": channel})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["mode"] == "edge"
    assert API_SECRET not in r.text and ADMIN_KEY not in r.text, "edge secrets stay server-side"
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    heard = Recorder()
    pc.on("track", heard.start)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body["offer"], type="offer"))
    # libnice binds its sockets to the veth (see janus_edge.py): it can reach 127.0.0.2 but not
    # 127.0.0.1, so this peer offers 127.0.0.2 too (the process-wide patch is restored at once).
    restore = restrict_host_candidates([ICE_ADDRESS])
    try:
        await pc.setLocalDescription(await pc.createAnswer())
    finally:
        restore()
    r = await http.post(
        f"{body['session']}/answer",
        content=pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"channel": channel}
    return EdgeListener(pc, body["session"], body["offer"], heard)


async def heard_now(listener: EdgeListener, settle: int = 75, blocks: int = 100):
    """Skip `settle` blocks (the switch, the jitter buffer), then collect `blocks` (20 ms each)."""
    await listener.heard.collect(settle)
    return await listener.heard.collect(blocks)


SEATS = (("fr", "fr1"), ("ne", "ne1"), ("es", "es1"))


async def mics_on(server: RunningServer) -> None:
    for booth, seat in SEATS:
        for _ in range(50):  # a seat that stalled is "not connected" until its audio is back
            r = await server.http.post(
                f"/api/booths/{booth}/seats/{seat}/mic",
                json={"on": True},
                headers={"Authorization": f"Bearer booth-{booth}-demo-token"},
            )
            if r.status_code != 409:
                break
            await asyncio.sleep(0.1)
        assert r.status_code == 200, r.text


def all_live(server: RunningServer) -> bool:
    return all(server.runtime.engine.live_source(booth) is not None for booth, _ in SEATS)


async def hears_channel(server: RunningServer, listener: EdgeListener, channel: str) -> None:
    """Assert what the listener hears on `channel`, over up to three 2 s windows.

    On a loaded machine (two cores shared by the router, its aiortc peers, Janus and other
    work) a window can be damaged: a publisher in this process stalls for 500 ms and the router
    takes that seat off air (by design), or late frames are concealed. Such a window says
    nothing about the edge, so another is measured (with the mics back on). A channel that
    carries the wrong tones fails every window.
    """
    failure: AssertionError | None = None
    for _ in range(3):
        if not all_live(server):
            await mics_on(server)
        signal = await heard_now(listener)
        if not all_live(server):
            failure = AssertionError("a seat dropped off air during the window")
            continue
        try:
            assert_channel(signal, channel)
            return
        except AssertionError as exc:
            failure = exc
    assert failure is not None
    raise failure


def assert_channel(signal, channel: str) -> None:
    wanted = TONES[channel]
    # Medians over segments: one concealed gap on a loaded machine cannot decide. A present
    # tone over 100 ms segments; an absent one over 500 ms (a finer FFT bin, a lower noise floor).
    present = {hz: round(steady_tone_db(signal, hz), 1) for hz in TONES.values()}
    absent = {hz: round(steady_tone_db(signal, hz, segment=24000), 1) for hz in TONES.values()}
    assert present[wanted] > AUDIBLE, f"{channel}: {wanted} Hz missing: {present}"
    for other in {FR_HZ, NE_HZ, ES_HZ} - {wanted}:
        assert absent[other] < ABSENT, f"{channel}: {other} Hz must not be heard: {absent}"
    if wanted != FLOOR_HZ:
        # The floor runs under an interpretation at the bed level (-20 dB by default).
        bed = level_difference_db(signal, FLOOR_HZ, wanted)
        assert bed == pytest.approx(-20.0, abs=3.0), f"{channel}: floor bed {bed:.1f} dB"


async def test_listener_through_edge_hears_each_channel_and_switches(interpreted):
    http = interpreted.http
    pool = interpreted.app.state.edges
    listener = await listen_via_edge(http, "floor")
    try:
        assert f" {ICE_ADDRESS} " in listener.offer, "the edge offers its loopback-only address"
        await listener.heard.wait_for(25, timeout=20)
        await hears_channel(interpreted, listener, "floor")
        for channel in ("fr", "ne", "es", "en", "fr"):
            r = await http.post(f"{listener.session}/channel", json={"channel": channel})
            assert r.status_code == 200, r.text
            assert r.json() == {"channel": channel}
            await hears_channel(interpreted, listener, channel)
        # One connection throughout: the switch never renegotiated.
        assert listener.pc.connectionState == "connected"
        assert pool.channel_counts()["fr"] == 1
        assert pool.status()[0]["listeners"] == 1
        # The router encodes each channel once for the edge, however many listen there.
        assert interpreted.runtime.engine.consumers("fr") == 1
        r = await http.delete(listener.session)
        assert r.status_code == 204
        assert pool.status()[0]["listeners"] == 0
        r = await http.post(f"{listener.session}/channel", json={"channel": "es"})
        assert r.status_code == 404
    finally:
        await listener.close()


@pytest.mark.parametrize("edge_srtp", [True])
async def test_srtp_to_the_edge(interpreted):
    """With srtp on, the edge only plays what it can decrypt with the key the router gave it."""
    http = interpreted.http
    listener = await listen_via_edge(http, "fr")
    try:
        await listener.heard.wait_for(25, timeout=20)
        await hears_channel(interpreted, listener, "fr")
        r = await http.post(f"{listener.session}/channel", json={"channel": "es"})
        assert r.status_code == 200, r.text
        await hears_channel(interpreted, listener, "es")
    finally:
        await listener.close()


async def test_bad_requests_get_clear_errors(interpreted):
    http = interpreted.http
    r = await http.post("/api/listen", json={"channel": "xx"})
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await http.post("/api/listen", json={"channel": "fr", "extra": 1})
    assert r.status_code == 400
    r = await http.post("/api/listen/sessions/nope/channel", json={"channel": "fr"})
    assert r.status_code == 404
    r = await http.post(
        "/api/listen/sessions/nope/answer",
        content="v=0\r\n",
        headers={"Content-Type": "application/sdp"},
    )
    assert r.status_code == 404
    r = await http.post("/api/listen", json={"channel": "fr"})
    session = r.json()["session"]
    r = await http.post(
        f"{session}/answer", content="not sdp", headers={"Content-Type": "application/sdp"}
    )
    assert r.status_code == 400 and "answer" in r.json()["detail"]
    assert (await http.delete(session)).status_code == 204
    assert (await http.get("/api/health")).status_code == 200  # still serving


async def test_edge_restart_recovers_without_restarting_the_router(interpreted, janus):
    http = interpreted.http
    pool = interpreted.app.state.edges
    edge = pool.edges[0]
    before = await listen_via_edge(http, "fr")
    try:
        await before.heard.wait_for(25, timeout=20)
        await hears_channel(interpreted, before, "fr")
    finally:
        await before.close()
    assert edge.sessions_opened == 1
    created = edge.mountpoints_created

    janus.kill()
    for _ in range(200):  # the long poll fails at once; allow a busy machine
        if not edge.ready:
            break
        await asyncio.sleep(0.05)
    assert not edge.ready, "the edge's death is noticed"
    assert pool.status()[0]["listeners"] == 0, "its listeners' handles are forgotten"
    r = await http.post("/api/listen", json={"channel": "fr"})
    assert r.status_code == 503 and r.headers["retry-after"]
    r = await http.post(f"{before.session}/channel", json={"channel": "es"})
    assert r.status_code == 404

    await asyncio.to_thread(janus.start)  # the event loop keeps serving the publishers
    t0 = time.monotonic()
    await asyncio.wait_for(edge.wait_ready(), READY_TIMEOUT)
    recovered = time.monotonic() - t0
    print(f"janus started in {janus.started_in:.2f} s; edge ready {recovered:.2f} s later")
    assert edge.sessions_opened == 2
    assert edge.mountpoints_created == created + len(edge.mountpoints), "mountpoints recreated"
    assert (await http.get("/api/listen/edges")).status_code == 401
    r = await http.get(
        "/api/listen/edges", headers={"Authorization": "Bearer technician-demo-token"}
    )
    assert r.status_code == 200, r.text
    status = r.json()["edges"][0]
    assert status["ready"] and status["sessions_opened"] == 2 and status["rtp_sent"] > 0
    assert API_SECRET not in r.text and ADMIN_KEY not in r.text

    after = await listen_via_edge(http, "es")
    try:
        await after.heard.wait_for(25, timeout=20)
        await hears_channel(interpreted, after, "es")
        r = await http.post(f"{after.session}/channel", json={"channel": "floor"})
        assert r.status_code == 200
        await hears_channel(interpreted, after, "floor")
    finally:
        await after.close()


async def page_hears(server: RunningServer, page, hz: float, timeout: float = 20.0) -> dict:
    """The page analyser's dominant tone once it is `hz` (or the last one read at the timeout).

    Chromium's playout through WebAudio starts a moment after the connection is up (its jitter
    buffer settles on a new stream), so the page is read until the tone is there; a seat that
    dropped off air on a loaded machine (see hears_channel) is put back on.
    """
    from tests.browser import DOMINANT_FREQUENCY_JS

    deadline = time.monotonic() + timeout
    while True:
        if not all_live(server):
            await mics_on(server)
        peak = await page.evaluate(DOMINANT_FREQUENCY_JS)
        if abs(peak["hz"] - hz) <= 25 or time.monotonic() > deadline:
            return peak


@pytest.mark.browser
async def test_listener_page_in_chromium_plays_through_the_edge(interpreted):
    from tests.browser import chromium

    url = interpreted.url
    event = (await interpreted.http.get("/api/event")).json()
    assert event["edges"] is True
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 390, "height": 844})
        await context.grant_permissions(["microphone"], origin=url)
        page = await context.new_page()
        await page.goto(f"{url}/?lang=fr")
        await page.get_by_role("button", name="Start listening").click()
        await page.wait_for_function("window.listener.state === 'live'", timeout=20000)
        assert "/api/listen/sessions/" in await page.evaluate("window.listener.sessionUrl")
        # An edge carries one track: the original-underneath control is not offered.
        assert not await page.locator("#underneath").is_visible()
        peak = await page_hears(interpreted, page, FR_HZ)
        assert peak["hz"] == pytest.approx(FR_HZ, abs=25), peak
        assert interpreted.app.state.edges.status()[0]["listeners"] == 1

        await page.get_by_role("button", name="Español").click()
        await page.wait_for_function(
            "window.listener.serverChoice && window.listener.serverChoice.channel === 'es'"
        )
        peak = await page_hears(interpreted, page, ES_HZ)
        assert peak["hz"] == pytest.approx(ES_HZ, abs=25), peak
        assert await page.evaluate("window.listener.reconnects") == 0, "switched, not reconnected"
        assert interpreted.app.state.edges.channel_counts()["es"] == 1
        await page.get_by_role("button", name="Stop listening").click()
        for _ in range(50):
            if interpreted.app.state.edges.status()[0]["listeners"] == 0:
                break
            await asyncio.sleep(0.1)
        assert interpreted.app.state.edges.status()[0]["listeners"] == 0, "the page ends its lease"
        await context.close()
