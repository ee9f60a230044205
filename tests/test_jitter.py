"""Tests for router.media.jitter: buffer logic, concealment and a real aiortc loopback call."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import random

import aioice.ice
import av
import numpy as np
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    rtcrtpreceiver,
)
from aiortc.codecs import get_decoder as aiortc_get_decoder
from aiortc.codecs.vpx import Vp8Decoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket, is_rtcp

from router.media.jitter import (
    AudioJitterBuffer,
    ConcealingOpusDecoder,
    EncodedFrame,
    JitterBatch,
    LostFrame,
    install_audio_jitter_buffer,
)

RATE = 48000
SAMPLES = 960
TIME_BASE = fractions.Fraction(1, RATE)


# --- helpers ---------------------------------------------------------------------------


def make_packet(seq: int, timestamp: int, data: bytes | None = None) -> RtpPacket:
    payload = data if data is not None else timestamp.to_bytes(4, "big")
    packet = RtpPacket(payload_type=111, sequence_number=seq & 0xFFFF, timestamp=timestamp)
    packet.payload = payload
    # What RTCRtpReceiver._handle_rtp_packet does before calling the jitter buffer.
    packet._data = payload  # type: ignore[attr-defined]
    return packet


def stream(start_seq: int, count: int, start_ts: int = 1000) -> list[RtpPacket]:
    return [
        make_packet((start_seq + i) & 0xFFFF, (start_ts + i * SAMPLES) & 0xFFFFFFFF)
        for i in range(count)
    ]


def items_of(frame: JitterFrame | None) -> list[EncodedFrame | LostFrame]:
    if frame is None:
        return []
    if isinstance(frame, JitterBatch):
        return frame.items
    return [EncodedFrame(frame.timestamp, frame.data)]


def sine(n_frame: int, freq: float, channels: int = 1, amplitude: float = 10000) -> np.ndarray:
    t = (np.arange(SAMPLES) + n_frame * SAMPLES) / RATE
    mono = (np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)
    return np.repeat(mono, channels).reshape(1, -1)


def opus_packets(count: int, freq: float = 440.0, layout: str = "mono") -> list[bytes]:
    channels = 2 if layout == "stereo" else 1
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = RATE
    encoder.format = "s16"
    encoder.layout = layout
    encoder.time_base = TIME_BASE
    encoder.bit_rate = 64000
    packets: list[bytes] = []
    for n in range(count):
        frame = av.AudioFrame.from_ndarray(sine(n, freq, channels), format="s16", layout=layout)
        frame.sample_rate = RATE
        frame.pts = n * SAMPLES
        frame.time_base = TIME_BASE
        packets += [bytes(p) for p in encoder.encode(frame)]
    assert len(packets) == count
    return packets


def left_channel(frames: list[av.AudioFrame]) -> np.ndarray:
    return np.concatenate([f.to_ndarray().reshape(-1, 2)[:, 0] for f in frames]).astype(float)


def peak_frequency(signal: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / RATE)[np.argmax(spectrum)])


def energy(frame: av.AudioFrame) -> float:
    return float(np.mean(frame.to_ndarray().astype(float) ** 2))


@pytest.fixture
def restore_receiver_globals(monkeypatch: pytest.MonkeyPatch) -> None:
    # Start from aiortc's own globals (another test may already have installed the patch)
    # and let monkeypatch put back whatever was there after the test.
    monkeypatch.setattr(rtcrtpreceiver, "JitterBuffer", JitterBuffer)
    monkeypatch.setattr(rtcrtpreceiver, "get_decoder", aiortc_get_decoder)


# --- AudioJitterBuffer -----------------------------------------------------------------


def test_interface_matches_aiortc() -> None:
    jb = AudioJitterBuffer(capacity=16, prefetch=4)
    assert jb.capacity == 16
    assert jb.max_hold == 3
    with pytest.raises(ValueError):
        AudioJitterBuffer(capacity=15)
    with pytest.raises(ValueError):
        AudioJitterBuffer(capacity=16, is_video=True)


def test_in_order_released_immediately() -> None:
    jb = AudioJitterBuffer(capacity=16, prefetch=4)
    for packet in stream(1000, 50):
        pli, frame = jb.add(packet)
        assert pli is False
        assert frame is not None and not isinstance(frame, JitterBatch)
        assert frame.timestamp == packet.timestamp
        assert frame.data == packet._data  # type: ignore[attr-defined]
        assert jb.held == 0
    assert (jb.received, jb.lost, jb.late, jb.duplicates, jb.reordered) == (50, 0, 0, 0, 0)


def test_single_loss_released_after_max_hold() -> None:
    jb = AudioJitterBuffer(capacity=16, prefetch=4)
    packets = stream(10, 8)
    for packet in packets[:3]:
        assert jb.add(packet)[1] is not None
    # packets[3] is lost; the next max_hold - 1 packets are held...
    for i, packet in enumerate(packets[4:6], start=1):
        assert jb.add(packet)[1] is None
        assert jb.held == i
    # ...and the max_hold-th newer packet releases everything in one batch.
    _, frame = jb.add(packets[6])
    assert isinstance(frame, JitterBatch)
    assert frame.items == [
        LostFrame(packets[3].timestamp),
        *(EncodedFrame(p.timestamp, p._data) for p in packets[4:7]),  # type: ignore[attr-defined]
    ]
    # Base class view = first real frame.
    assert (frame.timestamp, frame.data) == (packets[4].timestamp, packets[4]._data)  # type: ignore[attr-defined]
    assert jb.held == 0
    assert jb.lost == 1
    # Back to zero added latency.
    _, frame = jb.add(packets[7])
    assert frame is not None and frame.timestamp == packets[7].timestamp
    assert jb.held == 0


def test_burst_loss_marks_every_lost_frame() -> None:
    jb = AudioJitterBuffer(capacity=16, prefetch=4)
    packets = stream(0, 12)
    jb.add(packets[0])
    released = []
    for packet in packets[6:9]:
        released += items_of(jb.add(packet)[1])
    assert (
        released
        == [LostFrame(p.timestamp) for p in packets[1:6]]
        + [
            EncodedFrame(p.timestamp, p._data)  # type: ignore[attr-defined]
            for p in packets[6:9]
        ]
    )
    assert jb.lost == 5 and jb.held == 0


def test_custom_max_hold() -> None:
    jb = AudioJitterBuffer(capacity=16, max_hold=1)
    packets = stream(0, 3)
    jb.add(packets[0])
    assert items_of(jb.add(packets[2])[1]) == [
        LostFrame(packets[1].timestamp),
        EncodedFrame(packets[2].timestamp, packets[2]._data),  # type: ignore[attr-defined]
    ]


def test_reordering_within_window_recovers_in_order() -> None:
    jb = AudioJitterBuffer(capacity=16, prefetch=4)
    packets = stream(500, 12)
    order = [0, 2, 1, 3, 6, 4, 5, 7, 9, 10, 8, 11]
    released = []
    for i in order:
        released += items_of(jb.add(packets[i])[1])
        assert jb.held < jb.max_hold
    assert released == [EncodedFrame(p.timestamp, p._data) for p in packets]  # type: ignore[attr-defined]
    assert jb.lost == 0 and jb.late == 0
    assert jb.reordered == 4  # packets 1, 4, 5 and 8 arrived after a newer one
    assert jb.held == 0


def test_duplicates_and_late_packets_dropped_and_counted() -> None:
    jb = AudioJitterBuffer(capacity=16, prefetch=4)
    packets = stream(0, 10)
    jb.add(packets[0])
    jb.add(packets[1])
    assert jb.add(packets[1]) == (False, None)  # duplicate of a released packet
    # packets[2] goes missing; hold 3 and 4, with a duplicate of a held one.
    jb.add(packets[3])
    assert jb.add(packets[3]) == (False, None)
    jb.add(packets[4])
    jb.add(packets[5])  # declares 2 lost
    assert jb.add(packets[2]) == (False, None)  # arrived too late
    assert jb.add(packets[0]) == (False, None)  # very old duplicate
    assert (jb.duplicates, jb.late, jb.lost) == (3, 1, 1)
    assert jb.received == 9
    assert jb.held == 0


def test_sequence_wraparound() -> None:
    jb = AudioJitterBuffer(capacity=16, prefetch=4)
    # The RTP timestamp wraps between index 4 and 5, i.e. inside the loss below.
    packets = stream(65533, 9, start_ts=0xFFFFFFFF - 4 * SAMPLES)
    assert [p.sequence_number for p in packets] == [65533, 65534, 65535, 0, 1, 2, 3, 4, 5]
    released = []
    for i in [0, 1, 3, 2, 4]:  # reordered across the sequence wrap
        released += items_of(jb.add(packets[i])[1])
    assert released == [EncodedFrame(p.timestamp, p._data) for p in packets[:5]]  # type: ignore[attr-defined]
    assert jb.reordered == 1 and jb.held == 0

    for i in [6, 7, 8]:  # seq 2 (index 5) lost
        released += items_of(jb.add(packets[i])[1])
    assert released[5] == LostFrame(packets[5].timestamp)  # interpolated across the wrap
    assert [item.timestamp for item in released] == [p.timestamp for p in packets]
    assert (jb.lost, jb.resets, jb.held) == (1, 0, 0)


def test_big_jump_resets() -> None:
    jb = AudioJitterBuffer(capacity=16, prefetch=4)
    for packet in stream(1000, 5):
        jb.add(packet)
    jb.add(make_packet(1006, 1000 + 6 * SAMPLES))  # held behind missing 1005
    assert jb.held == 1

    # Sender restart far ahead: starts over immediately, the held packet is dropped.
    restarted = stream(30000, 3, start_ts=77)
    _, frame = jb.add(restarted[0])
    assert frame is not None and not isinstance(frame, JitterBatch)
    assert frame.timestamp == 77
    assert jb.resets == 1 and jb.held == 0
    assert jb.add(restarted[1])[1] is not None

    # Restart far behind also resets instead of being counted as late.
    _, frame = jb.add(make_packet(29000, 5))
    assert frame is not None and frame.timestamp == 5
    assert jb.resets == 2 and jb.late == 0


def test_random_run_bounded_hold_and_monotonic_output() -> None:
    rng = random.Random(1234)
    jb = AudioJitterBuffer(capacity=16, prefetch=4)
    total = 5000
    start_seq, start_ts = 63000, 0xFFFFFFFF - 1000 * SAMPLES  # both wrap during the run
    sent = [
        make_packet(start_seq + i, (start_ts + i * SAMPLES) & 0xFFFFFFFF)
        for i in range(total)
        if i == 0 or rng.random() >= 0.10
    ]
    # Reordering: each packet is delayed by up to 3.5 packet slots; 1% are duplicated.
    schedule = [(i + rng.uniform(0, 3.5), p) for i, p in enumerate(sent)]
    schedule += [(i + rng.uniform(0, 8), p) for i, p in enumerate(sent) if rng.random() < 0.01]
    arrivals = [p for _, p in sorted(schedule, key=lambda entry: entry[0])]

    released: list[EncodedFrame | LostFrame] = []
    for packet in arrivals:
        released += items_of(jb.add(packet)[1])
        assert jb.held <= jb.max_hold

    diffs = [
        ((b.timestamp - a.timestamp + 2**31) % 2**32) - 2**31
        for a, b in itertools.pairwise(released)
    ]
    assert all(d > 0 for d in diffs)
    # With one packet per 960 samples, released items step exactly one frame each.
    assert set(diffs) == {SAMPLES}

    real = [item for item in released if isinstance(item, EncodedFrame)]
    assert len({item.timestamp for item in real}) == len(real)
    assert all(item.data == item.timestamp.to_bytes(4, "big") for item in real)
    assert jb.lost == sum(isinstance(item, LostFrame) for item in released)
    assert jb.received == len(arrivals)
    assert jb.received == len(real) + jb.late + jb.duplicates + jb.held
    assert jb.reordered > 100 and jb.late > 0 and jb.duplicates > 0
    assert jb.resets == 0


# --- ConcealingOpusDecoder -------------------------------------------------------------


@pytest.mark.parametrize("layout", ["mono", "stereo"])
def test_decoder_decodes_sine_frequency(layout: str) -> None:
    decoder = ConcealingOpusDecoder()
    frames: list[av.AudioFrame] = []
    for n, data in enumerate(opus_packets(50, freq=440.0, layout=layout)):
        out = decoder.decode(JitterFrame(data=data, timestamp=n * SAMPLES))
        assert len(out) == 1
        frames += out
    for n, frame in enumerate(frames):
        assert isinstance(frame, av.AudioFrame)
        assert (frame.format.name, frame.layout.name) == ("s16", "stereo")
        assert (frame.sample_rate, frame.samples, frame.pts) == (RATE, SAMPLES, n * SAMPLES)
    assert abs(peak_frequency(left_channel(frames[5:])) - 440.0) < 2.0


def test_decoder_conceals_lost_frame_through_buffer() -> None:
    data = opus_packets(20, freq=440.0)
    rtp_origin = 123456
    packets = [make_packet(200 + n, rtp_origin + n * SAMPLES, d) for n, d in enumerate(data)]
    jb = AudioJitterBuffer(capacity=16, prefetch=4)
    decoder = ConcealingOpusDecoder()
    frames: list[av.AudioFrame] = []
    for n, packet in enumerate(packets):
        if n == 10:
            continue
        _, encoded = jb.add(packet)
        if encoded is not None:
            # RTCRtpReceiver maps the timestamp to a zero-based timeline before decoding.
            encoded.timestamp -= rtp_origin
            frames += decoder.decode(encoded)

    assert [f.pts for f in frames] == [n * SAMPLES for n in range(20)]
    assert decoder.concealed == 1
    concealed = frames[10]
    assert (concealed.samples, concealed.sample_rate, concealed.layout.name) == (
        SAMPLES,
        RATE,
        "stereo",
    )
    assert 0 < energy(concealed) < energy(frames[9])
    assert abs(peak_frequency(left_channel(frames[2:])) - 440.0) < 5.0


def test_decoder_limits_consecutive_concealment() -> None:
    data = opus_packets(30)
    decoder = ConcealingOpusDecoder(max_conceal=3)
    frames = decoder.decode(JitterFrame(data=data[0], timestamp=0))
    frames += decoder.decode(JitterFrame(data=data[1], timestamp=SAMPLES))
    # Six frames lost in a row, then three received.
    batch = JitterBatch(
        [LostFrame(n * SAMPLES) for n in range(2, 8)]
        + [EncodedFrame(n * SAMPLES, data[n]) for n in range(8, 11)]
    )
    frames += decoder.decode(batch)
    pts = [f.pts for f in frames]
    assert pts == [n * SAMPLES for n in (0, 1, 2, 3, 4, 8, 9, 10)]
    concealed = frames[2:5]
    energies = [energy(f) for f in concealed]
    assert energy(frames[1]) > energies[0] > energies[1] > energies[2] > 0

    # A received frame resets the run: the next loss is concealed again.
    batch = JitterBatch([LostFrame(11 * SAMPLES), EncodedFrame(12 * SAMPLES, data[12])])
    assert [f.pts for f in decoder.decode(batch)] == [11 * SAMPLES, 12 * SAMPLES]
    assert decoder.concealed == 4


def test_decoder_conceals_undecodable_packet() -> None:
    data = opus_packets(3)
    decoder = ConcealingOpusDecoder()
    decoder.decode(JitterFrame(data=data[0], timestamp=0))
    # libopus rejects this payload; it must not discard the rest of the batch.
    batch = JitterBatch(
        [EncodedFrame(SAMPLES, b"\xff\xff\xff"), EncodedFrame(2 * SAMPLES, data[1])]
    )
    assert [f.pts for f in decoder.decode(batch)] == [SAMPLES, 2 * SAMPLES]
    assert decoder.concealed == 1


def test_padding_only_packet_neither_lost_nor_decoded() -> None:
    # RTCRtpReceiver sets _data = b"" for an empty payload. Handed to PyAV as-is, that is an
    # end-of-stream packet after which every decode fails, so it must never reach libopus.
    data = opus_packets(4)
    packets = [make_packet(n, n * SAMPLES, d) for n, d in enumerate(data)]
    padding = make_packet(2, SAMPLES, b"")  # padding repeats an old timestamp
    jb = AudioJitterBuffer(capacity=16, prefetch=4)
    decoder = ConcealingOpusDecoder()
    frames = []
    for packet in [packets[0], packets[1], padding]:
        _, encoded = jb.add(packet)
        if encoded is not None:
            frames += decoder.decode(encoded)
    assert jb.add(make_packet(3, 2 * SAMPLES, data[2]))[1] is not None  # no gap at seq 2
    assert decoder.decode(JitterFrame(data=b"", timestamp=2 * SAMPLES)) == []
    frames += decoder.decode(JitterFrame(data=data[2], timestamp=2 * SAMPLES))
    assert [f.pts for f in frames] == [0, SAMPLES, 2 * SAMPLES]
    assert (jb.lost, jb.held, decoder.concealed) == (0, 0, 0)


def test_loss_followed_only_by_padding_still_concealed() -> None:
    data = opus_packets(2)
    jb = AudioJitterBuffer(capacity=16, prefetch=4)
    decoder = ConcealingOpusDecoder()
    frames = decoder.decode(jb.add(make_packet(0, 0, data[0]))[1])  # type: ignore[arg-type]
    # seq 1 lost; seqs 2-4 are padding-only, so the batch holds no received frame.
    for seq in (2, 3):
        assert jb.add(make_packet(seq, 0, b""))[1] is None
    _, batch = jb.add(make_packet(4, 0, b""))
    assert isinstance(batch, JitterBatch)
    assert batch.items == [LostFrame(0)] and batch.data == b""
    frames += decoder.decode(batch)
    assert len(frames) == 2 and decoder.concealed == 1
    assert jb.held == 0


# --- install_audio_jitter_buffer -------------------------------------------------------


@pytest.mark.usefixtures("restore_receiver_globals")
def test_install_patches_receiver_idempotently() -> None:
    install_audio_jitter_buffer()
    patched = (rtcrtpreceiver.JitterBuffer, rtcrtpreceiver.get_decoder)
    install_audio_jitter_buffer()
    assert (rtcrtpreceiver.JitterBuffer, rtcrtpreceiver.get_decoder) == patched
    assert rtcrtpreceiver.get_decoder is not aiortc_get_decoder

    assert isinstance(rtcrtpreceiver.JitterBuffer(capacity=16, prefetch=4), AudioJitterBuffer)
    video = rtcrtpreceiver.JitterBuffer(capacity=512, is_video=True)
    assert type(video) is JitterBuffer

    opus = RTCRtpCodecParameters(mimeType="audio/OPUS", clockRate=48000, channels=2)
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000)
    assert isinstance(rtcrtpreceiver.get_decoder(opus), ConcealingOpusDecoder)
    assert isinstance(rtcrtpreceiver.get_decoder(vp8), Vp8Decoder)


# --- real aiortc peers over loopback -----------------------------------------------------


class SineTrack(MediaStreamTrack):
    """20 ms mono s16 frames of a sine, paced in real time against absolute deadlines."""

    kind = "audio"

    def __init__(self, freq: float) -> None:
        super().__init__()
        self._freq = freq
        self._count = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._count * SAMPLES / RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.AudioFrame.from_ndarray(
            sine(self._count, self._freq, amplitude=8000), format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        frame.pts = self._count * SAMPLES
        frame.time_base = TIME_BASE
        self._count += 1
        return frame


@pytest.mark.webrtc
@pytest.mark.usefixtures("restore_receiver_globals")
async def test_loopback_call_with_packet_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    install_audio_jitter_buffer()
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])

    # Drop every 10th outgoing RTP packet (RTCP untouched). All RTP and RTCP of a peer goes
    # through RTCDtlsTransport._send_rtp before SRTP; only the sending peer emits RTP here.
    original_send_rtp = RTCDtlsTransport._send_rtp
    rtp_sent = 0
    rtp_dropped = 0

    async def lossy_send_rtp(self: RTCDtlsTransport, data: bytes) -> None:
        nonlocal rtp_sent, rtp_dropped
        if not is_rtcp(data):
            rtp_sent += 1
            if rtp_sent % 10 == 5:
                rtp_dropped += 1
                return
        await original_send_rtp(self, data)

    monkeypatch.setattr(RTCDtlsTransport, "_send_rtp", lossy_send_rtp)

    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    loop = asyncio.get_running_loop()
    received: list[tuple[float, av.AudioFrame]] = []
    enough = asyncio.Event()
    wanted = 110  # 2.2 s of audio

    async def consume(track: MediaStreamTrack) -> None:
        while len(received) < wanted:
            frame = await track.recv()
            assert isinstance(frame, av.AudioFrame)
            received.append((loop.time(), frame))
        enough.set()

    tasks: list[asyncio.Task[None]] = []
    receiver.on("track", lambda track: tasks.append(asyncio.ensure_future(consume(track))))

    try:
        sender.addTrack(SineTrack(440.0))
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        await asyncio.wait_for(enough.wait(), timeout=4.5)

        jitter_buffer = receiver.getReceivers()[0]._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    finally:
        for task in tasks:
            task.cancel()
        await sender.close()
        await receiver.close()

    assert isinstance(jitter_buffer, AudioJitterBuffer)
    assert rtp_dropped >= 8
    assert jitter_buffer.lost >= 8 and jitter_buffer.late == 0

    times = [t for t, _ in received]
    frames = [f for _, f in received]
    # Continuous: every 20 ms slot is filled (lost packets concealed) ...
    assert [b.pts - a.pts for a, b in itertools.pairwise(frames)] == [SAMPLES] * (len(frames) - 1)
    # ... and frames keep arriving at ~50/s with no long stall.
    steady = times[10:]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    assert 40 < rate < 62
    assert max(b - a for a, b in itertools.pairwise(steady)) < 0.25
    assert abs(peak_frequency(left_channel(frames[10:])) - 440.0) < 3.0
