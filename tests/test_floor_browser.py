"""The floor station page in real headless Chromium: the desk feed (a fake line input) reaches
the floor untouched by voice processing, and the room return it plays carries the remote
panellist but never the room itself."""

import asyncio
from pathlib import Path

import pytest

from tests.browser import analyser_hz, chromium
from tests.media_files import heard_db, write_wav
from tests.webrtc_clients import listen, publish

pytestmark = [pytest.mark.browser, pytest.mark.webrtc]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DESK_HZ, PANEL_HZ = 440.0, 660.0


async def test_floor_station_sends_the_desk_and_plays_the_room_return(server, tmp_path):
    desk = write_wav(tmp_path / "desk.wav", DESK_HZ, 10.0, rate=48000, channels=1, amplitude=0.3)
    http = server.http
    panellist = await publish(http, "/whip/panellist/tamang", "panellist-demo-token", PANEL_HZ)
    listener = await listen(http, "floor")
    try:
        flags = [f"--use-file-for-fake-audio-capture={desk}"]
        async with chromium(extra_flags=flags) as browser:
            context = await browser.new_context(viewport={"width": 900, "height": 1000})
            await context.grant_permissions(["microphone"], origin=server.url)
            page = await context.new_page()
            await page.goto(f"{server.url}/floor?token=floor-demo-token")
            await page.get_by_role("button", name="Start the floor").click()
            await page.wait_for_function("window.floorStation.state === 'live'", timeout=15000)

            settings = await page.evaluate("window.floorStation.inputSettings")
            for processing in ("echoCancellation", "noiseSuppression", "autoGainControl"):
                assert settings[processing] is False, settings
            # the desk is on the floor
            await listener.heard.collect(15)
            floor = await listener.heard.collect(40)
            assert heard_db(floor, DESK_HZ) > -25 and heard_db(floor, PANEL_HZ) > -25
            # the room return: the panellist, never the desk feed itself
            await page.wait_for_timeout(300)
            assert await analyser_hz(page, "floorStation", "returnAnalyser") == pytest.approx(
                PANEL_HZ, abs=25
            )
            assert await analyser_hz(page, "floorStation", "inputAnalyser") == pytest.approx(
                DESK_HZ, abs=25
            )
            session = next(s for s in server.runtime.peers.sessions() if s.source_id == "room")
            feed = server.runtime.engine.feed_of(session.outgoing)
            assert (feed.channel, feed.minus) == ("floor", "room")

            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "floor-station.png"), full_page=True)
            await page.get_by_role("button", name="Stop the floor").click()
            engine = server.runtime.engine
            for _ in range(100):
                if "room" not in engine.source_ids():
                    break
                await asyncio.sleep(0.02)
            assert "room" not in engine.source_ids()
            await context.close()
    finally:
        for peer in (panellist, listener):
            await peer.close()
            if peer.heard.task is not None:
                await asyncio.gather(peer.heard.task, return_exceptions=True)


async def test_floor_station_reconnects_after_the_server_drops_it(server, tmp_path):
    """The room computer has nobody watching it: when its session is lost it publishes again
    by itself (publisher.js WhipLink), and the desk is back on the floor."""
    desk = write_wav(tmp_path / "desk.wav", DESK_HZ, 30.0, rate=48000, channels=1, amplitude=0.3)
    flags = [f"--use-file-for-fake-audio-capture={desk}"]
    async with chromium(extra_flags=flags) as browser:
        context = await browser.new_context()
        await context.grant_permissions(["microphone"], origin=server.url)
        page = await context.new_page()
        await page.goto(f"{server.url}/floor?token=floor-demo-token")
        await page.get_by_role("button", name="Start the floor").click()
        await page.wait_for_function("window.floorStation.state === 'live'", timeout=15000)
        (lost,) = [s for s in server.runtime.peers.sessions() if s.source_id == "room"]
        await server.runtime.peers.close(lost.id, reason="dropped by the test", lost=True)

        # ICE consent runs out in the browser, the page says so and publishes again.
        await page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('Connection lost')",
            timeout=45000,
        )
        await page.wait_for_function("window.floorStation.state === 'live'", timeout=30000)
        (again,) = [s for s in server.runtime.peers.sessions() if s.source_id == "room"]
        assert again.id != lost.id
        listener = await listen(server.http, "floor")
        try:
            await listener.heard.collect(15)
            assert heard_db(await listener.heard.collect(40), DESK_HZ) > -25
        finally:
            await listener.close()
            if listener.heard.task is not None:
                await asyncio.gather(listener.heard.task, return_exceptions=True)
        await context.close()
