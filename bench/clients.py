"""aiortc peers for the benchmarks: paced sources, WHIP/WHEP helpers, receive-side probes.

Everything here talks to 127.0.0.1 only: peers have no ICE servers and `loopback_only()`
restricts aioice's host candidates to loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.base import Decoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import is_rtcp

from router.signalling.ice import restrict_host_candidates

RATE = 48000
FRAME = 960  # samples per 20 ms frame
FRAME_S = FRAME / RATE
TIME_BASE = fractions.Fraction(1, RATE)
LOOPBACK = "127.0.0.1"


def loopback_only() -> Callable[[], None]:
    """Every peer of this process offers 127.0.0.1 only; returns the undo function."""
    return restrict_host_candidates([LOOPBACK])


def new_pc() -> RTCPeerConnection:
    # Explicitly no ICE servers: aiortc would otherwise ask a public STUN server.
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def _audio_frame(pcm: np.ndarray, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    frame.pts = pts
    frame.time_base = TIME_BASE
    return frame


class FramePacer:
    """Frame n is due at t0 + n·20 ms (absolute deadlines). A late caller skips, never bursts."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = t0
        self._n: int | None = None
        self.skipped = 0

    def index_at(self, t: float) -> int:
        assert self.t0 is not None
        return math.ceil((t - self.t0) / FRAME_S - 1e-9)

    async def next(self) -> int:
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        if self._n is None:
            n = self.index_at(now)
        else:
            n = self._n + 1
            behind = now - (self.t0 + n * FRAME_S)
            if behind >= FRAME_S:
                missed = int(behind // FRAME_S)
                self.skipped += missed
                n += missed
        delay = self.t0 + n * FRAME_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self._n = n
        return n


class ToneTrack(MediaStreamTrack):
    """A microphone playing one sine, paced against absolute deadlines."""

    kind = "audio"

    def __init__(self, freq: float, amplitude: float = 0.3) -> None:
        super().__init__()
        self.freq = freq
        self.amplitude = amplitude
        self.pacer = FramePacer()

    async def recv(self) -> av.AudioFrame:
        n = await self.pacer.next()
        t = (np.arange(FRAME) + n * FRAME) / RATE
        pcm = (self.amplitude * 32767 * np.sin(2 * np.pi * self.freq * t)).astype(np.int16)
        return _audio_frame(pcm, n * FRAME)


class BurstSchedule:
    """One shared timeline of silence with tone bursts, for several tracks at once.

    Frame n is due at t0 + n·20 ms for every track reading the schedule, so the same burst
    leaves two senders at the same moment. A burst starts exactly at sample 0 of its frame.
    """

    def __init__(
        self,
        freq: float = 1000.0,
        amplitude: float = 0.5,
        frames: int = 4,
        t0: float | None = None,
    ) -> None:
        self.t0 = time.monotonic() if t0 is None else t0
        self.freq = freq
        self.amplitude = amplitude
        self.frames = frames
        self.bursts: set[int] = set()

    def index_at(self, t: float) -> int:
        return math.ceil((t - self.t0) / FRAME_S)

    def burst_at(self, n: int) -> None:
        self.bursts.add(n)

    def burst_start(self, n: int) -> int | None:
        for k in range(self.frames):
            if n - k in self.bursts:
                return n - k
        return None

    def pcm(self, n: int) -> np.ndarray:
        start = self.burst_start(n)
        if start is None:
            return np.zeros(FRAME, dtype=np.int16)
        t = (np.arange(FRAME) + (n - start) * FRAME) / RATE
        return (self.amplitude * 32767 * np.sin(2 * np.pi * self.freq * t)).astype(np.int16)


class ScheduledTrack(MediaStreamTrack):
    """Reads a BurstSchedule; records when each burst's first frame was handed to the sender."""

    kind = "audio"

    def __init__(self, schedule: BurstSchedule) -> None:
        super().__init__()
        self.schedule = schedule
        self.pacer = FramePacer(schedule.t0)
        self.handed: dict[int, float] = {}

    async def recv(self) -> av.AudioFrame:
        n = await self.pacer.next()
        pcm = self.schedule.pcm(n)
        if n in self.schedule.bursts:
            self.handed[n] = time.monotonic()
        return _audio_frame(pcm, n * FRAME)


# --- signalling ------------------------------------------------------------------------------


@dataclass
class Client:
    pc: RTCPeerConnection
    location: str
    frames: FrameLog | None = None
    packets: PacketLog | None = None
    tasks: list[asyncio.Future] = field(default_factory=list)

    async def close(self, http: httpx.AsyncClient | None = None) -> None:
        if http is not None:
            with contextlib.suppress(httpx.HTTPError):
                await http.delete(self.location)
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


async def _exchange(
    http: httpx.AsyncClient, pc: RTCPeerConnection, path: str, token: str | None
) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    resp = await http.post(path, content=pc.localDescription.sdp, headers=headers)
    if resp.status_code != 201:
        await pc.close()
        raise RuntimeError(f"POST {path}: {resp.status_code} {resp.text}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=resp.text, type="answer"))
    return resp.headers["location"]


async def drain(track: MediaStreamTrack) -> None:
    """Received tracks queue without bound in aiortc: always consume them."""
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


async def whip_publish(
    http: httpx.AsyncClient, path: str, token: str, track: MediaStreamTrack
) -> Client:
    pc = new_pc()
    tasks: list[asyncio.Future] = []
    pc.on("track", lambda t: tasks.append(asyncio.ensure_future(drain(t))))
    pc.addTransceiver(track, direction="sendrecv")  # seats get their return feed back
    location = await _exchange(http, pc, path, token)
    return Client(pc, location, tasks=tasks)


async def whep_listen(
    http: httpx.AsyncClient, channel: str, *, record: bool = False, token: str | None = None
) -> Client:
    """A WHEP listener; with `record`, decoded frames and RTP arrivals are logged."""
    pc = new_pc()
    transceiver = pc.addTransceiver("audio", direction="recvonly")
    client = Client(pc, "")
    if record:
        client.frames = FrameLog()
        client.packets = PacketLog(transceiver.receiver)
        pc.on("track", client.frames.start)
    else:
        pc.on("track", lambda t: client.tasks.append(asyncio.ensure_future(drain(t))))
    client.location = await _exchange(http, pc, f"/whep/{channel}", token)
    if client.frames is not None:
        client.tasks.append(client.frames.task_future)
    return client


async def p2p_pair(track: MediaStreamTrack) -> tuple[RTCPeerConnection, RTCPeerConnection, Client]:
    """A direct aiortc call: `track` sent from one peer to a recording peer, same process."""
    sender, receiver = new_pc(), new_pc()
    sender.addTransceiver(track, direction="sendonly")
    transceiver = receiver.addTransceiver("audio", direction="recvonly")
    client = Client(receiver, "p2p", FrameLog(), PacketLog(transceiver.receiver))
    assert client.frames is not None
    receiver.on("track", client.frames.start)
    # The receiver offers (as a WHEP listener does), the sender answers.
    await receiver.setLocalDescription(await receiver.createOffer())
    await sender.setRemoteDescription(receiver.localDescription)
    await sender.setLocalDescription(await sender.createAnswer())
    await receiver.setRemoteDescription(sender.localDescription)
    client.tasks.append(client.frames.task_future)
    return sender, receiver, client


# --- receive-side probes ---------------------------------------------------------------------


@dataclass
class Frame:
    arrival: float  # monotonic time the app got the decoded frame
    pts: int  # receiver timeline (RTP timestamp minus the first one)
    pcm: np.ndarray  # mono float32, full scale 1.0


class FrameLog:
    """Consumes a received track, keeping every decoded frame with its arrival time."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.task_future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiters: list[tuple[Callable[[Frame], bool], asyncio.Future[Frame]]] = []

    def start(self, track: MediaStreamTrack) -> None:
        task = asyncio.ensure_future(self._run(track))
        task.add_done_callback(lambda _: self.task_future.cancel())

    async def _run(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                arrival = time.monotonic()
                channels = len(frame.layout.channels)
                pcm = frame.to_ndarray().reshape(-1, channels)[:, 0].astype(np.float32) / 32768
                item = Frame(arrival, int(frame.pts or 0), pcm)
                self.frames.append(item)
                for pair in [w for w in self._waiters if w[0](item)]:
                    self._waiters.remove(pair)
                    if not pair[1].done():
                        pair[1].set_result(item)

    async def wait_for(
        self, predicate: Callable[[Frame], bool], timeout: float, start: int = 0
    ) -> Frame:
        """The first frame from index `start` on that matches, waiting up to `timeout`."""
        for item in self.frames[start:]:
            if predicate(item):
                return item
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        pair = (predicate, fut)
        self._waiters.append(pair)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            if pair in self._waiters:
                self._waiters.remove(pair)

    async def wait_count(self, count: int, timeout: float) -> None:
        """Until at least `count` frames have arrived."""
        if len(self.frames) < count:
            await self.wait_for(lambda _: len(self.frames) >= count, timeout)


class PacketLog:
    """Arrival time of every RTP packet at a receiver, before its jitter buffer and decoder.

    The receiver's decoded frames carry pts = RTP timestamp minus the first one, so
    `arrival_of(frame.pts)` gives when the packet carrying that frame arrived.
    """

    def __init__(self, receiver: object) -> None:
        self.arrivals: dict[int, float] = {}
        self.origin: int | None = None
        original = receiver._handle_rtp_packet  # type: ignore[attr-defined]

        async def logged(packet: object, arrival_time_ms: int) -> None:
            ts = packet.timestamp  # type: ignore[attr-defined]
            if self.origin is None:
                self.origin = ts
            self.arrivals.setdefault(ts, time.monotonic())
            await original(packet, arrival_time_ms)

        # An instance attribute: the DTLS transport calls receiver._handle_rtp_packet(...).
        receiver._handle_rtp_packet = logged  # type: ignore[attr-defined]

    def arrival_of(self, pts: int) -> float | None:
        if self.origin is None:
            return None
        return self.arrivals.get((pts + self.origin) & 0xFFFFFFFF)


def drop_next_rtp(pc: RTCPeerConnection, count: int = 1) -> Callable[[], int]:
    """Make the peer's sender lose its next `count` RTP packets (RTCP still flows).

    Returns a function telling how many were dropped so far.
    """
    (sender,) = [s for s in pc.getSenders() if s.track is not None]
    transport = sender.transport
    original = transport._send_rtp
    dropped = 0

    async def lossy(data: bytes) -> None:
        nonlocal dropped
        if dropped < count and not is_rtcp(data):
            dropped += 1
            return
        await original(data)

    transport._send_rtp = lossy
    return lambda: dropped


class NullDecoder(Decoder):
    """Decoding disabled: receives every frame from the jitter buffer and returns nothing."""

    def decode(self, encoded_frame: object) -> list:
        return []


def disable_decoding() -> None:
    """Every RTCRtpReceiver of this process hands its frames to a NullDecoder."""
    from aiortc import rtcrtpreceiver

    rtcrtpreceiver.get_decoder = lambda codec: NullDecoder()


async def packets_received(pc: RTCPeerConnection) -> int:
    total = 0
    for receiver in pc.getReceivers():
        report = await receiver.getStats()
        total += sum(s.packetsReceived for s in report.values() if s.type == "inbound-rtp")
    return total


# --- signal analysis -------------------------------------------------------------------------


def tone_amplitude(pcm: np.ndarray, freq: float) -> float:
    """Amplitude of the sine at `freq` in one block, by a Hann-windowed single-bin DFT."""
    n = np.arange(pcm.size)
    window = np.hanning(pcm.size)
    z = np.sum(pcm * window * np.exp(-2j * np.pi * freq * n / RATE))
    return float(2 * abs(z) / window.sum())


def onset_offset(pcm: np.ndarray, threshold: float) -> int | None:
    """Index of the first sample above `threshold`, or None."""
    above = np.flatnonzero(np.abs(pcm) > threshold)
    return int(above[0]) if above.size else None


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else math.nan
