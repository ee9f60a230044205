"""Alarms and the event log: what a technician must notice, with when it began and ended.

Evaluated by the console at its read rate from levels and state snapshots; times are passed in,
so tests drive it without waiting.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from router.monitoring.levels import Level

SPEAKING_LUFS = -45.0  # the floor counts as speaking above this
SILENT_LUFS = -60.0  # a live seat counts as silent below this
SILENCE_SECONDS = 5.0
CLIP_HOLD_SECONDS = 3.0
BEHIND_HOLD_SECONDS = 5.0
FLOOR_MISSING_GRACE_SECONDS = 10.0


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ALARM = "alarm"


@dataclass(frozen=True)
class LogEntry:
    seq: int
    at: float  # wall-clock seconds, for people
    severity: Severity
    kind: str
    subject: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "at": self.at,
            "severity": self.severity.value,
            "kind": self.kind,
            "subject": self.subject,
            "message": self.message,
        }


class EventLog:
    def __init__(self, capacity: int = 1000) -> None:
        self._entries: deque[LogEntry] = deque(maxlen=capacity)
        self._seq = 0

    def add(self, severity: Severity, kind: str, subject: str, message: str) -> LogEntry:
        self._seq += 1
        entry = LogEntry(self._seq, time.time(), severity, kind, subject, message)
        self._entries.append(entry)
        return entry

    def add_info(self, kind: str, subject: str, message: str) -> LogEntry:
        return self.add(Severity.INFO, kind, subject, message)

    def since(self, seq: int) -> list[LogEntry]:
        return [e for e in self._entries if e.seq > seq]

    @property
    def last_seq(self) -> int:
        return self._seq


@dataclass
class ActiveAlarm:
    kind: str
    subject: str
    message: str
    severity: Severity
    since: float


@dataclass(frozen=True)
class SeatView:
    booth: str
    seat: str
    channel: str
    connected: bool
    live: bool

    @property
    def source(self) -> str:
        return f"seat:{self.booth}:{self.seat}"


class AlarmWatch:
    def __init__(self, log: EventLog, started: float) -> None:
        self._log = log
        self._started = started
        self.active: dict[tuple[str, str], ActiveAlarm] = {}
        self._silent_since: dict[str, float] = {}
        self._last_clip: dict[str, float] = {}
        self._last_late: tuple[int, float] = (0, started)
        self._seats: dict[tuple[str, str], SeatView] = {}

    def evaluate(
        self,
        now: float,
        levels: Mapping[str, Level],
        seats: Iterable[SeatView],
        sources: Iterable[str],
        late_ticks: int,
    ) -> None:
        source_set = set(sources)
        seat_list = list(seats)
        self._seat_changes(seat_list)
        self._silent_seats(now, levels, seat_list)
        self._clipping(now, levels)
        self._floor_input(now, source_set)
        self._engine_behind(now, late_ticks)

    # --- the rules -----------------------------------------------------------------------

    def _seat_changes(self, seats: list[SeatView]) -> None:
        for view in seats:
            key = (view.booth, view.seat)
            before = self._seats.get(key)
            self._seats[key] = view
            subject = f"{view.booth}/{view.seat}"
            if before is None:
                continue
            if before.live and not view.live and not view.connected:
                self._raise(
                    "seat_link_lost",
                    subject,
                    f"seat {view.seat} lost its connection while live on {view.channel}; "
                    f"{view.channel} carries the floor",
                )
            elif view.connected and not before.connected:
                self._clear("seat_link_lost", subject)
                self._log.add(Severity.INFO, "seat", subject, f"seat {view.seat} connected")
            elif before.connected and not view.connected and not before.live:
                self._log.add(Severity.INFO, "seat", subject, f"seat {view.seat} disconnected")
            if view.live and not before.live:
                self._log.add(Severity.INFO, "seat", subject, f"{view.seat} live on {view.channel}")
            elif before.live and not view.live and view.connected:
                self._log.add(Severity.INFO, "seat", subject, f"{view.seat} off air")

    def _silent_seats(self, now: float, levels: Mapping[str, Level], seats: list[SeatView]) -> None:
        floor = levels.get("ch:floor")
        floor_speaks = floor is not None and floor.lufs > SPEAKING_LUFS
        live = {v.channel: v for v in seats if v.live}
        for channel in {v.channel for v in seats}:
            view = live.get(channel)
            level = levels.get(f"in:{view.source}") if view else None
            silent = view is not None and (level is None or level.lufs < SILENT_LUFS)
            if silent and floor_speaks:
                since = self._silent_since.setdefault(channel, now)
                if now - since >= SILENCE_SECONDS and view is not None:
                    self._raise(
                        "channel_silent",
                        channel,
                        f"{channel}: live seat {view.seat} is silent while the floor speaks",
                    )
            else:
                self._silent_since.pop(channel, None)
                self._clear("channel_silent", channel)

    def _clipping(self, now: float, levels: Mapping[str, Level]) -> None:
        for name, level in levels.items():
            if level.clipped:
                self._last_clip[name] = now
                self._raise("clipping", name, f"{name} clips", Severity.WARNING)
        for name, at in list(self._last_clip.items()):
            if now - at >= CLIP_HOLD_SECONDS:
                del self._last_clip[name]
                self._clear("clipping", name)

    def _floor_input(self, now: float, sources: set[str]) -> None:
        has_floor = "room" in sources or any(s.startswith("rtp:") for s in sources)
        if has_floor:
            self._clear("floor_missing", "floor")
        elif now - self._started >= FLOOR_MISSING_GRACE_SECONDS:
            self._raise("floor_missing", "floor", "no floor input: nobody sends the room feed")

    def _engine_behind(self, now: float, late_ticks: int) -> None:
        last, at = self._last_late
        if late_ticks > last:
            self._last_late = (late_ticks, now)
            self._raise(
                "engine_behind",
                "engine",
                f"the engine is falling behind: {late_ticks} late ticks so far",
                Severity.WARNING,
            )
        elif now - at >= BEHIND_HOLD_SECONDS:
            self._clear("engine_behind", "engine")

    # --- bookkeeping ---------------------------------------------------------------------

    def _raise(
        self, kind: str, subject: str, message: str, severity: Severity = Severity.ALARM
    ) -> None:
        key = (kind, subject)
        if key in self.active:
            return
        self.active[key] = ActiveAlarm(kind, subject, message, severity, time.time())
        self._log.add(severity, kind, subject, message)

    def _clear(self, kind: str, subject: str) -> None:
        alarm = self.active.pop((kind, subject), None)
        if alarm is not None:
            self._log.add(Severity.INFO, kind, subject, f"cleared: {alarm.message}")

    def snapshot(self) -> list[dict[str, object]]:
        return [
            {
                "kind": a.kind,
                "subject": a.subject,
                "message": a.message,
                "severity": a.severity.value,
                "since": a.since,
            }
            for a in self.active.values()
        ]
