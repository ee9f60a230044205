"""Floor -> listener through real peers and real Opus: the band and the loudness survive."""

import numpy as np
import pyloudnorm
import pytest

from tests.signals import RATE, steady_tone_db
from tests.webrtc_clients import listen, publish

pytestmark = pytest.mark.webrtc

BAND = (125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 6000.0, 8000.0, 10000.0, 12000.0, 15000.0)
AMPLITUDE = 0.04  # per tone: eleven of them stay well below full scale


async def test_floor_passes_125_hz_to_15_khz_and_same_source_channels_agree(server):
    floor = await publish(server.http, "/whip/floor", "floor-demo-token", BAND, AMPLITUDE)
    await server.wait_flowing({"room"})
    heard = {ch: await listen(server.http, ch) for ch in ("floor", "en")}
    try:
        for peer in heard.values():
            await peer.heard.wait_for(25)
        audio = {ch: await peer.heard.collect(100) for ch, peer in heard.items()}

        levels = np.array([steady_tone_db(audio["floor"], f) for f in BAND])
        response = levels - np.median(levels)
        worst = dict(zip(BAND, np.round(response, 1), strict=True))
        assert np.all(np.abs(response) <= 3.0), f"dB against the band's median: {worst}"
        input_db = 20 * np.log10(AMPLITUDE)
        # aiortc's receiver hands mono as stereo at -3 dB; the rest of the chain is unity gain.
        assert abs(np.median(levels) - input_db) < 6.0

        meter = pyloudnorm.Meter(RATE)
        lufs = {ch: meter.integrated_loudness(a.astype(np.float64)) for ch, a in audio.items()}
        assert abs(lufs["floor"] - lufs["en"]) <= 1.0, lufs
    finally:
        for peer in heard.values():
            await peer.close()
        await floor.close()
