"""The technician console in real headless Chromium: a meter moves when a tone starts."""

from pathlib import Path

import pytest

from tests.browser import chromium
from tests.webrtc_clients import publish

pytestmark = [pytest.mark.browser, pytest.mark.webrtc]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


async def test_console_meter_moves_when_a_tone_starts(server):
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        await page.goto(f"{server.url}/tech")
        await page.get_by_label("Technician token").fill("technician-demo-token")
        await page.get_by_role("button", name="Open console").click()
        await page.wait_for_function("window.tech.connected === true")
        floor_meter = page.locator('.meter[data-name="ch:floor"] canvas')
        await floor_meter.wait_for()
        silent = float(await floor_meter.get_attribute("data-peak"))
        assert silent <= -100
        floor = await publish(server.http, "/whip/floor", "floor-demo-token", 440)
        try:
            await page.wait_for_function(
                """() => {
                  const c = document.querySelector('.meter[data-name="ch:floor"] canvas');
                  return c && Number(c.dataset.peak) > -20;
                }""",
                timeout=15000,
            )
            assert await page.locator('.meter[data-name="in:room"]').count() == 1
            assert await page.locator("#login").is_hidden()
            lamp = page.locator('.meter[data-name="ch:floor"] .lamp')
            assert await lamp.text_content() != "CLIP", "a -13 dBFS tone does not clip"
            await page.wait_for_function(
                "document.querySelector('#routing').textContent.includes('room')"
            )
            # floor language and media playback from the console
            await page.get_by_label("Floor language").select_option("fr")
            await page.wait_for_function(
                "document.querySelector('#floor-language').textContent === 'fr'"
            )
            assert server.runtime.engine.floor_language == "fr"
            await page.get_by_label("Media file").select_option("video_message.opus")
            await page.get_by_role("button", name="Play into the floor").click()
            await page.wait_for_function(
                "document.querySelector('#media-state').textContent.includes('video_message')"
            )
            assert server.runtime.engine.has_source("media")
            await page.get_by_role("button", name="Stop", exact=True).click()
            await page.wait_for_function(
                "document.querySelector('#media-state').textContent.startsWith('stopped')"
            )
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "tech-console.png"), full_page=True)
        finally:
            await floor.close()
        await context.close()
