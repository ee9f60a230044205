"""The tick loop: one clock, 20 ms ticks; the sole writer of media state.

Control calls (sources, live seats, subscriptions) run on the same event loop as the tick, so
they are applied between ticks; the mix matrix is rebuilt lazily at the next tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import av
import numpy as np

from router.media.clock import Clock
from router.media.encoder import OpusFeedEncoder
from router.media.fanout import PacketSink
from router.media.inputs import SAMPLES_PER_BLOCK, BlockSource, SourceBuffer
from router.media.mixer import (
    FLOOR,
    MixMatrix,
    MixPlan,
    build_matrix,
    feed_gains,
    minus_ids,
    mix,
    to_int16,
)
from router.media.pacer import TickPacer

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


class TickTap(Protocol):
    """Sees every tick's inputs and channel mixes (meters, monitors); must be quick."""

    def on_tick(
        self, tick: int, matrix: MixMatrix, blocks: np.ndarray, mixed: np.ndarray
    ) -> None: ...


@dataclass(frozen=True)
class EngineSettings:
    channels: tuple[str, ...]
    bed_gain: float = 0.1
    opus_bitrate: int = 32000
    opus_packet_loss_percent: int = 10
    languages: Mapping[str, str] = field(default_factory=dict)  # channel -> language code
    floor_language: str | None = None


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
class _FeedState:
    sinks: list[PacketSink] = field(default_factory=list)


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
        self._feeds: dict[Feed, _FeedState] = {}
        self._sink_feed: dict[PacketSink, Feed] = {}
        self._encoders: dict[Feed, OpusFeedEncoder] = {}
        self._matrix: MixMatrix | None = None
        self._taps: list[TickTap] = []
        self._blocks = np.zeros((0, SAMPLES_PER_BLOCK), dtype=np.float32)

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

    def remove_source(self, source_id: str, buffer: BlockSource | None = None) -> None:
        """Remove a source; with `buffer`, only if it is still that buffer (not a newer one)."""
        src = self._sources.get(source_id)
        if src is None or (buffer is not None and src.buffer is not buffer):
            return
        del self._sources[source_id]
        self._invalidate()

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
        self._feeds.setdefault(feed, _FeedState()).sinks.append(sink)
        self._sink_feed[sink] = feed

    def unsubscribe(self, sink: PacketSink) -> None:
        feed = self._sink_feed.pop(sink, None)
        if feed is None:
            return
        state = self._feeds[feed]
        state.sinks.remove(sink)
        if not state.sinks:
            del self._feeds[feed]

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
        while True:
            tick = await self.pacer.next_tick()
            try:
                self.tick(tick)
            except Exception:
                # One broken source or consumer must never stop the event.
                self.stats.errors += 1
                log.exception("engine tick %d failed", tick)

    def tick(self, tick: int) -> None:
        started = time.process_time()
        matrix = self._current_matrix()
        blocks = self._blocks
        for i, source_id in enumerate(matrix.sources):
            block = self._sources[source_id].buffer.pull()
            if block is None:
                blocks[i].fill(0.0)
            else:
                blocks[i] = block
        mixed = mix(blocks, matrix)
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
                packets[key] = self._encode(key, mixed, blocks, matrix, tick)
            packet = packets[key]
            if packet is None:
                continue
            for sink in state.sinks:
                try:
                    sink.offer(packet)
                except Exception:
                    self.stats.errors += 1
                    log.exception("delivery to %r failed", sink)
        self._drop_idle_encoders(packets.keys())
        self.stats.ticks += 1
        cpu = time.process_time() - started
        self.stats.tick_cpu_seconds += cpu
        self.stats.max_tick_cpu_seconds = max(self.stats.max_tick_cpu_seconds, cpu)

    def _encode(
        self, feed: Feed, mixed: np.ndarray, blocks: np.ndarray, matrix: MixMatrix, tick: int
    ) -> av.Packet | None:
        solo = matrix.column(feed.solo) if feed.solo is not None else None
        if solo is not None:
            pcm = blocks[solo]
        elif feed.minus is None and feed.layer is Layer.FULL:
            pcm = mixed[matrix.row(feed.channel)]
        else:
            voice_only = feed.layer is Layer.VOICE
            pcm = feed_gains(matrix, feed.channel, feed.minus, voice_only) @ blocks
        encoder = self._encoders.get(feed)
        if encoder is None:
            encoder = OpusFeedEncoder(
                self.settings.opus_bitrate, self.settings.opus_packet_loss_percent
            )
            self._encoders[feed] = encoder
        self.stats.encodes += 1
        return encoder.encode(to_int16(pcm), tick)

    def _effective(self, feed: Feed, matrix: MixMatrix) -> Feed | None:
        """The feed that is actually encoded: equal mixes share one encode; None sends nothing."""
        if feed.solo is not None:
            return feed if matrix.column(feed.solo) is not None else None
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
            )
            self._matrix = build_matrix(plan, list(self._sources))
            self._blocks = np.zeros((len(self._sources), SAMPLES_PER_BLOCK), dtype=np.float32)
        return self._matrix

    def _invalidate(self) -> None:
        self._matrix = None

    def _check_channel(self, channel: str) -> None:
        if channel not in self.settings.channels:
            raise UnknownChannel(channel)
