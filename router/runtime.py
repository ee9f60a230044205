"""What one running event holds: config, engine, booths, tokens and WebRTC sessions."""

from __future__ import annotations

from dataclasses import dataclass, field

from router.config import EventConfig
from router.control.booths import BoothBoard
from router.control.tokens import TokenBook
from router.media.clock import Clock, MonotonicClock
from router.media.engine import Engine, EngineSettings, SourceRole
from router.media.player import MediaDeck
from router.media.rtp_input import RtpFormat, RtpInput
from router.signalling.ice import rtc_configuration
from router.signalling.peers import Liveness, PeerManager, session_limits


@dataclass
class EventRuntime:
    config: EventConfig
    engine: Engine
    board: BoothBoard
    tokens: TokenBook
    peers: PeerManager
    media: MediaDeck
    rtp_inputs: list[RtpInput] = field(default_factory=list)

    @property
    def room_sources(self) -> frozenset[str]:
        """What the room's loudspeakers must never play back: the desk feed, in every form."""
        desk = {i.source_id for i in self.rtp_inputs if i.role is SourceRole.ROOM}
        return frozenset({"room", *desk})

    async def start_inputs(self) -> None:
        """Open the RTP inputs' ports; if one cannot be had, close the others and raise."""
        try:
            for rtp in self.rtp_inputs:
                await rtp.start()
        except OSError:
            self.close_inputs()
            raise

    def close_inputs(self) -> None:
        """Stop media playback and close the RTP inputs."""
        self.media.close()
        for rtp in self.rtp_inputs:
            rtp.close()

    @classmethod
    def build(cls, config: EventConfig, clock: Clock | None = None) -> EventRuntime:
        engine = Engine(
            EngineSettings(
                channels=tuple(config.channels),
                bed_gain=config.audio.floor_bed_gain,
                opus_bitrate=config.audio.opus_bitrate,
                opus_packet_loss_percent=config.audio.opus_packet_loss_percent,
                languages={c: ch.language for c, ch in config.channels.items() if ch.language},
                floor_language=config.event.floor_language,
                follow_room=config.audio.follow_room,
            ),
            clock or MonotonicClock(),
        )
        rtp_inputs = [
            RtpInput(
                i.id,
                i.host,
                i.port,
                RtpFormat(i.codec, i.payload_type, i.channels, i.sample_rate),
                engine,
                SourceRole.ROOM if i.in_room else SourceRole.REMOTE,
            )
            for i in config.rtp_inputs
        ]
        return cls(
            config=config,
            engine=engine,
            board=BoothBoard(config, engine),
            tokens=TokenBook(config),
            peers=PeerManager(
                engine,
                lambda: rtc_configuration(config.ice.servers),
                session_limits(config.limits),
                Liveness(
                    publisher_silence=config.limits.publisher_silence_seconds,
                    connect_timeout=config.limits.connect_timeout_seconds,
                ),
                direct_rtp=config.audio.direct_rtp,
                compiled_rtp=config.audio.compiled_rtp,
            ),
            media=MediaDeck(engine, config.media.directory),
            rtp_inputs=rtp_inputs,
        )
