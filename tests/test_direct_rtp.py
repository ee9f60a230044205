"""Listeners are served by the direct RTP path: same audio, a normal RTP stream, true RTCP.

Each test runs with the per-listener loop in C (router/media/_rtp_burst.c) and in Python.
"""

import asyncio
import os

import pytest

from router.config import EventConfig, load_config
from router.media.direct_rtp import COMPILED
from tests.conftest import DEFAULT_EVENT
from tests.signals import steady_tone_db, tone_db
from tests.webrtc_clients import listen, publish

pytestmark = pytest.mark.webrtc

FLOOR_HZ = 440.0
# With CI=true a missing C extension fails here instead of quietly testing Python twice.
LOOPS = ["c", "python"] if COMPILED or os.environ.get("CI") == "true" else ["python"]


@pytest.fixture(params=LOOPS)
def event_config(request: pytest.FixtureRequest) -> EventConfig:
    config = load_config(DEFAULT_EVENT)
    audio = config.audio.model_copy(update={"compiled_rtp": request.param == "c"})
    return config.model_copy(update={"audio": audio})


async def stats_of(pc, kind: str) -> dict:
    report = await pc.getStats()
    return next((vars(s) for s in report.values() if s.type == kind), {})


async def test_listener_is_served_by_the_direct_path_with_true_rtcp(server, event_config):
    floor = await publish(server.http, "/whip/floor", "floor-demo-token", FLOOR_HZ)
    await server.wait_flowing({"room"})
    peer = await listen(server.http, "en")
    try:
        await peer.heard.wait_for(25)
        heard = await peer.heard.collect(50)
        assert steady_tone_db(heard, FLOOR_HZ) > -25
        assert tone_db(heard, 660.0) < -50

        (session,) = [s for s in server.runtime.peers.sessions() if s.kind == "listener"]
        track = session.outgoing
        assert track is not None and track.direct, "the listener's packets bypass aiortc's sender"
        loop = "RtpStream" if event_config.audio.compiled_rtp else "PyRtpStream"
        assert type(track._direct.stream).__name__ == loop
        assert track.delivered >= 50
        sender = next(t.sender for t in session.pc.getTransceivers() if t.sender.track is track)

        # The receiver sees one unbroken RTP stream of the sender's SSRC...
        inbound = await stats_of(peer.pc, "inbound-rtp")
        assert inbound["ssrc"] == sender._ssrc
        assert inbound["packetsReceived"] >= 50
        assert inbound["packetsLost"] == 0, "contiguous sequence numbers on loopback"

        # ...and sender reports whose counts are the direct path's (sent every 2.5-7.5 s).
        remote = {}
        for _ in range(100):
            remote = await stats_of(peer.pc, "remote-outbound-rtp")
            if remote.get("packetsSent", 0) > 0:
                break
            await asyncio.sleep(0.1)
        assert remote, "no RTCP sender report arrived"
        assert remote["ssrc"] == sender._ssrc
        assert 0 < remote["packetsSent"] <= track.delivered
        assert remote["bytesSent"] > 20 * remote["packetsSent"], "Opus payload octets counted"
    finally:
        await peer.close()
        await floor.close()


async def test_switch_keeps_one_stream_on_the_direct_path(server):
    floor = await publish(server.http, "/whip/floor", "floor-demo-token", FLOOR_HZ)
    seat = await publish(server.http, "/whip/booth/fr/fr1", "booth-fr-demo-token", 660.0)
    await server.wait_flowing({"room", "seat:fr:fr1"})
    r = await server.http.post(
        "/api/booths/fr/seats/fr1/mic",
        json={"on": True},
        headers={"Authorization": "Bearer booth-fr-demo-token"},
    )
    assert r.status_code == 200, r.text
    peer = await listen(server.http, "fr")
    try:
        await peer.heard.wait_for(25)
        assert steady_tone_db(await peer.heard.collect(25), 660.0) > -25
        r = await server.http.post(f"{peer.location}/channel", json={"channel": "es"})
        assert r.status_code == 200
        mark = peer.heard.mark()
        await peer.heard.wait_for(mark + 40)
        after = peer.heard.since(mark, skip=15)
        assert steady_tone_db(after, FLOOR_HZ) > -25
        assert tone_db(after, 660.0) < -45
        inbound = await stats_of(peer.pc, "inbound-rtp")
        assert inbound["packetsLost"] == 0, "the switch keeps the sequence unbroken"
    finally:
        await peer.close()
        await seat.close()
        await floor.close()
