"""RTP into the floor: Opus, L16 and L24 from a "sound desk" on loopback UDP."""

import asyncio
import fractions
import socket
import time

import av
import httpx
import numpy as np
import pytest
from aiortc.rtp import RtcpByePacket, RtpPacket

from router.app import create_app
from router.config import RtpInput as RtpInputConfig
from router.media.clock import ManualClock
from router.media.engine import Engine, EngineSettings, Feed, SourceRole
from router.media.inputs import SAMPLES_PER_BLOCK
from router.media.rtp_input import RtpFormat, RtpInput
from tests.conftest import free_port, start_server
from tests.media_files import heard_db
from tests.signals import RATE, decode_packets, sine, tone_db
from tests.webrtc_clients import listen

DESK_HZ, SEAT_HZ = 520.0, 880.0
CHANNELS = ("floor", "en", "fr", "es")
LANGUAGES = {"en": "en", "fr": "fr", "es": "es"}


class OpusSender:
    """What a desk's RTP encoder sends: 20 ms Opus frames of a sine, PT 97."""

    def __init__(self, freq: float, ssrc: int = 0x1234, amplitude: float = 0.3) -> None:
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate, ctx.layout, ctx.format = RATE, "mono", "s16"
        ctx.bit_rate = 64000
        ctx.time_base = fractions.Fraction(1, RATE)
        ctx.options = {"frame_duration": "20"}
        ctx.open()
        self.ctx, self.freq, self.ssrc, self.n = ctx, freq, ssrc, 0
        self.amplitude = amplitude

    def next(self) -> bytes:
        pcm = (sine(self.freq, 960, self.amplitude, self.n * 960) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, self.n * 960
        frame.time_base = fractions.Fraction(1, RATE)
        payload = b"".join(bytes(p) for p in self.ctx.encode(frame))
        packet = RtpPacket(
            payload_type=97,
            sequence_number=(1000 + self.n) & 0xFFFF,
            timestamp=self.n * 960,
            ssrc=self.ssrc,
            payload=payload,
        )
        self.n += 1
        return packet.serialize()


def pcm_packet(n: int, freq: float, rate: int, channels: int, width: int) -> bytes:
    """20 ms of big-endian PCM (L16 or L24), channels interleaved."""
    count = rate // 50
    x = 0.3 * np.sin(2 * np.pi * freq * (np.arange(count) + n * count) / rate)
    if width == 2:
        data = np.repeat((x * 32767).astype(">i2"), channels).tobytes()
    else:
        v = np.repeat((x * 8_388_607).astype(np.int32), channels)
        data = np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], 1).astype(np.uint8).tobytes()
    return RtpPacket(
        payload_type=96, sequence_number=n, timestamp=n * count, ssrc=7, payload=data
    ).serialize()


class Collector:
    def __init__(self):
        self.packets = []

    def offer(self, packet):
        self.packets.append(packet)


@pytest.fixture
def engine() -> Engine:
    engine = Engine(
        EngineSettings(channels=CHANNELS, languages=LANGUAGES, floor_language="en"), ManualClock()
    )
    engine.add_source("seat-es", SourceRole.SEAT)
    engine.add_source("seat-en", SourceRole.SEAT)
    engine.set_live("es", "seat-es")
    engine.set_live("en", "seat-en")  # the floor speaks English: EN carries the floor anyway
    return engine


async def started(engine: Engine, fmt: RtpFormat) -> tuple[RtpInput, socket.socket]:
    rtp = RtpInput("desk", "127.0.0.1", 0, fmt, engine)
    await rtp.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(rtp.address)
    return rtp, sock


async def until(condition, what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise TimeoutError(what)


async def feed_ticks(engine, rtp, sock, packets, start: int = 0) -> None:
    """One packet per engine tick, each received before the tick that plays it."""
    for i, data in enumerate(packets):
        before = rtp.stats.packets
        sock.send(data)
        await until(lambda b=before: rtp.stats.packets > b, "the packet to arrive")
        engine.buffer("seat-es").push(sine(SEAT_HZ, SAMPLES_PER_BLOCK, 0.3, i * 960))
        engine.tick(start + i)


async def test_opus_rtp_reaches_the_floor_and_every_auto_floor_channel(engine):
    rtp, sock = await started(engine, RtpFormat("opus", payload_type=97))
    sinks = {ch: Collector() for ch in CHANNELS}
    for ch, sink in sinks.items():
        engine.subscribe(sink, Feed(ch))
    sender = OpusSender(DESK_HZ)
    try:
        await feed_ticks(engine, rtp, sock, [sender.next() for _ in range(60)])
    finally:
        rtp.close()
        sock.close()
    heard = {ch: decode_packets(s.packets)[SAMPLES_PER_BLOCK * 15 :] for ch, s in sinks.items()}
    for ch in ("floor", "en", "fr"):  # fr: nobody live; en: the floor language
        assert tone_db(heard[ch], DESK_HZ) > -16, ch
        assert tone_db(heard[ch], SEAT_HZ) < -50, ch
    assert tone_db(heard["es"], SEAT_HZ) > -16
    assert tone_db(heard["es"], DESK_HZ) == pytest.approx(tone_db(heard["es"], SEAT_HZ) - 20, abs=2)
    assert rtp.stats.packets == 60 and rtp.stats.bad == 0
    assert not engine.has_source("rtp:desk"), "closing removes the source"


@pytest.mark.parametrize(
    ("codec", "rate", "channels"), [("L16", 48000, 1), ("L16", 44100, 2), ("L24", 48000, 2)]
)
async def test_pcm_rtp_reaches_the_floor(engine, codec, rate, channels):
    fmt = RtpFormat(codec, payload_type=96, channels=channels, sample_rate=rate)
    rtp, sock = await started(engine, fmt)
    floor = Collector()
    engine.subscribe(floor, Feed("floor"))
    width = 2 if codec == "L16" else 3
    try:
        await feed_ticks(
            engine, rtp, sock, [pcm_packet(n, DESK_HZ, rate, channels, width) for n in range(60)]
        )
    finally:
        rtp.close()
        sock.close()
    pcm = decode_packets(floor.packets)[SAMPLES_PER_BLOCK * 15 :]
    assert tone_db(pcm, DESK_HZ) == pytest.approx(20 * np.log10(0.3), abs=1.5)


async def test_reordered_duplicated_and_bad_packets(engine):
    rtp, sock = await started(engine, RtpFormat("opus", payload_type=97))
    floor = Collector()
    engine.subscribe(floor, Feed("floor"))
    sender = OpusSender(DESK_HZ)
    good = [sender.next() for _ in range(80)]
    junk = [
        b"",
        b"\x80",
        b"garbage that is not RTP",
        bytes([0x40]) + good[0][1:],  # RTP version 1
        RtpPacket(
            payload_type=0, sequence_number=5, ssrc=0x1234, payload=b"\xff" * 160
        ).serialize(),
        RtcpByePacket(sources=[0x1234]).__bytes__(),
    ]
    try:
        for data in junk:
            sock.send(data)
        order = list(range(80))
        for i in range(10, 70, 10):  # swap neighbours, and send some twice
            order[i], order[i + 1] = order[i + 1], order[i]
        sent = 0
        for tick, i in enumerate(order):  # one packet per tick, in the order they arrive
            sock.send(good[i])
            sent += 1
            if tick % 7 == 3:
                sock.send(good[i])
                sent += 1
            await until(lambda n=sent: rtp.stats.packets >= n, "packets")
            engine.tick(tick)
        assert engine.buffer("rtp:desk").stats.underruns == 0, "every block was in time"
        assert rtp._decoder is not None and rtp._decoder.jitter.duplicates == len(range(3, 80, 7))
    finally:
        rtp.close()
        sock.close()
    s = rtp.stats
    assert s.bad == 4 and s.wrong_payload_type == 1 and s.rtcp == 1 and s.decode_errors == 0
    assert s.streams == 1
    pcm = decode_packets(floor.packets)[SAMPLES_PER_BLOCK * 15 : SAMPLES_PER_BLOCK * 60]
    assert tone_db(pcm, DESK_HZ) > -16, "the stream plays on through all that"


async def test_a_port_in_use_stops_the_start_with_the_input_named(engine):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        rtp = RtpInput("desk", "127.0.0.1", port, RtpFormat(), engine)
        with pytest.raises(OSError, match=r"RTP input 'desk'.*127\.0\.0\.1"):
            await rtp.start()
    assert not engine.has_source("rtp:desk")


@pytest.mark.webrtc
async def test_rtp_input_in_the_running_server(event_config, loopback_ice):
    port = free_port()
    desk = RtpInputConfig(id="desk", port=port, codec="opus", payload_type=97)
    app = create_app(
        event_config.model_copy(update={"rtp_inputs": [desk]}), ice_hosts=["127.0.0.1"]
    )
    srv, task, url = await start_server(app)
    rt = app.state.runtime
    sender = OpusSender(DESK_HZ)
    stop = asyncio.Event()

    async def send() -> None:
        # A real-time sender: one packet per 20 ms against absolute deadlines.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            t0 = time.monotonic()
            while not stop.is_set():
                sock.sendto(sender.next(), ("127.0.0.1", port))
                await asyncio.sleep(max(0.0, t0 + sender.n * 0.02 - time.monotonic()))

    assert not rt.engine.has_source("rtp:desk"), "no floor source before audio arrives"
    sending = asyncio.create_task(send())
    try:
        for _ in range(200):
            if rt.engine.has_source("rtp:desk"):
                break
            await asyncio.sleep(0.01)
        assert rt.engine.role("rtp:desk") is SourceRole.ROOM
        async with httpx.AsyncClient(base_url=url, timeout=20) as http:
            floor = await listen(http, "floor")
            ne = await listen(http, "ne")
            try:
                for peer in (floor, ne):
                    await peer.heard.wait_for(25)
                    assert heard_db(await peer.heard.collect(40), DESK_HZ) > -20
            finally:
                await floor.close()
                await ne.close()
    finally:
        stop.set()
        await sending
        srv.should_exit = True
        await task
    assert not rt.engine.has_source("rtp:desk")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))  # the lifespan closed the port


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ('[[rtp_inputs]]\nid = "desk"\nport = 5004\ncodec = "L8"', "rtp_inputs.0.codec", "'L16'"),
        ('[[rtp_inputs]]\nid = "desk"\nport = 80', "rtp_inputs.0.port", "greater than"),
        (
            '[[rtp_inputs]]\nid = "desk"\nport = 5004\nhost = "desk.local"',
            "rtp_inputs.0.host",
            "IP",
        ),
        ('[[rtp_inputs]]\nid = "desk"\nport = 5004\nsample_rate = 44100', "rtp_inputs.0", "Opus"),
        (
            '[[rtp_inputs]]\nid = "desk"\nport = 5004\nptype = 96',
            "rtp_inputs.0.ptype",
            "unknown key",
        ),
        (
            '[[rtp_inputs]]\nid = "a"\nport = 5004\n[[rtp_inputs]]\nid = "b"\nport = 5004',
            "rtp_inputs.1.port",
            "used twice",
        ),
        ('[media]\nfolder = "x"', "media.folder", "unknown key"),
    ],
)
def test_broken_rtp_or_media_config_names_the_key(extra, key, problem):
    from router.config import ConfigError, parse_config
    from tests.conftest import DEFAULT_EVENT

    text = DEFAULT_EVENT.read_text(encoding="utf-8")
    text = text[: text.index("[media]")]  # the rest is that section and comments
    with pytest.raises(ConfigError) as err:
        parse_config(text + "\n" + extra, "event.toml")
    assert key in str(err.value) and problem in str(err.value), str(err.value)


def test_default_event_media_folder_is_next_to_the_event_file():
    from router.config import load_config
    from tests.conftest import DEFAULT_EVENT

    config = load_config(DEFAULT_EVENT)
    assert config.media.directory == DEFAULT_EVENT.parent / "media"
    assert config.rtp_inputs == []
    assert (config.media.directory / "video_message.opus").is_file()
