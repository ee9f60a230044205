"""Mix-minus by FFT with real WebRTC peers: nobody hears themselves, the room never hears the room.

The floor station publishes the desk feed and receives the room return; two remote panellists
publish and receive the floor without their own voice; media plays into the floor; two RTP
inputs feed it too, one from the room's desk (in_room) and one from another system.
"""

import asyncio
import socket
import time

import httpx
import pytest

from router.app import create_app
from router.config import MediaSettings
from router.config import RtpInput as RtpInputConfig
from tests.conftest import free_port, start_server
from tests.media_files import heard_db, write_wav
from tests.test_rtp_input import OpusSender
from tests.webrtc_clients import listen, publish

pytestmark = pytest.mark.webrtc

ROOM, PANEL_A, PANEL_B, MEDIA, DESK2, REMOTE = 440.0, 550.0, 770.0, 330.0, 990.0, 1210.0
LEVEL = 0.12  # six sources on the floor: keep the sum far from clipping
HEARD, NOT_HEARD = -32.0, -45.0  # a 0.12 sine is about -18.4 dBFS; Opus noise ~-55
PANELLIST = "panellist-demo-token"


async def rtp_sender(port: int, freq: float, stop: asyncio.Event) -> None:
    sender = OpusSender(freq, ssrc=int(freq), amplitude=LEVEL)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        t0 = time.monotonic()
        while not stop.is_set():
            sock.sendto(sender.next(), ("127.0.0.1", port))
            await asyncio.sleep(max(0.0, t0 + sender.n * 0.02 - time.monotonic()))


class Room:
    """The fixture's value; a short repr, because asyncio may format a finished fixture task's
    result, and the peers hold seconds of recorded audio."""

    def __init__(self, *parts) -> None:
        self.parts = parts

    def __repr__(self) -> str:
        return "<hybrid room>"


@pytest.fixture
async def hybrid_room(event_config, loopback_ice, tmp_path):
    write_wav(tmp_path / "video_message.wav", MEDIA, 60.0, amplitude=LEVEL)
    ports = {"desk2": free_port(), "remote": free_port()}
    inputs = [
        RtpInputConfig(id="desk2", port=ports["desk2"], payload_type=97),
        RtpInputConfig(id="remote", port=ports["remote"], payload_type=97, in_room=False),
    ]
    config = event_config.model_copy(
        update={"media": MediaSettings(directory=tmp_path), "rtp_inputs": inputs}
    )
    app = create_app(config, ice_hosts=["127.0.0.1"])
    srv, task, url = await start_server(app)
    stop = asyncio.Event()
    senders = [
        asyncio.create_task(rtp_sender(ports["desk2"], DESK2, stop)),
        asyncio.create_task(rtp_sender(ports["remote"], REMOTE, stop)),
    ]
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        floor = await publish(http, "/whip/floor", "floor-demo-token", ROOM, LEVEL)
        a = await publish(http, "/whip/panellist/landry", PANELLIST, PANEL_A, LEVEL)
        b = await publish(http, "/whip/panellist/tamang", PANELLIST, PANEL_B, LEVEL)
        r = await http.post(
            "/api/media/play",
            json={"file": "video_message.wav"},
            headers={"Authorization": "Bearer technician-demo-token"},
        )
        assert r.status_code == 200, r.text
        try:
            await flowing(app.state.runtime, SOURCES)
            yield Room(app.state.runtime, http, floor, a, b)
        finally:
            await close(floor, a, b)
    stop.set()
    await asyncio.gather(*senders)
    srv.should_exit = True
    await task


SOURCES = {"room", "panellist:landry", "panellist:tamang", "media", "rtp:desk2", "rtp:remote"}


async def flowing(rt, sources: set[str]) -> None:
    """Every source has delivered a few blocks (the last publisher may still be connecting)."""
    engine = rt.engine
    for _ in range(400):
        if sources <= set(engine.source_ids()) and all(
            engine.buffer(s).stats.pushed > 10 for s in sources
        ):
            return
        await asyncio.sleep(0.025)
    raise TimeoutError(f"not flowing: {sources - set(engine.source_ids())}")


async def close(*peers) -> None:
    # Await the recorders too: a task left pending at loop close is formatted with all the
    # audio it holds when it is collected, which stalls whatever runs then for seconds.
    for peer in peers:
        await peer.close()
        if peer.heard.task is not None:
            await asyncio.gather(peer.heard.task, return_exceptions=True)


def assert_tones(audio, present: list[float], absent: list[float], who: str) -> None:
    for freq in present:
        assert heard_db(audio, freq) > HEARD, f"{who} must hear {freq} Hz"
    for freq in absent:
        assert heard_db(audio, freq) < NOT_HEARD, f"{who} must not hear {freq} Hz"


async def test_nobody_hears_themselves_and_the_room_never_hears_the_room(hybrid_room):
    rt, http, floor_station, a, b = hybrid_room.parts
    listener = await listen(http, "floor")
    try:
        for peer in (floor_station, a, b, listener):
            await peer.heard.wait_for(25)  # connected and settled
        heard = {}
        for name, peer in (("room", floor_station), ("a", a), ("b", b), ("floor", listener)):
            heard[name] = await peer.heard.collect(50)
    finally:
        await close(listener)

    everything = [ROOM, PANEL_A, PANEL_B, MEDIA, DESK2, REMOTE]
    assert_tones(heard["floor"], everything, [], "the floor channel")
    # the room's loudspeakers: panellists, media and the remote system; nothing from the room
    assert_tones(heard["room"], [PANEL_A, PANEL_B, MEDIA, REMOTE], [ROOM, DESK2], "the room")
    # each panellist: everyone else, never themselves
    assert_tones(heard["a"], [ROOM, PANEL_B, MEDIA, DESK2, REMOTE], [PANEL_A], "panellist A")
    assert_tones(heard["b"], [ROOM, PANEL_A, MEDIA, DESK2, REMOTE], [PANEL_B], "panellist B")
    assert rt.room_sources == {"room", "rtp:desk2"}


async def test_media_stopped_leaves_the_room_return(hybrid_room):
    _, http, floor_station, *_ = hybrid_room.parts
    await floor_station.heard.wait_for(25)
    assert heard_db(await floor_station.heard.collect(30), MEDIA) > HEARD
    r = await http.post(
        "/api/media/stop", headers={"Authorization": "Bearer technician-demo-token"}
    )
    assert r.status_code == 200 and r.json()["state"] == "stopped"
    await floor_station.heard.collect(10)  # in flight
    after = await floor_station.heard.collect(40)
    assert heard_db(after, MEDIA) < NOT_HEARD
    assert heard_db(after, PANEL_A) > HEARD
