"""The technician's API on a real server: roles, meters stream, controls, recording, /metrics."""

import asyncio
import io
import json

import av
import numpy as np
import pytest
from httpx_ws import aconnect_ws
from prometheus_client.parser import text_string_to_metric_families

from tests.signals import tone_db
from tests.webrtc_clients import listen, publish

TECH = {"Authorization": "Bearer technician-demo-token"}
FR = {"Authorization": "Bearer booth-fr-demo-token"}


async def poll(predicate, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise TimeoutError("condition not reached")


async def test_status_needs_the_technician_token(server):
    http = server.http
    assert (await http.get("/api/tech/status")).status_code == 401
    assert (await http.get("/api/tech/status", headers=FR)).status_code == 403
    r = await http.get("/api/tech/status", headers=TECH)
    assert r.status_code == 200
    body = r.json()
    assert [c["id"] for c in body["channels"]] == ["floor", "en", "fr", "ne", "es"]
    assert {"ticks", "late_ticks", "errors", "tick_cpu_ms_mean"} <= set(body["engine"])
    r = await http.post("/api/tech/inputs/room/gain", json={"gain_db": 0}, headers=TECH)
    assert r.status_code == 404  # nobody publishes the floor yet


async def test_metrics_parse_with_the_prometheus_parser(server):
    assert (await server.http.get("/metrics")).status_code == 401  # [metrics] public = false
    r = await server.http.get("/metrics", headers=TECH)
    assert r.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert {"interp_listeners", "interp_engine_ticks", "interp_engine_late_ticks"} <= set(families)
    channels = {s.labels["channel"] for s in families["interp_listeners"].samples}
    assert channels == {"floor", "en", "fr", "ne", "es"}
    assert families["interp_recording"].samples[0].value == 0


@pytest.mark.webrtc
async def test_meters_stream_gain_mute_and_seat_control(server):
    http = server.http
    floor = await publish(http, "/whip/floor", "floor-demo-token", 440)
    fr = await publish(http, "/whip/booth/fr/fr1", "booth-fr-demo-token", 660)
    try:
        await server.wait_flowing(["room", "seat:fr:fr1"])
        assert (
            await http.post("/api/booths/fr/seats/fr1/mic", json={"on": True}, headers=FR)
        ).status_code == 200
        async with aconnect_ws(f"{server.url}/api/tech/ws", http) as ws:
            await ws.send_text(json.dumps({"token": "technician-demo-token"}))
            first = json.loads(await ws.receive_text())
            assert first["type"] == "status"
            levels = await _next_levels(
                ws, lambda lv: lv.get("ch:floor", {}).get("peak_db", -200) > -20
            )
            # a 0.3 sine is -10.5 dBFS; aiortc's sender upmixes mono to stereo at -3 dB
            assert levels["in:room"]["peak_db"] == pytest.approx(-13.5, abs=1.5)
            assert levels["ch:fr"]["peak_db"] > -20
            r = await http.post(
                "/api/tech/inputs/room/gain", json={"gain_db": 0, "muted": True}, headers=TECH
            )
            assert r.status_code == 200
            levels = await _next_levels(ws, lambda lv: lv["ch:floor"]["peak_db"] < -100)
            assert levels["in:room"]["peak_db"] > -20, "the input meter still shows what arrives"
        r = await http.post("/api/tech/seats/fr/fr1/off", headers=TECH)
        assert r.status_code == 200 and r.json()["live"] is False
        assert server.runtime.engine.live_source("fr") is None
        log = (await http.get("/api/tech/log", headers=TECH)).json()
        assert any("forced fr1 off air" in e["message"] for e in log)
    finally:
        await floor.close()
        await fr.close()


@pytest.mark.webrtc
async def test_dropped_live_seat_raises_an_alarm(server):
    http = server.http
    fr = await publish(http, "/whip/booth/fr/fr1", "booth-fr-demo-token", 660)
    await server.wait_flowing(["seat:fr:fr1"])
    assert (
        await http.post("/api/booths/fr/seats/fr1/mic", json={"on": True}, headers=FR)
    ).status_code == 200
    await asyncio.sleep(0.3)  # let the console see the seat live once
    await fr.close()  # the seat's browser vanishes

    async def alarmed():
        status = (await http.get("/api/tech/status", headers=TECH)).json()
        return [a for a in status["alarms"] if a["kind"] == "seat_link_lost"]

    (alarm,) = await poll(alarmed)
    assert alarm["subject"] == "fr/fr1"
    assert server.runtime.engine.live_source("fr") is None


@pytest.mark.webrtc
async def test_recording_through_the_api(server, tmp_path):
    server.app.state.console.recording.directory = tmp_path
    http = server.http
    floor = await publish(http, "/whip/floor", "floor-demo-token", 440)
    try:
        await server.wait_flowing(["room"])
        r = await http.post("/api/tech/recording", json={"on": True}, headers=TECH)
        assert r.status_code == 200 and r.json()["on"] is True
        listener = await listen(http, "floor")
        await listener.heard.collect(60)  # about a second of real audio
        await listener.close()
        r = await http.post("/api/tech/recording", json={"on": False}, headers=TECH)
        assert r.json()["on"] is False
        (session,) = (await http.get("/api/tech/recordings", headers=TECH)).json()
        assert {f["name"] for f in session["files"]} == {
            f"{c}.opus" for c in server.runtime.config.channels
        }
        r = await http.get(f"/api/tech/recordings/{session['name']}/en.opus", headers=TECH)
        assert r.status_code == 200 and r.headers["content-type"] == "audio/ogg"
        with av.open(io.BytesIO(r.content)) as container:
            pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
        assert tone_db(pcm[9600:].astype(np.float32), 440) > -20, "EN carries the floor"
        r = await http.get(f"/api/tech/recordings/{session['name']}/..%2Fx.opus", headers=TECH)
        assert r.status_code == 404
    finally:
        await floor.close()


async def _next_levels(ws, predicate, frames=100):
    for _ in range(frames):
        frame = json.loads(await ws.receive_text())
        if frame["type"] == "levels" and predicate(frame["levels"]):
            return frame["levels"]
    raise AssertionError("the expected levels never came")


@pytest.mark.webrtc
async def test_monitor_any_input_alone(server):
    http = server.http
    floor = await publish(http, "/whip/floor", "floor-demo-token", 440)
    fr = await publish(http, "/whip/booth/fr/fr1", "booth-fr-demo-token", 660)
    try:
        await server.wait_flowing(["room", "seat:fr:fr1"])
        r = await http.post(
            "/whep/monitor/seat:fr:fr1",
            content="v=0",
            headers={"Content-Type": "application/sdp", **FR},
        )
        assert r.status_code == 403
        r = await http.post(
            "/whep/monitor/nobody",
            content="v=0",
            headers={"Content-Type": "application/sdp", **TECH},
        )
        assert r.status_code == 404
        # the seat is not live: no channel carries it, the monitor does
        seat = await listen(http, "monitor/seat:fr:fr1", token="technician-demo-token")
        room = await listen(http, "monitor/room", token="technician-demo-token")
        try:
            await seat.heard.wait_for(20)
            await room.heard.wait_for(20)
            heard_seat = await seat.heard.collect(40)
            heard_room = await room.heard.collect(40)
            assert tone_db(heard_seat, 660) > -25 and tone_db(heard_seat, 440) < -50
            assert tone_db(heard_room, 440) > -25 and tone_db(heard_room, 660) < -50
            status = (await http.get("/api/tech/status", headers=TECH)).json()
            assert all(c["listeners"] == 0 for c in status["channels"]), (
                "monitors are not listeners"
            )
            assert (await http.delete(seat.location)).status_code == 204
        finally:
            await seat.close()
            await room.close()
    finally:
        await floor.close()
        await fr.close()
