"""Alarms fire and clear on the right conditions; times are passed in, nothing waits."""

from router.monitoring.alarms import AlarmWatch, EventLog, SeatView
from router.monitoring.levels import Level

SPEAKING = Level(-10, -12, -20, False)
SILENT = Level(-120, -120, -120, False)
CLIPPING = Level(0.5, -3, -5, True)


def seat(live=True, connected=True):
    return SeatView("fr", "fr1", "fr", connected, live)


def evaluate(watch, now, levels, seats=(), sources=("room",), late=0):
    watch.evaluate(now, levels, list(seats), list(sources), late)


def test_silent_live_seat_while_floor_speaks_raises_then_clears():
    log = EventLog()
    watch = AlarmWatch(log, started=0.0)
    levels = {"ch:floor": SPEAKING, "in:seat:fr:fr1": SILENT}
    for t in range(0, 5):
        evaluate(watch, float(t), levels, [seat()])
        assert ("channel_silent", "fr") not in watch.active
    evaluate(watch, 5.0, levels, [seat()])
    assert ("channel_silent", "fr") in watch.active
    assert "silent while the floor speaks" in watch.active[("channel_silent", "fr")].message
    evaluate(watch, 6.0, {"ch:floor": SPEAKING, "in:seat:fr:fr1": SPEAKING}, [seat()])
    assert ("channel_silent", "fr") not in watch.active
    assert [e.kind for e in log.since(0)].count("channel_silent") == 2  # raised, cleared


def test_silence_while_the_floor_is_silent_too_is_no_alarm():
    watch = AlarmWatch(EventLog(), started=0.0)
    levels = {"ch:floor": SILENT, "in:seat:fr:fr1": SILENT}
    for t in range(20):
        evaluate(watch, float(t), levels, [seat()])
    assert not watch.active


def test_dropped_live_seat_raises_link_lost_and_reconnect_clears():
    log = EventLog()
    watch = AlarmWatch(log, started=0.0)
    evaluate(watch, 0.0, {}, [seat(live=True)])
    evaluate(watch, 0.1, {}, [seat(live=False, connected=False)])
    assert ("seat_link_lost", "fr/fr1") in watch.active
    assert "lost its connection while live" in log.since(0)[-1].message
    evaluate(watch, 5.0, {}, [seat(live=False, connected=True)])
    assert ("seat_link_lost", "fr/fr1") not in watch.active


def test_clipping_is_held_briefly_then_cleared():
    watch = AlarmWatch(EventLog(), started=0.0)
    evaluate(watch, 0.0, {"ch:fr": CLIPPING})
    assert ("clipping", "ch:fr") in watch.active
    evaluate(watch, 2.0, {"ch:fr": SPEAKING})
    assert ("clipping", "ch:fr") in watch.active
    evaluate(watch, 3.5, {"ch:fr": SPEAKING})
    assert ("clipping", "ch:fr") not in watch.active


def test_missing_floor_input_after_grace_and_engine_behind():
    watch = AlarmWatch(EventLog(), started=0.0)
    evaluate(watch, 5.0, {}, sources=[])
    assert ("floor_missing", "floor") not in watch.active
    evaluate(watch, 11.0, {}, sources=[])
    assert ("floor_missing", "floor") in watch.active
    evaluate(watch, 12.0, {}, sources=["room"], late=3)
    assert ("floor_missing", "floor") not in watch.active
    assert ("engine_behind", "engine") in watch.active
    evaluate(watch, 18.0, {}, sources=["room"], late=3)
    assert ("engine_behind", "engine") not in watch.active
