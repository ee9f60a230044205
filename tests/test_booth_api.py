"""The booth console's HTTP API and state WebSocket (no media: seats are marked connected)."""

import asyncio
import json

from httpx_ws import aconnect_ws

FR = {"Authorization": "Bearer booth-fr-demo-token"}
EN = {"Authorization": "Bearer booth-en-demo-token"}
TECH = {"Authorization": "Bearer technician-demo-token"}


def connect(server, *seats):
    for booth, seat in seats:
        server.runtime.board.set_connected(booth, seat, True)


async def next_state(ws, predicate, frames=20):
    for _ in range(frames):
        frame = json.loads(await asyncio.wait_for(ws.receive_text(), 5))
        assert frame["type"] == "state"
        if predicate(frame["state"]):
            return frame["state"]
    raise AssertionError("no matching state")


async def test_state_and_actions(server):
    http = server.http
    connect(server, ("fr", "fr1"), ("fr", "fr2"))
    r = await http.get("/api/booths/fr", headers=FR)
    assert r.status_code == 200
    state = r.json()
    assert state["channel"] == "fr" and state["retour"] is None
    assert [s["seat"] for s in state["seats"]] == ["fr1", "fr2"]
    assert state["audience"]["fr"] == 0

    r = await http.post("/api/booths/fr/seats/fr1/mic", json={"on": True}, headers=FR)
    assert r.status_code == 200 and r.json()["live"] is True
    r = await http.post("/api/booths/fr/seats/fr2/mic", json={"on": True}, headers=FR)
    assert r.status_code == 409 and "handover" in r.json()["detail"]
    # handover: fr2 asks, fr1 accepts
    base = "/api/booths/fr/seats"
    r = await http.post(f"{base}/fr2/handover", json={"action": "request"}, headers=FR)
    assert r.status_code == 200 and r.json()["handover"]["from"] == "fr2"
    r = await http.post(f"{base}/fr2/handover", json={"action": "accept"}, headers=FR)
    assert r.status_code == 409 and r.json()["error"] == "conflict"
    r = await http.post(f"{base}/fr1/handover", json={"action": "accept"}, headers=FR)
    assert r.status_code == 200 and r.json()["live_seat"] == "fr2"
    # cough, source, return settings, output, slow-down, chat
    r = await http.post(f"{base}/fr2/cough", json={"held": True}, headers=FR)
    fr2 = r.json()["seats"][1]
    assert fr2["coughing"] and fr2["live"]
    await http.post(f"{base}/fr2/cough", json={"held": False}, headers=FR)
    r = await http.post(f"{base}/fr1/source", json={"source": "en"}, headers=FR)
    assert r.json()["seats"][0]["hears"] == "en"
    r = await http.post(f"{base}/fr1/return", json={"volume_db": -3, "treble_db": 4}, headers=FR)
    assert r.json()["seats"][0]["volume_db"] == -3 and r.json()["seats"][0]["treble_db"] == 4
    r = await http.post(f"{base}/fr1/output", json={"output": "B"}, headers=FR)
    assert r.status_code == 409 and "retour" in r.json()["detail"]
    r = await http.post(f"{base}/fr1/slow-down", json={"on": True}, headers=FR)
    assert r.json()["slow_down"]["seat"] == "fr1"
    log = (await http.get("/api/tech/log", headers=TECH)).json()
    assert any(e["kind"] == "slow_down" and "fr1" in e["subject"] for e in log)
    status = (await http.get("/api/tech/status", headers=TECH)).json()
    assert status["booths"]["fr"]["slow_down"]["seat"] == "fr1"
    r = await http.post("/api/booths/fr/chat", json={"text": "hello", "seat": "fr1"}, headers=FR)
    r = await http.post("/api/booths/fr/chat", json={"text": "ok from tech"}, headers=TECH)
    assert [(m["from"], m["text"]) for m in r.json()["chat"]] == [
        ("fr1", "hello"),
        ("technician", "ok from tech"),
    ]


async def test_bad_input_is_a_clear_json_error(server):
    http = server.http
    base = "/api/booths/fr/seats"
    cases = [
        (f"{base}/fr1/handover", {"action": "steal"}, FR, 400),
        (f"{base}/fr1/cough", {"held": "maybe"}, FR, 400),
        (f"{base}/fr1/source", {"source": "klingon"}, FR, 400),
        (f"{base}/fr1/return", {"volume_db": 60}, FR, 400),
        (f"{base}/fr9/cough", {"held": True}, FR, 404),
        ("/api/booths/xx/seats/fr1/cough", {"held": True}, FR, 404),
        (f"{base}/fr1/cough", {"held": True}, EN, 403),
        (f"{base}/fr1/cough", {"held": True}, {}, 401),
        (f"{base}/fr1/cough", {"held": True}, FR, 409),  # not connected
        ("/api/booths/fr/chat", {"text": "no seat"}, FR, 400),
        ("/api/booths/fr/chat", {"text": ""}, FR, 400),
        ("/api/tech/auto-relay", {"on": False}, FR, 403),
    ]
    for path, body, headers, code in cases:
        r = await server.http.post(path, json=body, headers=headers)
        assert r.status_code == code, (path, body, r.status_code, r.text)
        assert set(r.json()) == {"error", "detail"}, r.text
    r = await http.post(
        f"{base}/fr1/cough", content=b"{", headers={**FR, "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert (await http.get("/api/booths/fr", headers=EN)).status_code == 403
    r = await http.post("/api/tech/auto-relay", json={"on": False}, headers=TECH)
    assert r.json() == {"auto_relay": False}


async def test_websocket_pushes_full_state_on_every_change(server):
    http = server.http
    connect(server, ("fr", "fr1"), ("fr", "fr2"))
    async with aconnect_ws(f"{server.url}/api/booths/fr/ws", http) as ws:
        await ws.send_text(json.dumps({"token": "booth-fr-demo-token", "seat": "fr1"}))
        first = await next_state(ws, lambda s: True)
        assert first["live_seat"] is None and len(first["seats"]) == 2
        await http.post("/api/booths/fr/seats/fr1/mic", json={"on": True}, headers=FR)
        state = await next_state(ws, lambda s: s["live_seat"] == "fr1")
        assert state["seats"][0]["live"]
        # a technician sees the same, and a second console gets the current state at once
        async with aconnect_ws(f"{server.url}/api/booths/fr/ws", http) as tech:
            await tech.send_text(json.dumps({"token": "technician-demo-token"}))
            now = await next_state(tech, lambda s: True)
            assert now["live_seat"] == "fr1"
        # the cough key of this console is released when its socket goes away
        await http.post("/api/booths/fr/seats/fr1/cough", json={"held": True}, headers=FR)
        await next_state(ws, lambda s: s["seats"][0]["coughing"])
    for _ in range(100):
        if not server.runtime.board.seat("fr", "fr1").coughing:
            break
        await asyncio.sleep(0.02)
    assert not server.runtime.board.seat("fr", "fr1").coughing
    assert server.runtime.board.seat("fr", "fr1").live


async def test_websocket_refuses_other_tokens(server):
    for token in ("booth-en-demo-token", "nope", None):
        async with aconnect_ws(f"{server.url}/api/booths/fr/ws", server.http) as ws:
            await ws.send_text(json.dumps({"token": token}))
            try:
                await asyncio.wait_for(ws.receive_text(), 5)
                raise AssertionError("the socket should be closed")
            except Exception as exc:  # httpx_ws raises on the close frame
                assert "1008" in repr(exc) or "Disconnect" in type(exc).__name__, repr(exc)


async def test_booth_page_is_served(server):
    r = await server.http.get("/booth/fr/fr1")
    assert r.status_code == 200 and "booth.js" in r.text
