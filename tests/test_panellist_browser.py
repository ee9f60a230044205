"""The panellist page in real headless Chromium: its fake microphone's tone reaches the floor,
it hears the floor without its own voice, mute works, and it can choose a language channel."""

import asyncio
from pathlib import Path

import pytest

from tests.browser import analyser_hz, chromium
from tests.media_files import heard_db, write_wav
from tests.webrtc_clients import listen, publish

pytestmark = [pytest.mark.browser, pytest.mark.webrtc]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
MIC_HZ, FLOOR_HZ = 550.0, 440.0


async def floor_level(listener, freq: float) -> float:
    await listener.heard.collect(15)  # what was in flight
    return heard_db(await listener.heard.collect(40), freq)


async def test_panellist_page_speaks_into_the_floor(server, tmp_path):
    mic = write_wav(tmp_path / "mic.wav", MIC_HZ, 10.0, rate=48000, channels=1, amplitude=0.3)
    http = server.http
    room = await publish(http, "/whip/floor", "floor-demo-token", FLOOR_HZ, 0.2)
    listener = await listen(http, "floor")
    try:
        flags = [f"--use-file-for-fake-audio-capture={mic}"]
        async with chromium(extra_flags=flags) as browser:
            context = await browser.new_context(viewport={"width": 420, "height": 1000})
            await context.grant_permissions(["microphone"], origin=server.url)
            page = await context.new_page()
            await page.goto(f"{server.url}/panellist/landry?token=panellist-demo-token")
            await page.get_by_text("Joining as Guillaume Landry (ECPAT)").wait_for()
            await page.get_by_role("button", name="Join the panel").click()
            await page.wait_for_function("window.panellist.state === 'live'", timeout=15000)

            settings = await page.evaluate("window.panellist.micSettings")
            assert settings["echoCancellation"] is True, settings
            # the page's microphone is on the floor, heard by a listener of the floor channel
            assert await floor_level(listener, MIC_HZ) > -35
            engine = server.runtime.engine
            assert "panellist:landry" in engine.source_ids()
            # the page hears the floor (the room's 440 Hz) and not its own 550 Hz
            await page.wait_for_timeout(300)
            assert await analyser_hz(page, "panellist", "returnAnalyser") == pytest.approx(
                FLOOR_HZ, abs=25
            )
            assert await analyser_hz(page, "panellist", "micAnalyser") == pytest.approx(
                MIC_HZ, abs=25
            )

            # mute: the floor loses the panellist at once; unmute brings them back
            mute = page.get_by_role("button", name="Mute")
            await mute.click()
            assert (
                await page.get_by_role("button", name="Unmute").get_attribute("aria-pressed")
                == "true"
            )
            assert await floor_level(listener, MIC_HZ) < -50
            await page.get_by_role("button", name="Unmute").click()
            assert await floor_level(listener, MIC_HZ) > -35

            # choose Nepali: the same connection now carries the NE channel, still minus them
            await page.get_by_label("Channel").select_option("ne")
            await page.wait_for_function("window.panellist.channel === 'ne'")
            session = next(
                s for s in server.runtime.peers.sessions() if s.source_id == "panellist:landry"
            )
            for _ in range(50):
                feed = engine.feed_of(session.outgoing)
                if feed is not None and feed.channel == "ne":
                    break
                await asyncio.sleep(0.02)
            assert feed is not None and (feed.channel, feed.minus) == ("ne", "panellist:landry")

            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "panellist.png"), full_page=True)
            await page.get_by_role("button", name="Leave the panel").click()
            for _ in range(100):
                if "panellist:landry" not in engine.source_ids():
                    break
                await asyncio.sleep(0.02)
            assert "panellist:landry" not in engine.source_ids(), "leaving ends the session"
            await context.close()
    finally:
        for peer in (room, listener):
            await peer.close()
            if peer.heard.task is not None:
                await asyncio.gather(peer.heard.task, return_exceptions=True)
