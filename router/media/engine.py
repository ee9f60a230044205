"""The tick loop: one clock, 20 ms ticks; the sole writer of media state.

Control calls (sources, live seats, subscriptions) run on the same event loop as the tick, so
they are applied between ticks; the mix matrix is rebuilt lazily at the next tick. Every change
of a channel's mix (a handover, a mic on or off, a cough, a dropped seat) starts at a tick
boundary and crossfades over `fade_ticks`, so a switch neither clicks, nor leaves a gap, nor
doubles two voices at full level.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import av
import numpy as np

from router.media.clock import Clock
from router.media.encoder import OpusFeedEncoder
from router.media.fanout import FeedFanout, PacketSink
from router.media.inputs import SAMPLES_PER_BLOCK, BlockSource, SourceBuffer
from router.media.mixer import (
    FLOOR,
    MixMatrix,
    MixPlan,
    build_matrix,
    fade_ramp,
    feed_gains,
    minus_ids,
    mix,
    remap,
    to_int16,
)
from router.media.pacer import TickPacer
from router.media.returnfeed import ReturnProcessor, ReturnSpec

log = logging.getLogger(__name__)


class SourceRole(StrEnum):
    ROOM = "room"  # the sound desk feed
    PANELLIST = "panellist"
    MEDIA = "media"  # video message, files
    REMOTE = "remote"  # another system over RTP, heard in the room like a panellist
    SEAT = "seat"  # an interpreter seat


FLOOR_ROLES = frozenset(
    {SourceRole.ROOM, SourceRole.PANELLIST, SourceRole.MEDIA, SourceRole.REMOTE}
)


class Layer(StrEnum):
    FULL = "full"  # the channel as configured: the live seat over the floor bed
    VOICE = "voice"  # the live seat alone (a listener mixes the floor in themselves)
    UNDER = "under"  # the floor while a seat is live on the channel; nothing otherwise


@dataclass(frozen=True)
class Feed:
    """What a consumer hears: a channel, optionally without one source or a set of sources
    (mix-minus: a panellist without their own voice, the room without anything from the room)."""

    channel: str
    minus: str | frozenset[str] | None = None
    layer: Layer = Layer.FULL
    solo: str | None = None  # one input alone, as it arrives (a technician's monitor)
    # A personal feed (an interpreter's headphones): the channel minus `minus`, plus the
    # extras, volume, tone and limiter of the ReturnSpec set under this id. Never shared.
    personal: str | None = None


class TickTap(Protocol):
    """Sees every tick's inputs and channel mixes (meters, monitors); must be quick."""

    def on_tick(
        self, tick: int, matrix: MixMatrix, blocks: np.ndarray, mixed: np.ndarray
    ) -> None: ...


@dataclass(frozen=True)
class EngineSettings:
    channels: tuple[str, ...]
    bed_gain: float = 0.1
    opus_bitrate: int = 64000
    opus_packet_loss_percent: int = 5
    languages: Mapping[str, str] = field(default_factory=dict)  # channel -> language code
    floor_language: str | None = None
    fade_ticks: int = 2  # crossfade of every routing change: 40 ms
    stall_ticks: int = 25  # a seat that sent audio and then nothing for 500 ms has stalled
    # The ticks follow the arrivals of the room's desk feed (the first room input with a
    # receive buffer), so the floor waits for no tick: router/media/pacer.py.
    follow_room: bool = False


@dataclass
class EngineStats:
    ticks: int = 0
    errors: int = 0
    encodes: int = 0
    tick_cpu_seconds: float = 0.0
    max_tick_cpu_seconds: float = 0.0


@dataclass
class _Source:
    role: SourceRole
    buffer: BlockSource


@dataclass
class _Fade:
    old: MixMatrix  # the mix being left, in the current matrix's columns
    done: int = 0  # samples of the fade already played


@dataclass
class _Arrival:
    pushed: int
    at: int  # ticks run (stats.ticks) when `pushed` last changed
    since: int  # start of the stall window: `at`, or the last tick the engine ran late
    stalled: bool = False


StallListener = Callable[[str, bool], None]  # (source, stalled now)


class UnknownChannel(KeyError):
    pass


class Engine:
    def __init__(self, settings: EngineSettings, clock: Clock) -> None:
        if FLOOR not in settings.channels:
            raise ValueError("the floor channel is required")
        self.settings = settings
        self.pacer = TickPacer(clock)
        self.stats = EngineStats()
        self._sources: dict[str, _Source] = {}
        self._live: dict[str, str] = {}
        self._floor_language = settings.floor_language
        self._gains: dict[str, float] = {}
        self._feeds: dict[Feed, FeedFanout] = {}
        self._sink_feed: dict[PacketSink, Feed] = {}
        self._encoders: dict[Feed, OpusFeedEncoder] = {}
        self._matrix: MixMatrix | None = None
        self._last_matrix: MixMatrix | None = None
        self._fade: _Fade | None = None
        self._muted: set[str] = set()
        self._returns: dict[str, ReturnSpec] = {}
        self._processors: dict[str, ReturnProcessor] = {}
        self._arrivals: dict[str, _Arrival] = {}
        self._late_seen = 0
        self._stall_listeners: list[StallListener] = []
        self._floor_language_listeners: list[Callable[[str | None], None]] = []
        self._taps: list[TickTap] = []
        self._blocks = np.zeros((0, SAMPLES_PER_BLOCK), dtype=np.float32)
        self._lead: tuple[str, SourceBuffer] | None = None

    # --- sources -------------------------------------------------------------------------

    def add_source(
        self, source_id: str, role: SourceRole, buffer: SourceBuffer | None = None
    ) -> SourceBuffer:
        """Register (or replace) a source; returns the buffer ingest must fill."""
        buf = buffer or SourceBuffer()
        self.attach(source_id, role, buf)
        return buf

    def attach(self, source_id: str, role: SourceRole, source: BlockSource) -> None:
        """Register (or replace) a source that makes its own blocks (a file player)."""
        self._sources[source_id] = _Source(role, source)
        self._invalidate()
        self._choose_lead()

    def remove_source(self, source_id: str, buffer: BlockSource | None = None) -> None:
        """Remove a source; with `buffer`, only if it is still that buffer (not a newer one)."""
        src = self._sources.get(source_id)
        if src is None or (buffer is not None and src.buffer is not buffer):
            return
        del self._sources[source_id]
        self._arrivals.pop(source_id, None)
        self._invalidate()
        self._choose_lead()

    @property
    def lead(self) -> str | None:
        """The input whose arrivals the ticks follow, if any."""
        return self._lead[0] if self._lead is not None else None

    def _choose_lead(self) -> None:
        lead = None
        if self.settings.follow_room:
            lead = next(
                (
                    (sid, src.buffer)
                    for sid, src in self._sources.items()
                    if src.role is SourceRole.ROOM and isinstance(src.buffer, SourceBuffer)
                ),
                None,
            )
        old = self._lead
        if (old and old[1]) is (lead and lead[1]):
            self._lead = lead  # the same buffer (or none), perhaps under another id
            return
        if old is not None:
            old[1].pace(None)
        self._lead = lead
        if lead is not None:
            lead[1].pace(self.pacer.arrived)
        self.pacer.follow(lead[1] if lead is not None else None)

    def has_source(self, source_id: str) -> bool:
        return source_id in self._sources

    def source_ids(self) -> list[str]:
        return list(self._sources)

    def buffer(self, source_id: str) -> BlockSource:
        return self._sources[source_id].buffer

    def role(self, source_id: str) -> SourceRole:
        return self._sources[source_id].role

    def set_gain(self, source_id: str, gain: float) -> None:
        self._gains[source_id] = gain
        self._invalidate()

    def set_muted(self, source_id: str, muted: bool) -> None:
        """Silence a source everywhere without changing who is live (an interpreter's cough)."""
        if muted == (source_id in self._muted):
            return
        if muted:
            self._muted.add(source_id)
        else:
            self._muted.discard(source_id)
        self._invalidate()

    def is_muted(self, source_id: str) -> bool:
        return source_id in self._muted

    def add_stall_listener(self, listener: StallListener) -> None:
        """Told (inside the tick, before mixing) when an interpreter seat stops or resumes
        sending: no block pushed for `stall_ticks` ticks after it had sent audio."""
        self._stall_listeners.append(listener)

    # --- routing -------------------------------------------------------------------------

    def set_live(self, channel: str, source_id: str | None) -> None:
        self._check_channel(channel)
        if channel == FLOOR:
            raise ValueError("nobody is live into the floor channel")
        if source_id is None:
            self._live.pop(channel, None)
        else:
            self._live[channel] = source_id
        self._invalidate()

    def live_source(self, channel: str) -> str | None:
        return self._live.get(channel)

    @property
    def floor_language(self) -> str | None:
        return self._floor_language

    def set_floor_language(self, language: str | None) -> None:
        """The language spoken on the floor now: its channels carry the floor (auto-floor)."""
        self._floor_language = language
        self._invalidate()
        for listener in self._floor_language_listeners:
            listener(language)

    def add_floor_language_listener(self, listener: Callable[[str | None], None]) -> None:
        self._floor_language_listeners.append(listener)

    def auto_floor_channels(self) -> frozenset[str]:
        """Channels in the floor language: they carry the floor even with a seat live."""
        if self._floor_language is None:
            return frozenset()
        return frozenset(
            ch
            for ch, lang in self.settings.languages.items()
            if lang == self._floor_language and ch != FLOOR
        )

    # --- consumers -----------------------------------------------------------------------

    def subscribe(self, sink: PacketSink, feed: Feed) -> None:
        """Start (or move) a consumer; takes effect at the next tick."""
        self._check_channel(feed.channel)
        self.unsubscribe(sink)
        self._feeds.setdefault(feed, FeedFanout()).add(sink)
        self._sink_feed[sink] = feed

    def unsubscribe(self, sink: PacketSink) -> None:
        feed = self._sink_feed.pop(sink, None)
        if feed is None:
            return
        state = self._feeds[feed]
        state.remove(sink)
        if not state.sinks:
            del self._feeds[feed]

    def set_return(self, personal: str, spec: ReturnSpec | None) -> None:
        """Set (or, with None, forget) how the personal feed `personal` is made."""
        if spec is None:
            self._returns.pop(personal, None)
            self._processors.pop(personal, None)
            return
        self._returns[personal] = spec
        self._processors.setdefault(personal, ReturnProcessor()).configure(spec)

    def feed_of(self, sink: PacketSink) -> Feed | None:
        return self._sink_feed.get(sink)

    def consumers(self, channel: str) -> int:
        return sum(len(s.sinks) for f, s in self._feeds.items() if f.channel == channel)

    def add_tap(self, tap: TickTap) -> None:
        self._taps.append(tap)

    def remove_tap(self, tap: TickTap) -> None:
        if tap in self._taps:
            self._taps.remove(tap)

    # --- the tick ------------------------------------------------------------------------

    async def run(self) -> None:
        last: int | None = None
        while True:
            tick = await self.pacer.next_tick()
            if last is not None and tick > last + 1:
                self._skipped(tick - last - 1)
            last = tick
            try:
                self.tick(tick)
            except Exception:
                # One broken source or consumer must never stop the event.
                self.stats.errors += 1
                log.exception("engine tick %d failed", tick)

    def _skipped(self, ticks: int) -> None:
        # The process stalled and these ticks never ran: the receive buffers owe their audio.
        for src in self._sources.values():
            if isinstance(src.buffer, SourceBuffer):
                src.buffer.note_skipped_ticks(ticks)

    def tick(self, tick: int) -> None:
        started = time.thread_time()  # this thread only: decoder threads run meanwhile
        # Counted in ticks that ran, not tick numbers: when the loop was blocked and whole
        # periods were skipped, the packets of that time are still queued, not missing.
        self._watch_arrivals(self.stats.ticks)
        matrix = self._current_matrix()
        blocks = self._blocks
        for i, source_id in enumerate(matrix.sources):
            try:
                block = self._sources[source_id].buffer.pull()
            except Exception:
                # One broken source is silence; the others and every channel go on.
                self.stats.errors += 1
                log.exception("source %s failed", source_id)
                block = None
            if block is None:
                blocks[i].fill(0.0)
            else:
                blocks[i] = block
        ramp = self._fade_ramp()
        mixed = mix(blocks, matrix)
        if ramp is not None and self._fade is not None:
            old = mix(blocks, self._fade.old)
            mixed = old + (mixed - old) * ramp
        for tap in self._taps:
            try:
                tap.on_tick(tick, matrix, blocks, mixed)
            except Exception:
                self.stats.errors += 1
                log.exception("tick tap %r failed", tap)
        packets: dict[Feed, av.Packet | None] = {}
        for feed, state in self._feeds.items():
            key = self._effective(feed, matrix)
            if key is None:
                continue
            if key not in packets:
                packets[key] = self._encode(key, mixed, blocks, matrix, tick, ramp)
            packet = packets[key]
            if packet is None:
                continue
            self.stats.errors += state.deliver(packet)
        self._drop_idle_encoders(packets.keys())
        if self._fade is not None:
            self._fade.done += SAMPLES_PER_BLOCK
            if self._fade.done >= self._fade_samples:
                self._fade = None
        self.stats.ticks += 1
        cpu = time.thread_time() - started
        self.stats.tick_cpu_seconds += cpu
        self.stats.max_tick_cpu_seconds = max(self.stats.max_tick_cpu_seconds, cpu)

    def _encode(
        self,
        feed: Feed,
        mixed: np.ndarray,
        blocks: np.ndarray,
        matrix: MixMatrix,
        tick: int,
        ramp: np.ndarray | None,
    ) -> av.Packet | None:
        solo = matrix.column(feed.solo) if feed.solo is not None else None
        if solo is not None:
            pcm = blocks[solo]
        elif feed.minus is None and feed.layer is Layer.FULL and feed.personal is None:
            pcm = mixed[matrix.row(feed.channel)]
        else:
            pcm = self._feed_gains(feed, matrix) @ blocks
            if ramp is not None and self._fade is not None:
                old = self._feed_gains(feed, self._fade.old) @ blocks
                pcm = old + (pcm - old) * ramp
            processor = self._processors.get(feed.personal) if feed.personal else None
            if processor is not None:
                pcm = processor.process(pcm)
        encoder = self._encoders.get(feed)
        if encoder is None:
            encoder = OpusFeedEncoder(
                self.settings.opus_bitrate, self.settings.opus_packet_loss_percent
            )
            self._encoders[feed] = encoder
        self.stats.encodes += 1
        return encoder.encode(to_int16(pcm), tick)

    def _feed_gains(self, feed: Feed, matrix: MixMatrix) -> np.ndarray:
        gains = feed_gains(matrix, feed.channel, feed.minus, feed.layer is Layer.VOICE)
        spec = self._returns.get(feed.personal) if feed.personal else None
        if spec is not None:
            own = minus_ids(feed.minus)
            for source, gain in spec.extra.items():
                c = matrix.column(source)
                if c is not None and source not in own and source not in self._muted:
                    # a partner already in the channel is not doubled
                    gains[c] = max(gains[c], gain)
        return gains

    def _effective(self, feed: Feed, matrix: MixMatrix) -> Feed | None:
        """The feed that is actually encoded: equal mixes share one encode; None sends nothing."""
        if feed.solo is not None:
            return feed if matrix.column(feed.solo) is not None else None
        if feed.personal is not None:
            return feed  # one listener's own processing chain: never shared
        live = matrix.live.get(feed.channel)
        if feed.layer is Layer.UNDER:
            return Feed(FLOOR) if live is not None else None
        if feed.layer is Layer.VOICE and (live is None or self.settings.bed_gain == 0.0):
            feed = Feed(feed.channel, feed.minus)
        if feed.minus is not None:
            # Keep only what is really in the mix, so equal mixes share one encode.
            row = matrix.gains[matrix.row(feed.channel)]
            heard = []
            for source in minus_ids(feed.minus):
                c = matrix.column(source)
                if c is not None and row[c] != 0.0:
                    heard.append(source)
            if not heard:
                return Feed(feed.channel, layer=feed.layer)
            minus = heard[0] if len(heard) == 1 else frozenset(heard)
            if minus != feed.minus:
                return Feed(feed.channel, minus, feed.layer)
        return feed

    def _drop_idle_encoders(self, used: Iterable[Feed]) -> None:
        keep = set(used)
        if len(self._encoders) > len(keep):
            for feed in [f for f in self._encoders if f not in keep]:
                del self._encoders[feed]

    def _current_matrix(self) -> MixMatrix:
        if self._matrix is None:
            plan = MixPlan(
                channels=self.settings.channels,
                floor_inputs=frozenset(
                    s for s, src in self._sources.items() if src.role in FLOOR_ROLES
                ),
                live=dict(self._live),
                bed_gain=self.settings.bed_gain,
                input_gains=dict(self._gains),
                auto_floor=self.auto_floor_channels(),
                muted=frozenset(self._muted),
            )
            matrix = build_matrix(plan, list(self._sources))
            self._start_fade(matrix)
            self._matrix = self._last_matrix = matrix
            self._blocks = np.zeros((len(self._sources), SAMPLES_PER_BLOCK), dtype=np.float32)
        return self._matrix

    @property
    def _fade_samples(self) -> int:
        return self.settings.fade_ticks * SAMPLES_PER_BLOCK

    def _start_fade(self, new: MixMatrix) -> None:
        """Fade from what was heard at the end of the last tick (mid-fade too) to `new`."""
        last = self._last_matrix
        if last is None or self.settings.fade_ticks <= 0:
            return
        heard = last.gains
        if self._fade is not None:
            w = min(self._fade.done / self._fade_samples, 1.0)
            heard = self._fade.old.gains + (last.gains - self._fade.old.gains) * np.float32(w)
        old = remap(last, heard, new.sources)
        if np.array_equal(old.gains, new.gains):
            self._fade = None
            return
        self._fade = _Fade(old)

    def _fade_ramp(self) -> np.ndarray | None:
        if self._fade is None:
            return None
        return fade_ramp(self._fade.done, self._fade_samples, SAMPLES_PER_BLOCK)

    def _watch_arrivals(self, ran: int) -> None:
        """Tell the stall listeners when a seat stops sending, and when it sends again."""
        if not self._stall_listeners:
            return
        # While the engine itself misses deadlines the process is overloaded and a seat's
        # decoding lags with it: a late tick restarts the 500 ms window, so an interpreter is
        # not taken off air because we were slow; a seat silent for 2 s goes off air anyway.
        late = self.pacer.late_ticks != self._late_seen
        self._late_seen = self.pacer.late_ticks
        for source_id, src in self._sources.items():
            if src.role is not SourceRole.SEAT:
                continue
            pushed = src.buffer.stats.pushed
            seen = self._arrivals.get(source_id)
            if seen is None:
                if pushed > 0:  # watched from its first audio on: ICE may take a while
                    self._arrivals[source_id] = _Arrival(pushed, ran, ran)
                continue
            change: bool | None = None
            if late and not seen.stalled:
                seen.since = ran
            if pushed != seen.pushed:
                seen.pushed, seen.at, seen.since = pushed, ran, ran
                if seen.stalled:
                    seen.stalled, change = False, False
            elif not seen.stalled and (
                ran - seen.since >= self.settings.stall_ticks
                or ran - seen.at >= 4 * self.settings.stall_ticks  # overloaded: 2 s at most
            ):
                seen.stalled, change = True, True
            if change is not None:
                for listener in self._stall_listeners:
                    try:
                        listener(source_id, change)
                    except Exception:
                        self.stats.errors += 1
                        log.exception("stall listener failed for %s", source_id)

    def _invalidate(self) -> None:
        self._matrix = None

    def _check_channel(self, channel: str) -> None:
        if channel not in self.settings.channels:
            raise UnknownChannel(channel)
