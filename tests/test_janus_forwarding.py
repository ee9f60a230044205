"""The edge plumbing without Janus: RTP packetisation, the non-blocking forwarder, edge choice."""

from __future__ import annotations

import asyncio
import fractions
import socket
import struct

import av
import httpx
import pytest

from router.config import JanusEdge
from router.edges.edge import EdgeLink
from router.edges.forwarder import RtpForwarder, RtpTarget
from router.edges.pool import EdgePool, Lease, NoEdgeAvailable
from router.edges.rtp import OPUS_PAYLOAD_TYPE, RtpStream
from router.media.engine import Feed


def parse(datagram: bytes) -> tuple[int, int, int, int, int, bytes]:
    b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", datagram[:12])
    assert b0 == 0x80  # RTP version 2, nothing else
    return b1 >> 7, b1 & 0x7F, seq, ts, ssrc, datagram[12:]


def test_rtp_stream_follows_the_engine_pts():
    stream = RtpStream()
    first = parse(stream.packet(b"opus-a", 960 * 10))
    second = parse(stream.packet(b"opus-b", 960 * 11))
    assert first[0] == 1 and second[0] == 0, "marker on the first packet only"
    assert first[1] == second[1] == OPUS_PAYLOAD_TYPE
    assert second[2] == (first[2] + 1) & 0xFFFF
    assert (second[3] - first[3]) & 0xFFFFFFFF == 960, "timestamp steps with pts (48 kHz)"
    assert first[4] == second[4] == stream.ssrc
    assert first[5] == b"opus-a" and second[5] == b"opus-b"
    # A skipped tick leaves a gap in time, not in sequence numbers.
    third = parse(stream.packet(b"opus-d", 960 * 13))
    assert third[2] == (second[2] + 1) & 0xFFFF
    assert (third[3] - second[3]) & 0xFFFFFFFF == 1920


def test_sequence_numbers_wrap():
    stream = RtpStream()
    stream._seq = 0xFFFF
    assert parse(stream.packet(b"x", 0))[2] == 0xFFFF
    assert parse(stream.packet(b"y", 960))[2] == 0


class FakeEngine:
    def __init__(self) -> None:
        self.feeds: dict[object, Feed] = {}

    def subscribe(self, sink: object, feed: Feed) -> None:
        self.feeds[sink] = feed

    def unsubscribe(self, sink: object) -> None:
        self.feeds.pop(sink, None)


def opus_packet(payload: bytes, tick: int) -> av.Packet:
    packet = av.Packet(payload)
    packet.pts = tick * 960
    packet.time_base = fractions.Fraction(1, 48000)
    return packet


async def test_forwarder_sends_each_channel_to_each_edge_port():
    receivers = []
    for _ in range(2):  # two edges, two channels each: base and base + 2
        base = None
        while base is None:
            s0 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s0.bind(("127.0.0.1", 0))
            s2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s2.bind(("127.0.0.1", s0.getsockname()[1] + 2))
                base = s0.getsockname()[1]
            except OSError:
                s0.close()
                s2.close()
        receivers.append((base, s0, s2))
    engine = FakeEngine()
    forwarder = RtpForwarder(
        engine,  # type: ignore[arg-type]
        ["floor", "fr"],
        [RtpTarget(f"e{i}", "127.0.0.1", base) for i, (base, _, _) in enumerate(receivers)],
    )
    await forwarder.start()
    try:
        assert {feed.channel for feed in engine.feeds.values()} == {"floor", "fr"}
        floor_sink, fr_sink = forwarder.sinks
        floor_sink.offer(opus_packet(b"floor-packet", 5))  # returns at once: no await
        fr_sink.offer(opus_packet(b"fr-packet", 5))
        for _, s0, s2 in receivers:
            s0.settimeout(5)
            s2.settimeout(5)
            floor = parse(s0.recv(2048))
            fr = parse(s2.recv(2048))
            assert floor[5] == b"floor-packet" and fr[5] == b"fr-packet"
            assert floor[4] != fr[4], "each channel is its own RTP stream"
        assert {k: v.sent for k, v in forwarder.stats().items()} == {"e0": 2, "e1": 2}
    finally:
        forwarder.close()
        for _, s0, s2 in receivers:
            s0.close()
            s2.close()
    assert engine.feeds == {}


def edge_spec(name: str, port: int, capacity: int = 2) -> JanusEdge:
    return JanusEdge(
        id=name,
        api_url=f"http://127.0.0.1:1/{name}",
        rtp_host="127.0.0.1",
        rtp_port_base=port,
        max_listeners=capacity,
    )


async def test_pool_picks_the_ready_edge_with_fewest_listeners(event_config):
    specs = [edge_spec("a", 30000), edge_spec("b", 30100)]
    config = event_config.model_copy(update={"edges": specs})
    pool = EdgePool(config, FakeEngine())  # type: ignore[arg-type]
    async with httpx.AsyncClient() as http:
        pool.edges = [
            EdgeLink(s, pool.channels, http, lambda e: None, lambda e, h: None) for s in specs
        ]
        a, b = pool.edges
        with pytest.raises(NoEdgeAvailable):
            pool.pick()
        a._ready.set()
        assert pool.pick() is a
        b._ready.set()

        def lease(edge: EdgeLink, n: int) -> None:
            pool._leases[f"{edge.id}{n}"] = Lease(f"{edge.id}{n}", edge, n, "fr", 0.0)

        lease(a, 1)
        assert pool.pick() is b
        lease(b, 1)
        lease(b, 2)
        assert pool.pick() is a, "fewest listeners"
        lease(a, 2)
        with pytest.raises(NoEdgeAvailable):
            pool.pick()  # both at max_listeners
        pool._edge_down(b)
        assert pool.listeners(b) == 0, "an edge's restart forgets its listeners"
        b._ready.clear()
        with pytest.raises(NoEdgeAvailable):
            pool.pick()
        assert pool.channel_counts()["fr"] == 2
    await asyncio.sleep(0)


def test_edge_config_errors_name_the_key():
    from router.config import ConfigError, parse_config
    from tests.conftest import DEFAULT_EVENT

    base = DEFAULT_EVENT.read_text()
    edge = (
        '\n[[edges]]\nid = "{id}"\napi_url = "{url}"\nrtp_host = "{host}"\nrtp_port_base = {port}\n'
    )
    good = edge.format(id="e1", url="http://10.0.0.21:8088/janus/", host="10.0.0.21", port=20000)
    config = parse_config(base + good)
    assert config.edges[0].api_url == "http://10.0.0.21:8088/janus"
    cases = {
        edge.format(id="e1", url="janus:8088", host="10.0.0.21", port=20000): "edges.0.api_url",
        edge.format(id="e1", url="http://j/janus", host="janus", port=20000): "edges.0.rtp_host",
        edge.format(id="e1", url="http://j/janus", host="10.0.0.1", port=80): (
            "edges.0.rtp_port_base"
        ),
        good + edge.format(id="e1", url="http://k/janus", host="10.0.0.22", port=20000): (
            "edges.1.id"
        ),
        good + edge.format(id="e2", url="http://k/janus", host="10.0.0.21", port=20004): (
            "edges.1.rtp_port_base"
        ),
        good + "admin_secret = 'x'\n": "edges.0.admin_secret: unknown key",
    }
    for extra, key in cases.items():
        with pytest.raises(ConfigError) as err:
            parse_config(base + extra)
        assert key in str(err.value), (key, str(err.value))


async def test_srtp_target_gets_packets_only_its_key_opens():
    import os

    import pylibsrtp

    key = os.urandom(30)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    engine = FakeEngine()
    forwarder = RtpForwarder(
        engine,  # type: ignore[arg-type]
        ["floor"],
        [RtpTarget("e", "127.0.0.1", receiver.getsockname()[1], srtp_key=key)],
    )
    await forwarder.start()
    try:
        forwarder.sinks[0].offer(opus_packet(b"secret-opus-payload", 7))
        receiver.settimeout(5)
        wire = receiver.recv(2048)
        assert b"secret-opus-payload" not in wire
        assert len(wire) == 12 + len(b"secret-opus-payload") + 10  # HMAC-SHA1-80 tag
        inbound = pylibsrtp.Session(
            pylibsrtp.Policy(
                key=key,
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            )
        )
        assert parse(inbound.unprotect(wire))[5] == b"secret-opus-payload"
    finally:
        forwarder.close()
        receiver.close()
