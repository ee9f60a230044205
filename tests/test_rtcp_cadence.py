"""The router sends RTCP reports at libwebrtc's audio cadence (5 s on average), not aiortc's
1 s: at hundreds of listeners aiortc's cadence is a good part of the CPU outside the tick."""

import asyncio
import random
import time

import pytest
from aiortc import rtcdtlstransport, rtcrtpreceiver, rtcrtpsender

from router.signalling.rtcp_cadence import ReportInterval, set_report_interval
from tests.webrtc_clients import listen, publish

pytestmark = pytest.mark.webrtc

RTCP_SR = 200


def test_the_stand_in_spreads_reports_over_half_to_one_and_a_half_times_the_mean():
    interval = ReportInterval(5.0)
    sleeps = [0.5 + interval.random() for _ in range(10_000)]  # what aiortc's loops sleep
    assert 2.5 <= min(sleeps) < 2.6 and 7.4 < max(sleeps) <= 7.5
    assert sum(sleeps) / len(sleeps) == pytest.approx(5.0, abs=0.1)
    with pytest.raises(ValueError):
        ReportInterval(0.5)  # aiortc's loop would be handed a negative sleep


def test_none_gives_aiortc_its_own_random_back():
    before = rtcrtpsender.random, rtcrtpreceiver.random
    try:
        set_report_interval(5.0)
        assert isinstance(rtcrtpsender.random, ReportInterval)
        assert rtcrtpreceiver.random is rtcrtpsender.random
        set_report_interval(None)
        assert rtcrtpsender.random is random
    finally:
        rtcrtpsender.random, rtcrtpreceiver.random = before


async def test_a_listener_gets_no_sender_report_in_its_first_two_seconds(server, monkeypatch):
    """aiortc's sender would send its first report within 1.5 s of connecting; at libwebrtc's
    cadence it comes 2.5 s at the earliest."""
    arrivals: list[tuple[int, float, int]] = []
    handle = rtcdtlstransport.RTCDtlsTransport._handle_rtcp_data

    async def counting(transport, data: bytes) -> None:
        arrivals.append((id(transport), time.monotonic(), data[1]))
        await handle(transport, data)

    monkeypatch.setattr(rtcdtlstransport.RTCDtlsTransport, "_handle_rtcp_data", counting)
    assert rtcrtpsender.random.mean == server.app.state.runtime.config.audio.rtcp_report_interval
    floor = await publish(server.http, "/whip/floor", "floor-demo-token", 440)
    listener = await listen(server.http, "floor")
    try:
        transport = listener.pc.getTransceivers()[0].receiver.transport
        for _ in range(200):
            if listener.pc.connectionState == "connected":
                break
            await asyncio.sleep(0.05)
        connected = time.monotonic()
        await asyncio.sleep(2.3)
        reports = [t for i, t, pt in arrivals if i == id(transport) and pt == RTCP_SR]
        assert [t for t in reports if t < connected + 2.3] == []
        await listener.heard.wait_for(50)  # audio flows meanwhile
    finally:
        await listener.close()
        await floor.close()
