"""The listener page in real headless Chromium: the page's WebAudio analyser hears the FR tone."""

from pathlib import Path

import pytest

from tests.browser import DOMINANT_FREQUENCY_JS, chromium
from tests.webrtc_clients import publish

pytestmark = [pytest.mark.browser, pytest.mark.webrtc]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


async def test_listener_page_plays_french(server):
    http = server.http
    floor = await publish(http, "/whip/floor", "floor-demo-token", 440)
    fr = await publish(http, "/whip/booth/fr/fr1", "booth-fr-demo-token", 660)
    try:
        await fr.heard.wait_for(5)
        r = await http.post(
            "/api/booths/fr/seats/fr1/mic",
            json={"on": True},
            headers={"Authorization": "Bearer booth-fr-demo-token"},
        )
        assert r.status_code == 200, r.text
        async with chromium() as browser:
            context = await browser.new_context(viewport={"width": 390, "height": 844})
            await context.grant_permissions(["microphone"], origin=server.url)
            page = await context.new_page()
            await page.goto(f"{server.url}/?lang=fr")
            await page.get_by_role("button", name="Français").wait_for()
            assert (
                await page.get_by_role("button", name="Français").get_attribute("aria-pressed")
                == "true"
            )
            await page.get_by_role("button", name="Start listening").click()
            await page.wait_for_function("window.listener.state === 'live'", timeout=15000)
            await page.wait_for_timeout(500)
            peak = await page.evaluate(DOMINANT_FREQUENCY_JS)
            assert peak["hz"] == pytest.approx(660, abs=25), peak
            assert server.runtime.engine.consumers("fr") == 1

            # switching on the same connection brings the floor tone (ES has nobody live)
            await page.get_by_role("button", name="Español").click()
            await page.wait_for_function("window.listener.channel === 'es'")
            await page.wait_for_timeout(400)
            peak = await page.evaluate(DOMINANT_FREQUENCY_JS)
            assert peak["hz"] == pytest.approx(440, abs=25), peak
            assert "lang=es" in page.url
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "listener-phone.png"))
            await context.close()
    finally:
        await floor.close()
        await fr.close()
