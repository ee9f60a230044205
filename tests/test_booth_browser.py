"""The booth console in real headless Chromium: a fake microphone file, mic on, a listener of
the booth's channel receives the file's tone, and the live indicator says so."""

import asyncio
from pathlib import Path

import pytest

from tests.browser import analyser_hz, chromium
from tests.media_files import heard_db, write_wav
from tests.webrtc_clients import listen, publish

pytestmark = [pytest.mark.browser, pytest.mark.webrtc]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
MIC_HZ, FLOOR_HZ = 550.0, 440.0


async def test_booth_console_goes_live_and_the_channel_carries_the_mic(server, tmp_path):
    mic = write_wav(tmp_path / "mic.wav", MIC_HZ, 10.0, rate=48000, channels=1, amplitude=0.3)
    http = server.http
    room = await publish(http, "/whip/floor", "floor-demo-token", FLOOR_HZ, 0.2)
    listener = await listen(http, "fr")
    try:
        flags = [f"--use-file-for-fake-audio-capture={mic}"]
        async with chromium(extra_flags=flags) as browser:
            context = await browser.new_context(viewport={"width": 1200, "height": 1000})
            await context.grant_permissions(["microphone"], origin=server.url)
            page = await context.new_page()
            await page.goto(f"{server.url}/booth/fr/fr1?token=booth-fr-demo-token")
            await page.get_by_text("Booth FR – seat fr1").wait_for()
            indicator = page.locator("#live-indicator")
            assert (await indicator.text_content()).strip() == "MIC OFF"
            await page.get_by_role("button", name="Connect the console").click()
            await page.wait_for_function(
                "window.booth.connection === 'connected' && window.booth.state.seats[0].connected",
                timeout=15000,
            )
            assert not server.runtime.board.seat("fr", "fr1").live, "connecting is not going live"
            # the listener hears the floor while nobody is live
            await listener.heard.collect(15)
            assert heard_db(await listener.heard.collect(30), FLOOR_HZ) > -30

            mic_button = page.locator("#mic-button")
            await mic_button.wait_for(state="visible")
            await page.wait_for_function("!document.getElementById('mic-button').disabled")
            await mic_button.click()
            await page.wait_for_function("window.booth.live", timeout=5000)
            assert server.runtime.engine.live_source("fr") == "seat:fr:fr1"
            text = (await indicator.text_content()).strip()
            assert text.startswith("ON AIR") and "Français" in text, text
            assert await indicator.get_attribute("data-live") == "true"
            assert await mic_button.get_attribute("aria-pressed") == "true"

            # a listener of FR receives the fake microphone's tone, the floor only as the bed
            await listener.heard.collect(15)  # what was in flight
            heard = await listener.heard.collect(50)
            assert heard_db(heard, MIC_HZ) > -30
            assert heard_db(heard, FLOOR_HZ) < heard_db(heard, MIC_HZ) - 12
            # the console hears the floor (its return), its own meter shows its own voice
            assert await analyser_hz(page, "booth", "feedAnalyser") == pytest.approx(
                FLOOR_HZ, abs=25
            )
            assert await analyser_hz(page, "booth", "micAnalyser") == pytest.approx(MIC_HZ, abs=25)

            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "booth-live.png"), full_page=True)
            # the keyboard: M turns the mic off again
            await page.locator("body").press("m")
            await page.wait_for_function("!window.booth.live", timeout=5000)
            assert (await indicator.text_content()).strip() == "MIC OFF"
            assert server.runtime.engine.live_source("fr") is None

            await page.screenshot(path=str(ARTIFACTS / "booth.png"), full_page=True)
            # a reload never puts the seat on air by itself
            await mic_button.click()
            await page.wait_for_function("window.booth.live", timeout=5000)
            await page.reload()
            await page.get_by_text("Booth FR – seat fr1").wait_for()
            for _ in range(100):
                if not server.runtime.board.seat("fr", "fr1").live:
                    break
                await asyncio.sleep(0.05)
            assert not server.runtime.board.seat("fr", "fr1").live
            await context.close()
    finally:
        for peer in (room, listener):
            await peer.close()
