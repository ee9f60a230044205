"""What one running event holds: config, engine, booths, tokens and WebRTC sessions."""

from __future__ import annotations

from dataclasses import dataclass

from router.config import EventConfig
from router.control.booths import BoothBoard
from router.control.tokens import TokenBook
from router.media.clock import Clock, MonotonicClock
from router.media.engine import Engine, EngineSettings
from router.signalling.ice import rtc_configuration
from router.signalling.peers import PeerManager


@dataclass
class EventRuntime:
    config: EventConfig
    engine: Engine
    board: BoothBoard
    tokens: TokenBook
    peers: PeerManager

    @classmethod
    def build(cls, config: EventConfig, clock: Clock | None = None) -> EventRuntime:
        engine = Engine(
            EngineSettings(
                channels=tuple(config.channels),
                bed_gain=config.audio.floor_bed_gain,
                opus_bitrate=config.audio.opus_bitrate,
                opus_packet_loss_percent=config.audio.opus_packet_loss_percent,
            ),
            clock or MonotonicClock(),
        )
        return cls(
            config=config,
            engine=engine,
            board=BoothBoard(config, engine),
            tokens=TokenBook(config),
            peers=PeerManager(engine, lambda: rtc_configuration(config.ice.servers)),
        )
