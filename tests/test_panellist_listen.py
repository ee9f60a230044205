"""A remote panellist hears the floor without their own voice, or any language channel."""

import asyncio

import pytest

from tests.media_files import heard_db
from tests.signals import level_difference_db
from tests.webrtc_clients import listen, publish

pytestmark = pytest.mark.webrtc

FLOOR_HZ, NE_HZ, PANEL_HZ = 440.0, 660.0, 550.0
HEARD, NOT_HEARD = -30.0, -50.0
PANELLIST = {"Authorization": "Bearer panellist-demo-token"}
NE_BOOTH = "booth-ne-demo-token"


async def settle(peer, blocks: int = 15):
    """What the peer hears from now on, after what was already in flight."""
    await peer.heard.collect(blocks)
    return await peer.heard.collect(40)


async def test_panellist_chooses_the_ne_channel_and_never_hears_themselves(server):
    http = server.http
    floor = await publish(http, "/whip/floor", "floor-demo-token", FLOOR_HZ, 0.2)
    ne_seat = await publish(http, "/whip/booth/ne/ne1", NE_BOOTH, NE_HZ, 0.2)
    panellist = await publish(
        http, "/whip/panellist/tamang?listen=ne", "panellist-demo-token", PANEL_HZ, 0.2
    )
    peers = [floor, ne_seat, panellist]
    try:
        await server.wait_flowing({"room", "seat:ne:ne1", "panellist:tamang"})
        r = await http.post(
            "/api/booths/ne/seats/ne1/mic",
            json={"on": True},
            headers={"Authorization": f"Bearer {NE_BOOTH}"},
        )
        assert r.status_code == 200, r.text

        # Nepali: the NE seat, the floor under it at the bed level, and not their own voice
        ne = await settle(panellist)
        assert heard_db(ne, NE_HZ) > HEARD
        assert level_difference_db(ne, FLOOR_HZ, NE_HZ) == pytest.approx(-20, abs=3)
        assert heard_db(ne, PANEL_HZ) < NOT_HEARD

        # switch to the floor on the same connection: the room, not the booth, not themselves
        r = await http.post(
            f"{panellist.location}/listen", json={"channel": "floor"}, headers=PANELLIST
        )
        assert r.status_code == 200 and r.json() == {"channel": "floor"}
        floor_mix = await settle(panellist)
        assert heard_db(floor_mix, FLOOR_HZ) > HEARD
        assert heard_db(floor_mix, NE_HZ) < NOT_HEARD
        assert heard_db(floor_mix, PANEL_HZ) < NOT_HEARD

        # and back to Nepali
        r = await http.post(
            f"{panellist.location}/listen", json={"channel": "ne"}, headers=PANELLIST
        )
        assert r.status_code == 200
        assert heard_db(await settle(panellist), NE_HZ) > HEARD

        # everybody else hears the panellist on the floor
        listener = await listen(http, "floor")
        peers.append(listener)
        await listener.heard.collect(15)
        assert heard_db(await listener.heard.collect(40), PANEL_HZ) > HEARD
        assert len(server.runtime.peers.sessions()) == 4
    finally:
        for peer in peers:
            await peer.close()
            if peer.heard.task is not None:
                await asyncio.gather(peer.heard.task, return_exceptions=True)


async def test_listen_choice_errors(server):
    http = server.http
    offer_headers = {"Content-Type": "application/sdp", **PANELLIST}
    r = await http.post("/whip/panellist/landry?listen=de", content="v=0", headers=offer_headers)
    assert r.status_code == 404 and "unknown channel" in r.json()["detail"]
    assert server.runtime.peers.sessions() == [], "refused before any peer connection"

    panellist = await publish(http, "/whip/panellist/landry", "panellist-demo-token", PANEL_HZ)
    listener = await listen(http, "fr")
    try:
        url = f"{panellist.location}/listen"
        r = await http.post(url, json={"channel": "de"}, headers=PANELLIST)
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        r = await http.post(url, json={"channel": "ne"})
        assert r.status_code == 401
        r = await http.post(
            url, json={"channel": "ne"}, headers={"Authorization": f"Bearer {NE_BOOTH}"}
        )
        assert r.status_code == 403
        r = await http.post(url, json={"chanel": "ne"}, headers=PANELLIST)
        assert r.status_code == 400 and r.json()["error"] == "bad_request"
        r = await http.post(
            f"{listener.location.replace('whep', 'whip')}/listen",
            json={"channel": "ne"},
            headers=PANELLIST,
        )
        assert r.status_code == 404, "a listener session is not a panellist"
        r = await http.post("/whip/sessions/nope/listen", json={"channel": "ne"}, headers=PANELLIST)
        assert r.status_code == 404
        # a technician may choose for them
        r = await http.post(
            url, json={"channel": "es"}, headers={"Authorization": "Bearer technician-demo-token"}
        )
        assert r.status_code == 200 and r.json() == {"channel": "es"}

        r = await http.get("/api/panellists/landry", headers=PANELLIST)
        assert r.json() == {"id": "landry", "name": "Guillaume Landry (ECPAT)"}
        assert (await http.get("/api/panellists/nobody", headers=PANELLIST)).status_code == 404
        assert (await http.get("/api/panellists/landry")).status_code == 401
        r = await http.get(
            "/api/panellists/landry", headers={"Authorization": f"Bearer {NE_BOOTH}"}
        )
        assert r.status_code == 403
    finally:
        for peer in (panellist, listener):
            await peer.close()
