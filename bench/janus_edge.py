"""Rough CPU cost of a Janus Streaming edge per listener (for docs/DEPLOYMENT.md sizing).

Starts Janus from the tests' generated config (loopback-only namespace, see
tests/janus_edge.py), a router with that edge and a floor publisher, then N aiortc listeners
through the router's /api/listen; reads Janus's utime+stime from /proc over 3 windows of 10 s.
Listeners do not decode (a null decoder) so they load this process as little as possible.

    unshare -n sh -c 'ip link set lo up && python -m bench.janus_edge 0 20 40'
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, rtcrtpreceiver

from router.app import create_app
from router.config import JanusEdge, load_config
from router.media.jitter import install_audio_jitter_buffer
from router.signalling.ice import restrict_host_candidates
from tests.conftest import DEFAULT_EVENT, start_server
from tests.janus_edge import (
    ADMIN_KEY,
    API_SECRET,
    ICE_ADDRESS,
    JanusProcess,
    add_ice_interface,
    free_tcp_port,
    free_udp_block,
    remove_ice_interface,
)
from tests.webrtc_clients import publish


class NullDecoder:
    def decode(self, frame):
        return []


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_window(pid: int, seconds: float = 10.0) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 1000.0


async def drain(track) -> None:
    with contextlib.suppress(Exception):
        while True:
            await track.recv()


async def listen(http: httpx.AsyncClient) -> RTCPeerConnection:
    body = (await http.post("/api/listen", json={"channel": "floor"})).json()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.on("track", lambda t: asyncio.ensure_future(drain(t)))
    await pc.setRemoteDescription(RTCSessionDescription(body["offer"], "offer"))
    restore = restrict_host_candidates([ICE_ADDRESS])
    try:
        await pc.setLocalDescription(await pc.createAnswer())
    finally:
        restore()
    r = await http.post(
        body["session"] + "/answer",
        content=pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp"},
    )
    r.raise_for_status()
    return pc


async def main(counts: list[int]) -> None:
    rtcrtpreceiver.get_decoder = lambda codec: NullDecoder()
    install_audio_jitter_buffer()
    add_ice_interface()
    restrict_host_candidates(["127.0.0.1"])
    janus = JanusProcess(Path(tempfile.mkdtemp()) / "janus", free_tcp_port())
    janus.write_config()
    janus.start()
    print(f"janus answered its HTTP API {janus.started_in:.2f} s after exec")
    config = load_config(DEFAULT_EVENT)
    edge = JanusEdge(
        id="bench",
        api_url=janus.api_url,
        api_secret=API_SECRET,
        admin_key=ADMIN_KEY,
        rtp_host="127.0.0.1",
        rtp_port_base=free_udp_block(2 * len(config.channels)),
    )
    app = create_app(config.model_copy(update={"edges": [edge]}), ice_hosts=["127.0.0.1"])
    server, task, url = await start_server(app)
    pcs: list[RTCPeerConnection] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            floor = await publish(http, "/whip/floor", "floor-demo-token", 440)
            await asyncio.wait_for(app.state.edges.edges[0].wait_ready(), 30)
            assert janus.process is not None
            for n in counts:
                while len(pcs) < n:
                    pcs.append(await listen(http))
                await asyncio.sleep(3)
                up = sum(pc.connectionState == "connected" for pc in pcs)
                windows = [await cpu_window(janus.process.pid) for _ in range(3)]
                print(
                    f"listeners={n} connected={up} janus ms CPU/s={[round(w, 1) for w in windows]}"
                )
            for pc in pcs:
                await pc.close()
            await floor.close()
    finally:
        server.should_exit = True
        await task
        janus.stop()
        remove_ice_interface()


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [0, 20, 40]))
