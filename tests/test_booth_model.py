"""The booth state machine, every transition and refusal, on a manual clock (no network)."""

import numpy as np
import pytest

from router.control.booths import BoothBoard, MicRefused, Output, Reason
from router.media.clock import ManualClock
from router.media.engine import Engine, EngineSettings, Feed, SourceRole
from router.media.inputs import SAMPLES_PER_BLOCK
from router.runtime import EventRuntime


class Sink:
    def offer(self, packet):
        pass


@pytest.fixture
def rt(event_config) -> EventRuntime:
    return EventRuntime.build(event_config, ManualClock())


@pytest.fixture
def board(rt) -> BoothBoard:
    for booth, seat in (("fr", "fr1"), ("fr", "fr2"), ("en", "en1"), ("en", "en2"), ("ne", "ne1")):
        rt.board.set_connected(booth, seat, True)
    return rt.board


def refused(reason: Reason, fn, *args):
    with pytest.raises(MicRefused) as exc:
        fn(*args)
    assert exc.value.reason is reason, exc.value
    return str(exc.value)


def test_mic_on_needs_a_connection(rt):
    refused(Reason.NOT_CONNECTED, rt.board.set_mic, "fr", "fr1", True)
    assert rt.engine.live_source("fr") is None


def test_interlock_within_a_booth_and_across_booths(board, rt):
    board.set_mic("fr", "fr1", True)
    assert rt.engine.live_source("fr") == "seat:fr:fr1"
    msg = refused(Reason.PARTNER_LIVE, board.set_mic, "fr", "fr2", True)
    assert "handover" in msg
    # NE's output B is English: the EN booth holds it, so NE cannot cut in there
    board.set_mic("en", "en1", True)
    board.set_output("ne", "ne1", Output.B)
    msg = refused(Reason.INTERLOCK, board.set_mic, "ne", "ne1", True)
    assert "'en1'" in msg and "'en'" in msg
    assert rt.engine.live_source("en") == "seat:en:en1"
    # a booth without a retour has no output B
    refused(Reason.NO_RETOUR, board.set_output, "fr", "fr2", Output.B)
    # once EN is free, NE goes live into English
    board.set_mic("en", "en1", False)
    board.set_mic("ne", "ne1", True)
    assert rt.engine.live_source("en") == "seat:ne:ne1"
    assert rt.engine.live_source("ne") is None
    # switching back to A while live moves the voice
    board.set_output("ne", "ne1", Output.A)
    assert rt.engine.live_source("ne") == "seat:ne:ne1"
    assert rt.engine.live_source("en") is None


def test_switching_output_while_live_obeys_the_interlock(board, rt):
    board.set_mic("ne", "ne1", True)
    board.set_mic("en", "en1", True)
    refused(Reason.INTERLOCK, board.set_output, "ne", "ne1", Output.B)
    assert board.seat("ne", "ne1").output is Output.A
    assert rt.engine.live_source("ne") == "seat:ne:ne1"


def test_handover_request_by_the_idle_partner_accepted_by_the_live_one(board, rt):
    board.set_mic("fr", "fr1", True)
    board.request_handover("fr", "fr2")
    state = board.booth_state("fr")
    assert state["handover"]["from"] == "fr2" and state["handover"]["from_live"] is False
    # the requester cannot accept their own request; only the live partner can
    refused(Reason.NOT_YOURS, board.accept_handover, "fr", "fr2")
    board.accept_handover("fr", "fr1")
    assert rt.engine.live_source("fr") == "seat:fr:fr2"
    assert board.seat("fr", "fr2").live and not board.seat("fr", "fr1").live
    assert board.booth_state("fr")["handover"] is None


def test_handover_offered_by_the_live_seat(board, rt):
    board.set_mic("fr", "fr1", True)
    board.request_handover("fr", "fr1")
    assert board.booth_state("fr")["handover"]["from_live"] is True
    board.accept_handover("fr", "fr2")
    assert rt.engine.live_source("fr") == "seat:fr:fr2"


def test_handover_cancel_and_refusals(board, rt):
    refused(Reason.NOBODY_LIVE, board.request_handover, "fr", "fr2")
    refused(Reason.NO_REQUEST, board.accept_handover, "fr", "fr1")
    refused(Reason.NO_REQUEST, board.cancel_handover, "fr", "fr1")
    board.set_mic("fr", "fr1", True)
    board.request_handover("fr", "fr2")
    board.cancel_handover("fr", "fr2")
    refused(Reason.NO_REQUEST, board.accept_handover, "fr", "fr1")
    assert rt.engine.live_source("fr") == "seat:fr:fr1"
    # a partner declines
    board.request_handover("fr", "fr2")
    board.cancel_handover("fr", "fr1")
    assert board.booth_state("fr")["handover"] is None
    # a request ends when the live requester goes off air
    board.request_handover("fr", "fr1")
    board.set_mic("fr", "fr1", False)
    assert board.booth_state("fr")["handover"] is None
    # a disconnected seat cannot ask
    board.set_connected("fr", "fr2", False)
    board.set_mic("fr", "fr1", True)
    refused(Reason.NOT_CONNECTED, board.request_handover, "fr", "fr2")


def test_take_over(board, rt):
    board.set_mic("fr", "fr1", True)
    # the partner is speaking: refused
    msg = refused(Reason.PARTNER_LIVE, board.take_over, "fr", "fr2")
    assert "handover" in msg
    # the partner's mic is off (cough): take over at once
    board.set_cough("fr", "fr1", True)
    board.take_over("fr", "fr2")
    assert rt.engine.live_source("fr") == "seat:fr:fr2"
    assert not board.seat("fr", "fr1").coughing and not rt.engine.is_muted("seat:fr:fr1")
    # the partner offered the mic: take over without waiting for an accept
    board.request_handover("fr", "fr2")
    board.take_over("fr", "fr1")
    assert rt.engine.live_source("fr") == "seat:fr:fr1"
    # nobody live: take over is a plain mic on
    board.set_mic("fr", "fr1", False)
    board.take_over("fr", "fr2")
    assert rt.engine.live_source("fr") == "seat:fr:fr2"


def test_cough_mutes_without_changing_live_state(board, rt):
    board.set_mic("fr", "fr1", True)
    board.set_cough("fr", "fr1", True)
    assert board.seat("fr", "fr1").live and rt.engine.live_source("fr") == "seat:fr:fr1"
    assert rt.engine.is_muted("seat:fr:fr1")
    assert board.booth_state("fr")["seats"][0]["coughing"] is True
    board.set_cough("fr", "fr1", False)
    assert not rt.engine.is_muted("seat:fr:fr1") and board.seat("fr", "fr1").live
    # mic off releases a held cough
    board.set_cough("fr", "fr1", True)
    board.set_mic("fr", "fr1", False)
    assert not rt.engine.is_muted("seat:fr:fr1")


def test_reload_never_puts_a_seat_on_air(board, rt):
    board.set_mic("fr", "fr1", True)
    board.set_cough("fr", "fr1", True)
    # the console reloads: the old session ends, a new one connects
    board.set_connected("fr", "fr1", False)
    assert rt.engine.live_source("fr") is None and not rt.engine.is_muted("seat:fr:fr1")
    board.set_connected("fr", "fr1", True)
    assert not board.seat("fr", "fr1").live
    assert rt.engine.live_source("fr") is None


def test_dropped_seat_falls_back_to_floor_and_stays_off_air(board, rt):
    engine = rt.engine
    buf = engine.add_source("seat:fr:fr1", SourceRole.SEAT)
    block = np.zeros(SAMPLES_PER_BLOCK, np.float32)
    board.set_mic("fr", "fr1", True)
    for tick in range(10):
        buf.push(block)
        engine.tick(tick)
    assert board.seat("fr", "fr1").live
    dropped_at = None
    for tick in range(10, 100):
        engine.tick(tick)  # no packets any more
        if engine.live_source("fr") is None:
            dropped_at = tick
            break
    assert dropped_at is not None and dropped_at - 10 <= 50, "within 1 s of media time"
    state = board.booth_state("fr")["seats"][0]
    assert state["dropped"] and not state["connected"] and not state["live"]
    view = {(s["booth"], s["seat"]): s for s in board.snapshot()}[("fr", "fr1")]
    assert view["live"] is False and view["connected"] is False  # the alarm's input
    # audio comes back: connected again, still not live until the interpreter says so
    for tick in range(dropped_at + 1, dropped_at + 5):
        buf.push(block)
        engine.tick(tick)
    state = board.booth_state("fr")["seats"][0]
    assert state["connected"] and not state["dropped"] and not state["live"]
    board.set_mic("fr", "fr1", True)
    assert engine.live_source("fr") == "seat:fr:fr1"


def test_return_feed_follows_source_and_auto_relay(board, rt):
    engine = rt.engine
    sinks = {}
    for booth, seat in (("fr", "fr1"), ("fr", "fr2"), ("en", "en1")):
        sinks[seat] = Sink()
        board.attach_return(booth, seat, sinks[seat])
    # floor English: everyone on auto hears the floor, never themselves
    assert engine.feed_of(sinks["fr2"]) == Feed("floor", "seat:fr:fr2", personal="seat:fr:fr2")
    # a seat chooses the EN channel (relay)
    board.set_source("fr", "fr2", "en")
    assert engine.feed_of(sinks["fr2"]).channel == "en"
    refused(Reason.UNKNOWN_SOURCE, board.set_source, "fr", "fr2", "xx")
    board.set_source("fr", "fr2", "auto")
    # floor Nepali: FR does not understand it; with EN live from the floor, FR hears EN
    engine.set_floor_language("ne")
    assert engine.feed_of(sinks["fr1"]).channel == "floor", "no pivot live yet: the floor"
    board.set_mic("en", "en1", True)
    assert engine.feed_of(sinks["fr1"]).channel == "en"
    assert engine.feed_of(sinks["en1"]).channel == "floor", "EN understands Nepali"
    assert board.booth_state("fr")["seats"][0]["hears"] == "en"
    # auto-relay off: auto is the floor
    board.set_auto_relay(False)
    assert engine.feed_of(sinks["fr1"]).channel == "floor"
    board.set_auto_relay(True)
    assert engine.feed_of(sinks["fr1"]).channel == "en"
    # back to English on the floor
    engine.set_floor_language("en")
    assert engine.feed_of(sinks["fr1"]).channel == "floor"


def test_partner_level_and_settings_reach_the_return_spec(board, rt):
    sink = Sink()
    board.attach_return("fr", "fr1", sink)
    board.set_return("fr", "fr1", volume_db=-6, bass_db=3, treble_db=-3, partner_db=-20)
    spec = rt.engine._returns["seat:fr:fr1"]
    assert spec.volume_db == -6 and spec.bass_db == 3 and spec.treble_db == -3
    assert spec.extra == {"seat:fr:fr2": pytest.approx(0.1)}
    assert "seat:fr:fr1" not in spec.extra, "never the seat's own voice"


def test_chat_slow_down_and_versions(board):
    v = board.version
    board.chat("fr", "fr1", "  next speaker   reads fast ")
    board.chat("fr", "technician", "noted")
    with pytest.raises(ValueError):
        board.chat("fr", "fr1", "   ")
    board.set_slow_down("fr", "fr2", True)
    state = board.booth_state("fr")
    assert [m["text"] for m in state["chat"]] == ["next speaker reads fast", "noted"]
    assert state["slow_down"]["seat"] == "fr2"
    board.set_slow_down("fr", "fr2", False)
    assert board.booth_state("fr")["slow_down"] is None
    assert board.version > v


async def test_wait_change_wakes_on_a_change(board):
    import asyncio

    seen = board.version
    waiter = asyncio.ensure_future(board.wait_change(seen))
    await asyncio.sleep(0)
    assert not waiter.done()
    board.set_mic("fr", "fr1", True)
    assert await asyncio.wait_for(waiter, 1) > seen


def test_engine_only(event_config):
    # the board works against an engine that has no sources at all (nothing published yet)
    engine = Engine(EngineSettings(channels=tuple(event_config.channels)), ManualClock())
    board = BoothBoard(event_config, engine)
    board.set_connected("es", "es1", True)
    board.set_mic("es", "es1", True)
    engine.tick(0)
    assert engine.live_source("es") == "seat:es:es1"


def test_an_overloaded_engine_does_not_drop_seats(board, rt):
    """Missed deadlines mean the process was slow, not the seat: the stall clock restarts."""
    engine = rt.engine
    buf = engine.add_source("seat:fr:fr1", SourceRole.SEAT)
    board.set_mic("fr", "fr1", True)
    for tick in range(10):
        buf.push(np.zeros(SAMPLES_PER_BLOCK, np.float32))
        engine.tick(tick)
    for tick in range(10, 60):
        if tick % 20 == 0:
            engine.pacer.late_ticks += 1  # the engine skipped a period
        engine.tick(tick)
    assert board.seat("fr", "fr1").live, "no drop while the engine itself was behind"
    for tick in range(60, 90):
        engine.tick(tick)  # on time again, still no packets
    assert not board.seat("fr", "fr1").live


def test_a_silent_seat_drops_within_2_s_even_when_the_engine_is_always_late(board, rt):
    engine = rt.engine
    buf = engine.add_source("seat:fr:fr1", SourceRole.SEAT)
    board.set_mic("fr", "fr1", True)
    for tick in range(10):
        buf.push(np.zeros(SAMPLES_PER_BLOCK, np.float32))
        engine.tick(tick)
    for tick in range(10, 200):
        engine.pacer.late_ticks += 1
        engine.tick(tick)
        if not board.seat("fr", "fr1").live:
            break
    assert tick - 9 <= 100, tick
