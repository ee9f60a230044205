"""Demo mode: recorded speech on the floor and three booths, every channel audible and distinct."""

import asyncio
import os
import signal
import sys

import httpx
import numpy as np
import pytest

from router.app import create_app
from router.media.engine import Feed
from tests.conftest import ROOT, free_port, start_server
from tests.signals import decode_packets
from tests.webrtc_clients import listen

pytestmark = pytest.mark.webrtc

CHANNELS = ("floor", "en", "fr", "ne", "es")


class Tap:
    def __init__(self):
        self.packets = []

    def offer(self, packet):
        self.packets.append(packet)


def rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


async def test_demo_channels_are_audible_and_distinct(event_config, loopback_ice):
    app = create_app(event_config, ice_hosts=["127.0.0.1"], demo=True)
    srv, task, url = await start_server(app)
    rt = app.state.runtime
    try:
        assert rt.engine.live_source("en") is None, "the floor speaks English: EN carries the floor"
        for ch in ("fr", "ne", "es"):
            assert rt.engine.live_source(ch) == f"seat:{ch}:{ch}1"
        # taps on the engine see every channel on one tick timeline, so they can be compared
        taps = {ch: Tap() for ch in CHANNELS}
        for ch, tap in taps.items():
            rt.engine.subscribe(tap, Feed(ch))
        async with httpx.AsyncClient(base_url=url, timeout=20) as http:
            peer = await listen(http, "ne")
            audio = await peer.heard.collect(150)
            await peer.close()
        assert rms_db(audio) > -40, "the NE channel carries speech over WebRTC"
        start = min(len(t.packets) for t in taps.values())
        pcm = {ch: decode_packets(t.packets[start - 150 : start]) for ch, t in taps.items()}
        for ch in CHANNELS:
            assert rms_db(pcm[ch]) > -40, f"{ch} is audible"
        assert correlation(pcm["en"], pcm["floor"]) > 0.9
        for ch in ("fr", "ne", "es"):
            assert abs(correlation(pcm[ch], pcm["floor"])) < 0.5, f"{ch} is its own speech"
        assert abs(correlation(pcm["fr"], pcm["es"])) < 0.5
    finally:
        srv.should_exit = True
        await task


async def test_demo_command_serves_and_stops_cleanly(loopback_ice):
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "router", "demo", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            health = None
            for _ in range(200):
                try:
                    health = (await http.get("/api/health")).json()
                    if health["ticks"] > 25:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            assert health and health["ticks"] > 25, health
            page = await http.get("/")
            assert page.status_code == 200 and "listener.js" in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert f"http://127.0.0.1:{port}/" in out.decode()
