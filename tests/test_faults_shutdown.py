"""Graceful shutdown: SIGTERM closes every peer and finishes every recording (valid Ogg)."""

from __future__ import annotations

import asyncio
import signal
import struct

import av
import httpx
import pytest

from router.monitoring.oggopus import ogg_crc
from tests.server_process import event_file, start_process
from tests.webrtc_clients import listen, publish

pytestmark = pytest.mark.webrtc

TECH = {"Authorization": "Bearer technician-demo-token"}
FR = {"Authorization": "Bearer booth-fr-demo-token"}


def ogg_pages(data: bytes) -> list[tuple[int, int]]:
    """(header flags, granule) of every page; asserts each page's structure and CRC."""
    pages, pos = [], 0
    while pos < len(data):
        assert data[pos : pos + 4] == b"OggS", f"no page at byte {pos}"
        flags = data[pos + 5]
        granule = struct.unpack_from("<q", data, pos + 6)[0]
        (crc,) = struct.unpack_from("<I", data, pos + 22)
        segments = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + segments]
        end = pos + 27 + segments + sum(lacing)
        page = bytearray(data[pos:end])
        page[22:26] = b"\0\0\0\0"
        assert ogg_crc(bytes(page)) == crc, f"bad CRC in the page at byte {pos}"
        pages.append((flags, granule))
        pos = end
    return pages


async def test_sigterm_closes_every_peer_and_finishes_every_recording(tmp_path, loopback_ice):
    recordings = tmp_path / "recordings"
    server = await start_process(event_file(tmp_path), ["--recordings", str(recordings)])
    peers = []
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
            floor = await publish(http, "/whip/floor", "floor-demo-token", 440)
            seat = await publish(http, "/whip/booth/fr/fr1", "booth-fr-demo-token", 660)
            listener = await listen(http, "fr")
            peers = [floor, seat, listener]
            for _ in range(100):
                r = await http.post("/api/booths/fr/seats/fr1/mic", json={"on": True}, headers=FR)
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.1)  # until the seat's audio has arrived
            assert r.status_code == 200, r.text
            r = await http.post("/api/tech/recording", json={"on": True}, headers=TECH)
            assert r.status_code == 200 and r.json()["on"]
            await listener.heard.wait_for(100, timeout=20)  # 2 s and more on the air
            assert all(p.pc.connectionState == "connected" for p in peers)

            assert await server.stop(signal.SIGTERM) == 0, server.output()

        # every client is told at once (DTLS close), not left to time out
        for _ in range(100):
            if all(p.pc.connectionState == "closed" for p in peers):
                break
            await asyncio.sleep(0.1)
        assert [p.pc.connectionState for p in peers] == ["closed"] * 3
    finally:
        for peer in peers:
            await peer.close()
        await server.stop(signal.SIGKILL)

    (folder,) = list(recordings.iterdir())
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted(f"{c}.opus" for c in ("floor", "en", "fr", "ne", "es"))
    for name in files:
        data = (folder / name).read_bytes()
        pages = ogg_pages(data)
        assert pages[0][0] & 0x02, "the first page begins the stream"
        assert pages[-1][0] & 0x04, f"{name}: the last page ends the stream (finished)"
        with av.open(str(folder / name)) as container:
            frames = list(container.decode(audio=0))
        seconds = sum(f.samples for f in frames) / 48000
        assert seconds >= 1.5, f"{name}: {seconds:.2f} s"
        assert pages[-1][1] >= seconds * 48000 - 960  # the last granule covers the audio
