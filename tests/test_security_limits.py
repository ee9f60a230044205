"""Limits and bad input: 429 per role, per address and for bursts of offers; slow bodies;
offers without audio or Opus; JSON bombs. Everyone else keeps being served."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from router.app import create_app
from router.config import EventConfig, load_config
from router.media.engine import SourceRole
from router.signalling.peers import SessionKind
from tests.conftest import DEFAULT_EVENT, RunningServer, start_server
from tests.test_http_errors import assert_error
from tests.webrtc_clients import listen

pytestmark = pytest.mark.webrtc

SDP = {"Content-Type": "application/sdp"}
TECH = {"Authorization": "Bearer technician-demo-token"}
LIMITS = {
    "max_listeners": 4,
    "max_monitors": 1,
    "max_sessions_per_address": 5,
    "max_pending_offers": 3,
    "retry_after_seconds": 7,
    "body_timeout_seconds": 1.0,
}


@pytest.fixture
def event_config() -> EventConfig:
    config = load_config(DEFAULT_EVENT)
    return config.model_copy(update={"limits": config.limits.model_copy(update=LIMITS)})


@pytest.fixture
async def offer() -> str:
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client.addTransceiver("audio", direction="recvonly")
    await client.setLocalDescription(await client.createOffer())
    yield client.localDescription.sdp
    await client.close()


def assert_429(resp) -> None:
    assert_error(resp, 429, "too_many_requests")
    assert resp.headers["retry-after"] == "7"


async def test_listener_and_monitor_limits_answer_429_with_retry_after(server, offer):
    http, rt = server.http, server.runtime
    locations = []
    for _ in range(4):
        r = await http.post("/whep/fr", content=offer, headers=SDP)
        assert r.status_code == 201
        locations.append(r.headers["location"])
    r = await http.post("/whep/es", content=offer, headers=SDP)
    assert_429(r)
    assert "listener" in r.json()["detail"]
    assert rt.peers.count(SessionKind.LISTENER) == 4
    # one leaves, one more may come
    assert (await http.delete(locations.pop())).status_code == 204
    r = await http.post("/whep/es", content=offer, headers=SDP)
    assert r.status_code == 201
    locations.append(r.headers["location"])
    # monitors have their own limit, not the listeners'
    rt.engine.add_source("rtp:probe", SourceRole.REMOTE)
    r = await http.post("/whep/monitor/rtp:probe", content=offer, headers={**SDP, **TECH})
    assert r.status_code == 201
    assert_429(await http.post("/whep/monitor/rtp:probe", content=offer, headers={**SDP, **TECH}))
    # the address now holds 5 sessions: even a publisher is refused from it
    r = await http.post(
        "/whip/floor", content=offer, headers={**SDP, "Authorization": "Bearer floor-demo-token"}
    )
    assert_429(r)
    assert "address" in r.json()["detail"]
    for location in [*locations, r.headers.get("location")]:
        if location:
            await http.delete(location)
    await rt.peers.close_all()
    assert rt.peers.limiter.usage() == {"addresses": 0, "pending": 0}


async def test_a_burst_of_offers_is_admitted_up_to_the_negotiation_limit(server, offer):
    """Offers held in negotiation: the fourth concurrent one is refused at once, not queued."""
    http, rt = server.http, server.runtime
    gate = asyncio.Event()
    negotiate = rt.peers._negotiate

    async def held(*args, **kwargs):
        await gate.wait()
        return await negotiate(*args, **kwargs)

    rt.peers._negotiate = held
    burst = [
        asyncio.create_task(http.post("/whep/fr", content=offer, headers=SDP)) for _ in range(12)
    ]
    for _ in range(200):
        if rt.peers.limiter.usage()["pending"] == 3 and sum(t.done() for t in burst) == 9:
            break
        await asyncio.sleep(0.05)
    refused = [t.result() for t in burst if t.done()]
    assert len(refused) == 9
    for r in refused:
        assert_429(r)
        assert "negotiated" in r.json()["detail"]
    # meanwhile the server answers everything else
    assert (await http.get("/api/health")).status_code == 200
    waiting = [t for t in burst if not t.done()]
    gate.set()
    admitted = await asyncio.gather(*waiting)
    assert [r.status_code for r in admitted] == [201, 201, 201]
    assert rt.peers.limiter.usage()["pending"] == 0
    rt.peers._negotiate = negotiate
    await rt.peers.close_all()


async def test_an_unlimited_burst_of_real_listeners_all_get_audio(loopback_ice):
    """Twenty listeners connecting at the same moment (default limits): every one is answered
    and hears the channel; nothing is left afterwards."""
    app = create_app(load_config(DEFAULT_EVENT), ice_hosts=["127.0.0.1"])
    srv, task, url = await start_server(app)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        server = RunningServer(app, url, http)
        peers = await asyncio.gather(*[listen(http, "fr") for _ in range(20)])
        try:
            await asyncio.gather(*[p.heard.wait_for(10, timeout=30) for p in peers])
            assert server.runtime.peers.count(SessionKind.LISTENER) == 20
        finally:
            for p in peers:
                await http.delete(p.location)
                await p.close()
        assert server.runtime.peers.sessions() == []
        assert server.runtime.peers.limiter.usage() == {"addresses": 0, "pending": 0}
    srv.should_exit = True
    await task


async def test_a_slow_body_is_cut_off_and_others_are_served_meanwhile(server):
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /whep/fr HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n"
        b"Content-Length: 5000\r\n\r\nv=0\r\n"
    )
    await writer.drain()
    # while that body trickles (here: never comes), everyone else is answered
    assert (await server.http.get("/api/health")).status_code == 200
    head = await asyncio.wait_for(reader.read(4096), timeout=20)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408"), head[:200]
    assert b'"request_timeout"' in head


async def test_offers_without_a_usable_audio_codec_are_refused(server):
    base = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "a=fingerprint:sha-256 AB:CD\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\n"
    )
    g722 = base + "m=audio 9 UDP/TLS/RTP/SAVPF 9\r\na=rtpmap:9 G722/8000\r\n"
    r = await server.http.post("/whep/fr", content=g722, headers=SDP)
    assert_error(r, 400, "bad_request")
    assert "Opus" in r.json()["detail"]
    # Opus named only in a video section is not an audio codec we can use
    video_opus = (
        base + "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"
    )
    r = await server.http.post("/whep/fr", content=video_opus, headers=SDP)
    assert_error(r, 400, "bad_request")
    assert server.runtime.peers.sessions() == []


async def test_json_bombs_are_refused_cleanly(server):
    fr = {"Authorization": "Bearer booth-fr-demo-token", "Content-Type": "application/json"}
    deep = "[" * 8000 + "]" * 8000  # under the size limit, over any parser's depth
    r = await server.http.post("/api/booths/fr/seats/fr1/mic", content=deep, headers=fr)
    assert_error(r, 400, "bad_request")
    r = await server.http.post(
        "/api/booths/fr/seats/fr1/mic", content='{"on": true, "on": "x"}', headers=fr
    )
    assert_error(r, 400, "bad_request")
    r = await server.http.post("/api/booths/fr/seats/fr1/mic", content=b"\xff\xfe{}", headers=fr)
    assert_error(r, 400, "bad_request")
    assert (await server.http.get("/api/health")).json()["ok"] is True
