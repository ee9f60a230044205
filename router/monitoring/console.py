"""The technician's view of the event: levels, alarms, status and recording, computed once.

One task reads the meters at 10 Hz, evaluates the alarms and publishes one JSON frame to every
technician connected; per-connection statistics come from RTCP once a second. Viewers only
receive what was computed, so ten consoles cost what one does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from router.media.inputs import SourceBuffer
from router.media.mixer import FLOOR
from router.monitoring.alarms import AlarmWatch, EventLog, SeatView
from router.monitoring.levels import Level, LevelMeters
from router.monitoring.recorder import RecordingDesk
from router.runtime import EventRuntime
from router.signalling.peers import Session, SessionKind

log = logging.getLogger(__name__)

LEVEL_PERIOD = 0.1
STATUS_EVERY = 10  # level frames per status frame (1 s)
SUBSCRIBER_QUEUE = 8


class TechConsole:
    def __init__(self, rt: EventRuntime, recordings: Path) -> None:
        self.rt = rt
        self.meters = LevelMeters()
        self.log = EventLog()
        self.alarms = AlarmWatch(self.log, time.monotonic())
        self.recording = RecordingDesk(rt.engine, recordings)
        self.levels: dict[str, Level] = {}
        self.connections: list[dict[str, Any]] = []
        self.input_gains: dict[str, dict[str, float | bool]] = {}
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._connections_at = -math.inf  # monotonic time of the last connection stats
        rt.engine.add_tap(self.meters)

    # --- subscribers ---------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self._subscribers.discard(queue)

    def _publish(self, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, separators=(",", ":"))
        for queue in self._subscribers:
            if queue.full():
                # A slow viewer skips frames instead of holding memory or the loop.
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(text)

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        n = 0
        next_at = time.monotonic()
        while True:
            next_at += LEVEL_PERIOD
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            try:
                self.step(time.monotonic())
                # Nobody watching: no per-connection stats (a getStats per listener per second)
                # and no frames; a status request reads fresh ones itself.
                if n % STATUS_EVERY == 0 and self._subscribers:
                    self._publish({"type": "status", "status": await self.fresh_status()})
            except Exception:
                log.exception("technician console step failed")
            n += 1

    def step(self, now: float) -> None:
        """Read the meters, evaluate alarms and publish a levels frame."""
        self.levels = self.meters.read()
        self.alarms.evaluate(
            now,
            self.levels,
            [SeatView(**s) for s in self.rt.board.snapshot()],  # type: ignore[arg-type]
            self.rt.engine.source_ids(),
            self.rt.engine.pacer.late_ticks,
        )
        if not self._subscribers:
            return
        self._publish(
            {
                "type": "levels",
                "levels": {k: v.as_dict() for k, v in self.levels.items()},
                "alarms": self.alarms.snapshot(),
                "log": [e.as_dict() for e in self.log.since(self.log.last_seq - 20)],
            }
        )

    # --- controls ------------------------------------------------------------------------

    def set_input_gain(self, source: str, gain_db: float, muted: bool) -> None:
        gain = 0.0 if muted else 10 ** (gain_db / 20)
        self.rt.engine.set_gain(source, gain)
        self.input_gains[source] = {"gain_db": gain_db, "muted": muted}
        self.log.add_info(
            "input", source, f"{source}: gain {gain_db:+.1f} dB{', muted' if muted else ''}"
        )

    # --- state ---------------------------------------------------------------------------

    def listeners_per_channel(self) -> dict[str, int]:
        counts = dict.fromkeys(self.rt.config.channels, 0)
        for session in self.rt.peers.sessions():
            if session.kind == SessionKind.LISTENER:
                channel = self.rt.peers.channel_of(session)
                if channel in counts:
                    counts[channel] += 1
        return counts

    def status(self) -> dict[str, Any]:
        rt = self.rt
        engine = rt.engine
        listeners = self.listeners_per_channel()
        seats = rt.board.snapshot()
        live_by_channel = {s["channel"]: s["seat"] for s in seats if s["live"]}
        stats = engine.stats
        ticks = max(stats.ticks, 1)
        recording = self.recording.current
        floor_language_channels = engine.auto_floor_channels()
        return {
            "event": rt.config.event.name,
            "floor_language": engine.floor_language,
            "channels": [
                {
                    "id": cid,
                    "name": ch.name,
                    "live_seat": live_by_channel.get(cid),
                    # the floor at full level: nobody live, or its language is spoken on the floor
                    "auto_floor": cid != FLOOR
                    and (cid not in live_by_channel or cid in floor_language_channels),
                    "listeners": listeners.get(cid, 0),
                }
                for cid, ch in rt.config.channels.items()
            ],
            "seats": seats,
            "inputs": [
                {
                    "id": sid,
                    **engine.buffer(sid).stats.__dict__,
                    "depth": engine.buffer(sid).depth,
                    **self._cushion(engine.buffer(sid)),
                    **self.input_gains.get(sid, {"gain_db": 0.0, "muted": False}),
                }
                for sid in engine.source_ids()
            ],
            "engine": {
                "ticks": stats.ticks,
                "late_ticks": engine.pacer.late_ticks,
                # the input whose arrivals the ticks follow now (None: the fixed grid), and
                # the ticks that waited for its block in vain and concealed it
                "follows": engine.lead if engine.pacer.following else None,
                "lead_timeouts": engine.pacer.lead_timeouts,
                "errors": stats.errors,
                "encodes": stats.encodes,
                "tick_cpu_ms_mean": round(1000 * stats.tick_cpu_seconds / ticks, 3),
                "tick_cpu_ms_max": round(1000 * stats.max_tick_cpu_seconds, 3),
            },
            "connections": self.connections,
            "recording": {
                "on": recording is not None,
                "name": recording.name if recording else None,
                "since": recording.started if recording else None,
            },
            "alarms": self.alarms.snapshot(),
            # handover, slow-down requests and chat of every booth (the booth consoles' state)
            "booths": {b: rt.board.booth_state(b) for b in rt.board.booth_ids()},
        }

    async def fresh_status(self) -> dict[str, Any]:
        """`status()` with connection stats at most one status period old."""
        now = time.monotonic()
        if now - self._connections_at >= STATUS_EVERY * LEVEL_PERIOD * 0.9:
            self.connections = await self.connection_stats()
            self._connections_at = now
        return self.status()

    async def connection_stats(self) -> list[dict[str, Any]]:
        """RTCP-derived loss, jitter and round-trip time for every connection."""
        out = []
        for session in self.rt.peers.sessions():
            with contextlib.suppress(Exception):
                out.append(await _session_stats(session, self.rt.peers.channel_of(session)))
        return out

    @staticmethod
    def _cushion(buffer: object) -> dict[str, float]:
        # Receive buffers only (a file player has no arrivals to wait for).
        if isinstance(buffer, SourceBuffer):
            return {"cushion_blocks": round(buffer.cushion, 2), "ratio": round(buffer.ratio, 5)}
        return {}

    def close(self) -> None:
        self.recording.stop()
        self.rt.engine.remove_tap(self.meters)


async def _session_stats(session: Session, channel: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": session.id,
        "kind": session.kind.value,
        "source": session.source_id,
        "channel": channel,
        "state": session.pc.connectionState,
    }
    report = await session.pc.getStats()
    for stat in report.values():
        if stat.type == "inbound-rtp":
            entry["packets_received"] = stat.packetsReceived
            entry["packets_lost"] = stat.packetsLost
            entry["jitter_ms"] = round(stat.jitter / 48, 1)
        elif stat.type == "remote-inbound-rtp":
            entry["remote_packets_lost"] = stat.packetsLost
            entry["remote_jitter_ms"] = round(stat.jitter / 48, 1)
            entry["rtt_ms"] = round(stat.roundTripTime * 1000, 1)
        elif stat.type == "outbound-rtp":
            entry["packets_sent"] = stat.packetsSent
    return entry
