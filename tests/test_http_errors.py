"""Every error code of the API, produced by a real request to a real server."""

import pytest

from tests.webrtc_clients import publish

FR = {"Authorization": "Bearer booth-fr-demo-token"}
SDP = {"Content-Type": "application/sdp"}
OFFER_WITHOUT_AUDIO = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
)


def assert_error(resp, status: int, word: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] == word and body["detail"], body


async def test_400_malformed_sdp_and_body(server):
    http = server.http
    assert_error(await http.post("/whep/fr", content="hello", headers=SDP), 400, "bad_request")
    r = await http.post("/whep/fr", content=OFFER_WITHOUT_AUDIO, headers=SDP)
    assert_error(r, 400, "bad_request")
    assert "audio" in r.json()["detail"]
    r = await http.post(
        "/whip/floor",
        content="v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n",
        headers={**SDP, "Authorization": "Bearer floor-demo-token"},
    )
    assert_error(r, 400, "bad_request")
    assert "Opus" in r.json()["detail"]
    r = await http.post(
        "/api/booths/fr/seats/fr1/mic",
        content="{not json",
        headers={**FR, "Content-Type": "application/json"},
    )
    assert_error(r, 400, "bad_request")
    r = await http.post("/api/booths/fr/seats/fr1/mic", json={"on": "maybe"}, headers=FR)
    assert_error(r, 400, "bad_request")


async def test_401_missing_or_invalid_token(server):
    http = server.http
    r = await http.post("/whip/floor", content="v=0", headers=SDP)
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    r = await http.post(
        "/whip/floor", content="v=0", headers={**SDP, "Authorization": "Bearer nope"}
    )
    assert_error(r, 401, "unauthorized")
    r = await http.post("/api/booths/fr/seats/fr1/mic", json={"on": True})
    assert_error(r, 401, "unauthorized")


async def test_403_token_of_another_role_or_booth(server):
    http = server.http
    r = await http.post("/whip/floor", content="v=0", headers={**SDP, **FR})
    assert_error(r, 403, "forbidden")
    r = await http.post("/whip/booth/es/es1", content="v=0", headers={**SDP, **FR})
    assert_error(r, 403, "forbidden")
    r = await http.post("/api/booths/es/seats/es1/mic", json={"on": True}, headers=FR)
    assert_error(r, 403, "forbidden")


async def test_404_unknown_channel_booth_seat_session(server):
    http = server.http
    assert_error(await http.post("/whep/xx", content="v=0", headers=SDP), 404, "not_found")
    r = await http.post("/whip/booth/de/de1", content="v=0", headers={**SDP, **FR})
    assert_error(r, 404, "not_found")
    r = await http.post("/whip/booth/fr/fr9", content="v=0", headers={**SDP, **FR})
    assert_error(r, 404, "not_found")
    r = await http.post("/api/booths/fr/seats/fr9/mic", json={"on": True}, headers=FR)
    assert_error(r, 404, "not_found")
    r = await http.post(
        "/whip/panellist/nobody",
        content="v=0",
        headers={**SDP, "Authorization": "Bearer panellist-demo-token"},
    )
    assert_error(r, 404, "not_found")
    assert_error(await http.delete("/whep/sessions/nope"), 404, "not_found")
    r = await http.post("/whep/sessions/nope/channel", json={"channel": "es"})
    assert_error(r, 404, "not_found")
    assert_error(await http.delete("/whip/sessions/nope", headers=FR), 404, "not_found")


async def test_413_oversized_body(server):
    http = server.http
    huge = "v=0\r\n" + "a=x-padding:" + "x" * 70_000 + "\r\n"
    assert_error(await http.post("/whep/fr", content=huge, headers=SDP), 413, "payload_too_large")
    r = await http.post(
        "/api/booths/fr/seats/fr1/mic",
        content='{"on": true, "pad": "' + "x" * 20_000 + '"}',
        headers={**FR, "Content-Type": "application/json"},
    )
    assert_error(r, 413, "payload_too_large")


async def test_415_wrong_content_type(server):
    http = server.http
    r = await http.post("/whep/fr", content="v=0", headers={"Content-Type": "text/plain"})
    assert_error(r, 415, "unsupported_media_type")
    r = await http.post(
        "/api/booths/fr/seats/fr1/mic",
        content="on=1",
        headers={**FR, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(r, 415, "unsupported_media_type")


async def test_409_seat_not_connected(server):
    r = await server.http.post("/api/booths/fr/seats/fr1/mic", json={"on": True}, headers=FR)
    assert_error(r, 409, "conflict")
    assert "not connected" in r.json()["detail"]


@pytest.mark.webrtc
async def test_409_interlock_one_live_seat_per_channel(server):
    http = server.http
    fr1 = await publish(http, "/whip/booth/fr/fr1", "booth-fr-demo-token", 660)
    fr2 = await publish(http, "/whip/booth/fr/fr2", "booth-fr-demo-token", 770)
    try:
        r = await http.post("/api/booths/fr/seats/fr1/mic", json={"on": True}, headers=FR)
        assert r.status_code == 200 and r.json()["live"] is True
        r = await http.post("/api/booths/fr/seats/fr2/mic", json={"on": True}, headers=FR)
        assert_error(r, 409, "conflict")
        assert "interlock" in r.json()["detail"]
        assert server.runtime.engine.live_source("fr") == "seat:fr:fr1"
        # after fr1 goes off, fr2 may take the channel
        await http.post("/api/booths/fr/seats/fr1/mic", json={"on": False}, headers=FR)
        r = await http.post("/api/booths/fr/seats/fr2/mic", json={"on": True}, headers=FR)
        assert r.status_code == 200
        assert server.runtime.engine.live_source("fr") == "seat:fr:fr2"
        # a session can only be deleted by who made it (or a technician)
        r = await http.delete(fr1.location, headers={"Authorization": "Bearer floor-demo-token"})
        assert_error(r, 403, "forbidden")
    finally:
        await fr1.close()
        await fr2.close()


async def test_event_description_for_pages(server):
    r = await server.http.get("/api/event")
    assert r.status_code == 200
    body = r.json()
    names = {c["id"]: c["name"] for c in body["channels"]}
    assert names == {
        "floor": "Floor (original)",
        "en": "English",
        "fr": "Français",
        "ne": "नेपाली",
        "es": "Español",
    }
    assert body["ice_servers"] == [] and body["listener_token_required"] is False
    assert "token" not in r.text.replace("listener_token_required", "")


async def test_openapi_documents_the_endpoints(server):
    spec = (await server.http.get("/openapi.json")).json()
    for path in ("/whip/floor", "/whep/{channel}", "/whep/sessions/{session_id}/channel"):
        assert path in spec["paths"]
    assert "409" in spec["paths"]["/api/booths/{booth}/seats/{seat}/mic"]["post"]["responses"]
