"""Real aiortc clients for the tests: WHIP publishers with a sine tone, WHEP listeners."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from dataclasses import dataclass, field

import av
import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tests.signals import RATE, sine

FRAME = 960


class SineTrack(MediaStreamTrack):
    """A microphone that plays one sine (or the sum of several, each at `amplitude`), paced
    against absolute deadlines."""

    kind = "audio"

    def __init__(self, freq: float | tuple[float, ...], amplitude: float = 0.3) -> None:
        super().__init__()
        self.freq = freq
        self.amplitude = amplitude
        self._n = 0
        self._t0: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._t0 is None:
            self._t0 = time.monotonic()
        delay = self._t0 + self._n * FRAME / RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        freqs = self.freq if isinstance(self.freq, tuple) else (self.freq,)
        pcm = sum(sine(f, FRAME, self.amplitude, self._n * FRAME) for f in freqs)
        frame = av.AudioFrame.from_ndarray(
            (pcm * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        frame.pts = self._n * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        self._n += 1
        return frame


@dataclass
class Recorder:
    """Consumes a received track: mono blocks with their arrival times."""

    # repr=False: asyncio formats a finished task's result, and that would be all the audio
    blocks: list[np.ndarray] = field(default_factory=list, repr=False)
    arrivals: list[float] = field(default_factory=list, repr=False)
    task: asyncio.Task | None = field(default=None, repr=False)

    def start(self, track: MediaStreamTrack) -> None:
        self.task = asyncio.ensure_future(self._run(track))

    async def _run(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
                self.blocks.append(pcm.astype(np.float32) / 32768)
                self.arrivals.append(time.monotonic())
        except MediaStreamError:
            pass

    def mark(self) -> int:
        return len(self.blocks)

    def since(self, mark: int, skip: int = 0) -> np.ndarray:
        part = self.blocks[mark + skip :]
        return np.concatenate(part) if part else np.zeros(0, np.float32)

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.blocks) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"received {len(self.blocks)} of {count} blocks")
            await asyncio.sleep(0.02)

    async def collect(self, blocks: int) -> np.ndarray:
        mark = self.mark()
        await self.wait_for(mark + blocks)
        return self.since(mark)


@dataclass
class Peer:
    pc: RTCPeerConnection
    location: str
    heard: Recorder
    source: SineTrack | None = None

    async def close(self) -> None:
        await self.pc.close()
        if self.heard.task:
            self.heard.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.heard.task


async def _offer(pc: RTCPeerConnection) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


async def _connect(
    http: httpx.AsyncClient, pc: RTCPeerConnection, path: str, token: str | None
) -> str:
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    resp = await http.post(path, content=await _offer(pc), headers=headers)
    if resp.status_code != 201:
        await pc.close()
        raise AssertionError(f"{path}: {resp.status_code} {resp.text}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=resp.text, type="answer"))
    return resp.headers["location"]


async def publish(
    http: httpx.AsyncClient,
    path: str,
    token: str,
    freq: float | tuple[float, ...],
    amplitude: float = 0.3,
) -> Peer:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    heard = Recorder()
    pc.on("track", heard.start)
    source = SineTrack(freq, amplitude)
    pc.addTransceiver(source, direction="sendrecv")
    location = await _connect(http, pc, path, token)
    return Peer(pc, location, heard, source)


async def listen(http: httpx.AsyncClient, channel: str, token: str | None = None) -> Peer:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    heard = Recorder()
    pc.on("track", heard.start)
    pc.addTransceiver("audio", direction="recvonly")
    location = await _connect(http, pc, f"/whep/{channel}", token)
    return Peer(pc, location, heard)
