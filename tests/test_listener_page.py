"""The listener page in real headless Chromium on a phone-sized screen.

Tones: floor 440 Hz, FR seat 660 Hz (live), ES seat 880 Hz (live). The page's own WebAudio
analyser says what the listener hears.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page

from router.app import create_app
from router.signalling.peers import SessionKind
from tests.browser import DOMINANT_FREQUENCY_JS, chromium
from tests.conftest import RunningServer, start_server
from tests.webrtc_clients import publish

pytestmark = [pytest.mark.browser, pytest.mark.webrtc]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
FLOOR_HZ, FR_HZ, ES_HZ = 440.0, 660.0, 880.0
PHONE = {"width": 390, "height": 844}
LISTENER_TOKEN = "listener-secret-token"

# Level (dB) of each asked frequency in the page's analyser: the loudest bin within ±1 bin
# (a source may be resampled by up to 0.5 %), as the median of several reads.
LEVELS_JS = """async (freqs) => {
  const a = window.listener.analyser;
  const bins = new Float32Array(a.frequencyBinCount);
  const hz = a.context.sampleRate / a.fftSize;
  const reads = freqs.map(() => []);
  for (let i = 0; i < 9; i++) {
    await new Promise(r => setTimeout(r, 100));
    a.getFloatFrequencyData(bins);
    freqs.forEach((f, j) => {
      const k = Math.round(f / hz);
      reads[j].push(Math.max(bins[k - 1], bins[k], bins[k + 1]));
    });
  }
  return reads.map(r => r.sort((x, y) => x - y)[4]);
}"""


async def levels(page: Page, *freqs: float) -> list[float]:
    return await page.evaluate(LEVELS_JS, list(freqs))


async def dominant(page: Page) -> float:
    return (await page.evaluate(DOMINANT_FREQUENCY_JS))["hz"]


async def mic_on(http: httpx.AsyncClient, booth: str, seat: str) -> None:
    r = await http.post(
        f"/api/booths/{booth}/seats/{seat}/mic",
        json={"on": True},
        headers={"Authorization": f"Bearer booth-{booth}-demo-token"},
    )
    assert r.status_code == 200, r.text


@pytest.fixture
async def live_event(server) -> AsyncIterator[RunningServer]:
    http = server.http
    pubs = [
        await publish(http, "/whip/floor", "floor-demo-token", FLOOR_HZ),
        await publish(http, "/whip/booth/fr/fr1", "booth-fr-demo-token", FR_HZ),
        await publish(http, "/whip/booth/es/es1", "booth-es-demo-token", ES_HZ),
    ]
    await server.wait_flowing({"room", "seat:fr:fr1", "seat:es:es1"})
    await mic_on(http, "fr", "fr1")
    await mic_on(http, "es", "es1")
    yield server
    for pub in pubs:
        await pub.close()


@pytest.fixture
async def token_server(event_config, loopback_ice) -> AsyncIterator[RunningServer]:
    """The default event, with registration: listeners need the listener token."""
    tokens = event_config.tokens.model_copy(update={"listener": LISTENER_TOKEN})
    app = create_app(event_config.model_copy(update={"tokens": tokens}), ice_hosts=["127.0.0.1"])
    srv, task, url = await start_server(app)
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        yield RunningServer(app, url, http)
    srv.should_exit = True
    await task


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


async def phone(browser: Browser, url: str, locale: str = "en-GB") -> tuple[BrowserContext, Page]:
    context = await browser.new_context(
        viewport=PHONE, locale=locale, is_mobile=True, has_touch=True, device_scale_factor=2
    )
    origin = "/".join(url.split("/", 3)[:3])
    # Chromium offers loopback ICE candidates only to a page with a media permission.
    await context.grant_permissions(["microphone"], origin=origin)
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_function("window.listener && window.listener.state !== 'loading'")
    return context, page


async def wait_live(page: Page, timeout: float = 15000) -> None:
    await page.wait_for_function("window.listener.state === 'live'", timeout=timeout)


def listener_sessions(server: RunningServer) -> list:
    return [s for s in server.runtime.peers.sessions() if s.kind == SessionKind.LISTENER]


# ------------------------------------------------------------------------------ tests ---


async def test_one_tap_plays_french_and_a_click_on_es_changes_the_tone(live_event, browser):
    server = live_event
    context, page = await phone(browser, f"{server.url}/?lang=fr")
    try:
        french = page.get_by_role("button", name="Français")
        assert await french.get_attribute("aria-pressed") == "true"
        assert await page.locator("#token-block").is_hidden(), "the event is public"
        await page.wait_for_function("window.listener.started === true")
        assert await page.locator("#notice").is_hidden()

        await page.get_by_role("button", name="Start listening").tap()
        await wait_live(page)
        await page.wait_for_timeout(400)
        assert await dominant(page) == pytest.approx(FR_HZ, abs=25)
        assert await page.locator("#status").inner_text() == "Live: Français"
        assert await page.get_by_role("button", name="Stop listening").is_visible()
        session_url = await page.evaluate("window.listener.sessionUrl")

        await page.get_by_role("button", name="Español").tap()
        await page.wait_for_function("window.listener.serverChoice.channel === 'es'")
        await page.wait_for_timeout(300)
        assert await dominant(page) == pytest.approx(ES_HZ, abs=25)
        # the same connection: no new session, no reconnection
        assert await page.evaluate("window.listener.sessionUrl") == session_url
        assert await page.evaluate("window.listener.reconnects") == 0
        sessions = listener_sessions(server)
        assert len(sessions) == 1 and server.runtime.peers.channel_of(sessions[0]) == "es"
        assert "lang=es" in page.url
        assert await page.get_by_role("button", name="Español").get_attribute("aria-pressed") == (
            "true"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "listener-phone-live.png"), full_page=True)

        await page.get_by_role("button", name="Stop listening").tap()
        await page.wait_for_function("window.listener.state === 'idle'")
        for _ in range(100):
            if not listener_sessions(server):
                break
            await asyncio.sleep(0.05)
        assert listener_sessions(server) == [], "stopping ends the WHEP session"
    finally:
        await context.close()


async def test_page_reconnects_after_the_server_drops_it(live_event, browser):
    server = live_event
    context, page = await phone(browser, f"{server.url}/?lang=es")
    try:
        await page.get_by_role("switch", name="Hear the original underneath").check()
        await page.get_by_label("Volume").fill("60")
        await page.get_by_role("button", name="Start listening").tap()
        await wait_live(page)
        await page.wait_for_function("window.listener.serverChoice.underneath === true")
        await page.wait_for_timeout(400)
        assert await dominant(page) == pytest.approx(ES_HZ, abs=25)
        old_url = await page.evaluate("window.listener.sessionUrl")

        (session,) = listener_sessions(server)
        await server.runtime.peers.close(session.id)

        await page.wait_for_function(
            f"window.listener.reconnects >= 1 && window.listener.state === 'live' "
            f"&& window.listener.sessionUrl !== {old_url!r}",
            timeout=30000,
        )
        await page.wait_for_timeout(400)
        assert await dominant(page) == pytest.approx(ES_HZ, abs=25)
        assert await page.evaluate("window.listener.serverChoice") == {
            "channel": "es",
            "underneath": True,
        }
        (again,) = listener_sessions(server)
        assert again.id != session.id
        assert server.runtime.peers.channel_of(again) == "es" and again.underneath
        assert await page.get_by_label("Volume").input_value() == "60"
        assert "lang=es" in page.url

        # A silent loss (packets stop, nothing closes, as when a network goes away): the page
        # notices the stall, makes a new session and ends the old one.
        server.runtime.engine.unsubscribe(again.outgoing)
        await page.wait_for_function(
            "window.listener.reconnects >= 2 && window.listener.state === 'live'", timeout=30000
        )
        await page.wait_for_timeout(400)
        assert await dominant(page) == pytest.approx(ES_HZ, abs=25)
        for _ in range(100):
            ids = [s.id for s in listener_sessions(server)]
            if len(ids) == 1 and again.id not in ids:
                break
            await asyncio.sleep(0.05)
        (third,) = listener_sessions(server)  # the stalled session was DELETEd by the page
        assert third.id not in (session.id, again.id)
        assert server.runtime.peers.channel_of(third) == "es" and third.underneath
    finally:
        await context.close()


async def test_original_underneath_is_mixed_in_webaudio_with_a_balance(live_event, browser):
    server = live_event
    context, page = await phone(browser, f"{server.url}/?lang=fr")
    try:
        await page.get_by_role("button", name="Start listening").tap()
        await wait_live(page)
        await page.wait_for_timeout(400)
        floor, fr = await levels(page, FLOOR_HZ, FR_HZ)
        assert floor - fr == pytest.approx(-20, abs=6), "off: the event's own mix (floor bed)"
        assert await page.get_by_label("Balance").is_hidden()

        await page.get_by_role("switch", name="Hear the original underneath").check()
        await page.wait_for_function("window.listener.serverChoice.underneath === true")
        balance = page.get_by_label("Balance")
        assert await balance.is_visible()

        await balance.press("Home")  # interpretation only
        await page.wait_for_timeout(300)
        floor, fr = await levels(page, FLOOR_HZ, FR_HZ)
        assert fr - floor > 35, (floor, fr)

        await balance.press("End")  # original only
        await page.wait_for_timeout(300)
        floor, fr = await levels(page, FLOOR_HZ, FR_HZ)
        assert floor - fr > 35, (floor, fr)
        assert await dominant(page) == pytest.approx(FLOOR_HZ, abs=25)

        await balance.fill("50")  # both at full level
        await page.wait_for_timeout(300)
        floor, fr = await levels(page, FLOOR_HZ, FR_HZ)
        assert floor - fr == pytest.approx(0, abs=6), (floor, fr)
        assert "original 100" in (await balance.get_attribute("aria-valuetext") or "")

        await page.get_by_role("switch", name="Hear the original underneath").uncheck()
        await page.wait_for_function("window.listener.serverChoice.underneath === false")
        (session,) = listener_sessions(server)
        assert server.runtime.engine.feed_of(session.under) is None, "no second feed when off"
    finally:
        await context.close()


async def test_page_text_follows_the_browser_language_and_the_switcher(server, browser):
    cases = {
        "fr-FR": ("fr", "Commencer l’écoute", "Choisissez une langue", "Original (salle)"),
        "ne": ("ne", "सुन्न सुरु गर्नुहोस्", "भाषा छान्नुहोस्", "मूल आवाज (सभाकक्ष)"),
        "de-DE": ("en", "Start listening", "Choose a language", "Floor (original)"),
    }
    for locale, (code, start, heading, floor_name) in cases.items():
        context, page = await phone(browser, f"{server.url}/", locale=locale)
        try:
            assert await page.evaluate("document.documentElement.lang") == code
            assert await page.get_by_role("button", name=start).is_visible()
            assert await page.get_by_role("heading", name=heading).is_visible()
            assert await page.get_by_role("button", name=floor_name).is_visible()
            # the languages keep their own names whatever the page language
            for name in ("English", "Français", "नेपाली", "Español"):
                assert await page.get_by_role("button", name=name, exact=True).is_visible()
            assert await page.locator("#ui-lang").input_value() == code
            # nobody publishes: the page says the event has not started, in its language
            await page.wait_for_function("window.listener.started === false")
            assert await page.locator("#notice").is_visible()
            if code == "ne":
                assert "सुरु भएको छैन" in await page.locator("#notice").inner_text()
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "listener-phone-ne.png"))
            if code == "fr":
                assert "pas encore commencé" in await page.locator("#notice").inner_text()
        finally:
            await context.close()

    context, page = await phone(browser, f"{server.url}/", locale="en-GB")
    try:
        await page.get_by_label("Page language").select_option("es")
        assert await page.evaluate("document.documentElement.lang") == "es"
        assert await page.get_by_role("button", name="Empezar a escuchar").is_visible()
        assert await page.get_by_label("Idioma de la página").input_value() == "es"
        await page.reload()
        await page.wait_for_function("window.listener && window.listener.state === 'idle'")
        assert await page.get_by_role("button", name="Empezar a escuchar").is_visible()
    finally:
        await context.close()


INTERACTIVE_ROLES = {"button", "slider", "checkbox", "switch", "combobox", "textbox", "link"}


async def test_registration_keyboard_and_accessible_names(token_server, browser):
    server = token_server
    context, page = await phone(browser, f"{server.url}/?lang=fr")
    try:
        token = page.get_by_role("textbox", name="Access code")
        assert await token.is_visible(), "the event requires registration: the page asks"
        await page.get_by_role("button", name="Start listening").tap()
        await page.wait_for_function("window.listener.state === 'error'")
        assert "access code" in (await page.locator("#status").inner_text()).lower()
        assert await page.evaluate("document.activeElement.id") == "token"

        await token.fill("not-the-right-token")
        await page.get_by_role("button", name="Try again").tap()
        await page.wait_for_function("window.listener.state === 'error'")
        assert "not valid" in await page.locator("#status").inner_text()
        assert listener_sessions(server) == []

        # every control has an accessible name (Chromium's own accessibility tree)
        await page.get_by_role("switch", name="Hear the original underneath").check()
        cdp = await context.new_cdp_session(page)
        tree = await cdp.send("Accessibility.getFullAXTree")
        controls = [
            n
            for n in tree["nodes"]
            if not n.get("ignored") and n.get("role", {}).get("value") in INTERACTIVE_ROLES
        ]
        unnamed = [n for n in controls if not str(n.get("name", {}).get("value", "")).strip()]
        assert unnamed == [], unnamed
        roles = [n["role"]["value"] for n in controls]
        assert roles.count("button") == 6  # five channels and start
        assert roles.count("slider") == 2 and roles.count("combobox") == 1
        assert roles.count("textbox") == 1 and roles.count("switch") == 1

        # and the keyboard reaches every one of them
        await page.locator("body").focus()
        reached = set()
        for _ in range(16):
            await page.keyboard.press("Tab")
            reached.add(
                await page.evaluate(
                    "document.activeElement.id || document.activeElement.dataset.channel || ''"
                )
            )
        expected = {"ui-lang", "floor", "en", "fr", "ne", "es", "token", "start", "volume"}
        assert expected | {"underneath", "balance"} <= reached, reached

        # with the right token: live (the choice of language was kept)
        await token.fill(LISTENER_TOKEN)
        await page.get_by_role("button", name="Try again").press("Enter")
        await wait_live(page)
        (session,) = listener_sessions(server)
        assert server.runtime.peers.channel_of(session) == "fr"
    finally:
        await context.close()


async def test_not_started_then_started_while_listening(server, browser):
    context, page = await phone(browser, f"{server.url}/?lang=fr")
    floor = None
    try:
        await page.wait_for_function("window.listener.started === false")
        notice = page.locator("#notice")
        assert "has not started" in await notice.inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "listener-phone-not-started.png"))

        # the listener may insist: it connects and waits in silence
        await page.get_by_role("button", name="Start listening").tap()
        await wait_live(page)
        assert await notice.is_visible()

        floor = await publish(server.http, "/whip/floor", "floor-demo-token", FLOOR_HZ)
        await server.wait_flowing({"room"})
        assert await page.evaluate("window.listener.refreshStatus()") is True
        assert await notice.is_hidden()
        await page.wait_for_timeout(400)
        # FR has nobody live: it carries the floor
        assert await dominant(page) == pytest.approx(FLOOR_HZ, abs=25)
    finally:
        await context.close()
        if floor is not None:
            await floor.close()


async def test_room_page_projects_a_large_qr_code(server, browser):
    context = await browser.new_context(viewport={"width": 1920, "height": 1080})
    try:
        page = await context.new_page()
        await page.goto(f"{server.url}/room")
        qr = page.locator("figure.room-qr svg")
        box = await qr.bounding_box()
        assert box is not None and box["height"] >= 0.6 * 1080, box
        link = page.get_by_role("link", name=server.url.split("://", 1)[1])
        assert await link.get_attribute("href") == f"{server.url}/"
        for name in ("English", "Français", "नेपाली", "Español"):
            assert await page.get_by_text(name, exact=True).is_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "room-1080p.png"))
    finally:
        await context.close()
