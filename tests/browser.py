"""Headless Debian Chromium driven by Playwright, kept on loopback."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    # no lookups of anything but loopback, no background traffic
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("Debian's chromium is required: apt-get install chromium")
    return path


@asynccontextmanager
async def chromium(extra_flags: list[str] | None = None) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_FLAGS + (extra_flags or [])
        )
        try:
            yield browser
        finally:
            await browser.close()


# Dominant frequency seen by the page's own WebAudio analyser, as the median of several reads.
DOMINANT_FREQUENCY_JS = """async () => {
  const a = window.listener.analyser;
  const bins = new Float32Array(a.frequencyBinCount);
  const hz = a.context.sampleRate / a.fftSize;
  const found = [];
  for (let i = 0; i < 10; i++) {
    await new Promise(r => setTimeout(r, 100));
    a.getFloatFrequencyData(bins);
    let best = 5;
    for (let k = 5; k < bins.length; k++) if (bins[k] > bins[best]) best = k;
    found.push({hz: best * hz, db: bins[best]});
  }
  found.sort((x, y) => x.hz - y.hz);
  return found[5];
}"""


# The dominant frequency one named analyser of a page object sees (`window[page][name]`), as
# the median of nine reads: the booth, floor and panellist pages expose theirs this way.
ANALYSER_DOMINANT_JS = """async ([page, name]) => {
  const a = window[page][name];
  const bins = new Float32Array(a.frequencyBinCount);
  const hz = a.context.sampleRate / a.fftSize;
  const found = [];
  for (let i = 0; i < 9; i++) {
    await new Promise(r => setTimeout(r, 100));
    a.getFloatFrequencyData(bins);
    let best = 5;
    for (let k = 5; k < bins.length; k++) if (bins[k] > bins[best]) best = k;
    found.push(best * hz);
  }
  found.sort((x, y) => x - y);
  return found[4];
}"""


async def analyser_hz(page: Page, page_object: str, analyser: str) -> float:
    """The dominant frequency `window[page_object][analyser]` sees (median of nine reads)."""
    return await page.evaluate(ANALYSER_DOMINANT_JS, [page_object, analyser])
