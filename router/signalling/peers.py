"""WebRTC sessions: publishers (WHIP) feed sources, listeners (WHEP) consume feeds.

No web imports: the HTTP layer calls this with SDP strings and maps its exceptions to codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from router.config import Limits
from router.control.limits import LimitSettings, SessionLimiter, Slot
from router.media.engine import Engine, Feed, Layer, SourceRole
from router.media.fanout import PacketTrack
from router.media.ingest import consume_track
from router.media.inputs import SourceBuffer
from router.media.mixer import FLOOR as FLOOR_CHANNEL
from router.signalling.sdp import SdpError, check_audio_offer

log = logging.getLogger(__name__)


class SessionKind(StrEnum):
    FLOOR = "floor"
    PANELLIST = "panellist"
    SEAT = "seat"
    LISTENER = "listener"
    MONITOR = "monitor"  # a technician listening to one input


class SessionNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Liveness:
    """When a session is given up without a DELETE (a vanished client)."""

    # A publisher that delivered no audio for this long is gone: aiortc would notice only
    # when ICE consent fails, about 30 s later.
    publisher_silence: float = 3.0
    # A session whose connection is not up (or a publisher with no audio yet) this long
    # after its offer was answered never will be: it must not hold a slot.
    connect_timeout: float = 20.0
    check_every: float = 0.25


NO_LIMITS = LimitSettings(per_kind={}, per_address=1 << 30, pending_offers=1 << 30)


def session_limits(limits: Limits) -> LimitSettings:
    """The configured limits. Publishers need no count of their own: each source (the floor, a
    panellist, a seat) has at most one session, a new one replaces the old."""
    return LimitSettings(
        per_kind={
            SessionKind.LISTENER: limits.max_listeners,
            SessionKind.MONITOR: limits.max_monitors,
        },
        per_address=limits.max_sessions_per_address,
        pending_offers=limits.max_pending_offers,
        retry_after=limits.retry_after_seconds,
    )


class NoUnderneathTrack(ValueError):
    """The original underneath needs a second audio track, and this listener has one."""


@dataclass(eq=False)
class Session:
    id: str
    kind: SessionKind
    pc: RTCPeerConnection
    source_id: str | None = None
    outgoing: PacketTrack | None = None
    under: PacketTrack | None = None  # a listener's optional second track: the floor underneath
    underneath: bool = False
    on_close: Callable[[Session], None] | None = None
    owner: object = None  # who created it, for the web layer's DELETE check
    buffer: SourceBuffer | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    slot: Slot | None = None
    created: float = field(default_factory=time.monotonic)
    # Liveness: audio blocks plus RTP packets received when that count last changed, and when.
    last_pushed: int = -1
    last_audio: float = field(default_factory=time.monotonic)
    closed_because: str | None = None


def _opus_only() -> list:
    caps = RTCRtpSender.getCapabilities("audio").codecs
    return [c for c in caps if c.mimeType.lower() == "audio/opus"]


class PeerManager:
    def __init__(
        self,
        engine: Engine,
        rtc_config: Callable[[], RTCConfiguration],
        limits: LimitSettings = NO_LIMITS,
        liveness: Liveness | None = None,
        direct_rtp: bool = True,
        compiled_rtp: bool = True,
    ) -> None:
        self._engine = engine
        self._rtc_config = rtc_config
        self._sessions: dict[str, Session] = {}
        self.limiter = SessionLimiter(limits)
        self.liveness = liveness or Liveness()
        self._direct_rtp = direct_rtp
        self._compiled_rtp = compiled_rtp
        self.timed_out = 0  # sessions closed by the liveness watch

    def get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise SessionNotFound(session_id) from None

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def count(self, kind: SessionKind) -> int:
        return sum(1 for s in self._sessions.values() if s.kind == kind)

    async def publish(
        self,
        kind: SessionKind,
        source_id: str,
        role: SourceRole,
        offer: str,
        return_feed: Feed | None = None,
        on_close: Callable[[Session], None] | None = None,
        owner: object = None,
        client: str | None = None,
    ) -> tuple[Session, str]:
        """Accept a WHIP offer; a new publisher for the same source replaces the old one.

        Raises SdpError for an unusable offer and LimitReached when a limit is full."""
        check_audio_offer(offer)
        slot = self.limiter.acquire(kind, client)
        try:
            for old in [s for s in self._sessions.values() if s.source_id == source_id]:
                await self.close(old.id, "replaced by a new offer for the same source")
        except BaseException:
            self.limiter.release(slot)
            raise
        session = self._new_session(kind, source_id, on_close, slot)
        session.owner = owner

        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and session.buffer is None:
                session.buffer = self._engine.add_source(source_id, role)
                self._spawn(session, consume_track(track, session.buffer))
            else:
                self._spawn(session, _drain(track))

        session.pc.on("track", on_track)
        outgoing = PacketTrack() if return_feed is not None else None
        answer = await self._negotiate(
            session, offer, outgoing, "sendrecv" if outgoing else "recvonly"
        )
        if outgoing is not None and return_feed is not None:
            session.outgoing = outgoing
            self._engine.subscribe(outgoing, return_feed)
        return session, answer

    async def listen(
        self,
        channel: str,
        offer: str,
        underneath: bool = False,
        client: str | None = None,
        kind: SessionKind = SessionKind.LISTENER,
    ) -> tuple[Session, str]:
        """Accept a WHEP offer for one channel's feed.

        An offer with two audio m-lines gets a second track for the original underneath (see
        `switch`); a one-m-line offer is answered exactly as before, with one track.
        """
        check_audio_offer(offer)
        two_tracks = _audio_sections(offer) >= 2
        if underneath and not two_tracks:
            raise NoUnderneathTrack("the original underneath needs an offer with two audio m-lines")
        session = self._new_session(kind, None, None, self.limiter.acquire(kind, client))
        session.pc.on("track", lambda track: self._spawn(session, _drain(track)))
        outgoing = PacketTrack()
        under = PacketTrack() if two_tracks else None
        answer = await self._negotiate(session, offer, outgoing, "sendonly", under)
        session.outgoing = outgoing
        session.under = under
        self._subscribe_listener(session, channel, underneath)
        return session, answer

    async def monitor(
        self, source_id: str, offer: str, client: str | None = None
    ) -> tuple[Session, str]:
        """Accept a WHEP offer for one input alone (the technician's monitor)."""
        session, answer = await self.listen(
            FLOOR_CHANNEL, offer, client=client, kind=SessionKind.MONITOR
        )
        assert session.outgoing is not None
        self._engine.subscribe(session.outgoing, Feed(FLOOR_CHANNEL, solo=source_id))
        return session, answer

    def switch(
        self, session_id: str, channel: str | None = None, underneath: bool | None = None
    ) -> tuple[str, bool]:
        """Move a listener to another channel, or turn the original underneath on or off.

        Same connection, no renegotiation; both tracks change at the same tick. Returns the
        listener's (channel, underneath) now.
        """
        session = self.get(session_id)
        if session.kind != SessionKind.LISTENER or session.outgoing is None:
            raise SessionNotFound(session_id)
        current = self.channel_of(session)
        target = channel if channel is not None else current
        if target is None:
            raise SessionNotFound(session_id)
        wanted = session.underneath if underneath is None else underneath
        if wanted and session.under is None:
            raise NoUnderneathTrack(
                "this session has one audio track: the original underneath needs an offer "
                "with two audio m-lines"
            )
        self._subscribe_listener(session, target, wanted)
        return target, wanted

    def _subscribe_listener(self, session: Session, channel: str, underneath: bool) -> None:
        # Underneath on: the live seat alone on the first track, the floor on the second (only
        # while a seat is live, so never a doubled floor). Off: the channel as configured, and
        # the second track gets no packets at all. Feeds are shared encodes, never per listener.
        assert session.outgoing is not None
        if underneath and session.under is not None:
            self._engine.subscribe(session.outgoing, Feed(channel, layer=Layer.VOICE))
            self._engine.subscribe(session.under, Feed(channel, layer=Layer.UNDER))
        else:
            self._engine.subscribe(session.outgoing, Feed(channel))
            if session.under is not None:
                self._engine.unsubscribe(session.under)
        session.underneath = underneath and session.under is not None

    def channel_of(self, session: Session) -> str | None:
        feed = self._engine.feed_of(session.outgoing) if session.outgoing else None
        return feed.channel if feed else None

    async def close(
        self, session_id: str, reason: str = "ended by request", lost: bool = False
    ) -> None:
        """End a session; `lost`: the router gave it up (failed, vanished), not a request."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        # A lost publisher matters to the event (a seat or the floor dropped): a warning.
        level = logging.WARNING if lost and session.source_id is not None else logging.INFO
        log.log(
            level,
            "session %s (%s %s) closed: %s",
            session.id,
            session.kind,
            session.source_id or "",
            reason,
        )
        for track in (session.outgoing, session.under):
            if track is not None:
                self._engine.unsubscribe(track)
                track.stop()
        if session.source_id is not None:
            self._engine.remove_source(session.source_id, session.buffer)
        for task in session.tasks:
            task.cancel()
        if session.slot is not None:
            self.limiter.release(session.slot)
        with contextlib.suppress(Exception):
            await session.pc.close()
        if session.on_close is not None:
            try:
                session.on_close(session)
            except Exception:
                log.exception("close callback of session %s failed", session.id)

    async def close_all(self) -> None:
        for session_id in list(self._sessions):
            await self.close(session_id)

    async def watch(self) -> None:
        """Close sessions whose client vanished without a DELETE; runs until cancelled."""
        live = self.liveness
        last = time.monotonic()
        while True:
            await asyncio.sleep(live.check_every)
            now = time.monotonic()
            if now - last > live.check_every + 1.0:
                # This loop itself was held up (CPU starvation, a long GC): what clients sent
                # meanwhile may still be queued. Their silence started no earlier than now.
                for session in self._sessions.values():
                    session.last_audio = max(session.last_audio, now)
            last = now
            for session in await self.stale(now):
                self.timed_out += 1
                try:
                    await self.close(session.id, session.closed_because or "stale", lost=True)
                except Exception:
                    log.exception("closing stale session %s failed", session.id)

    async def stale(self, now: float) -> list[Session]:
        """Sessions to give up now; each is marked with the reason.

        A publisher is alive while RTP packets arrive or its buffer gets audio: packets count
        even when decoding lags behind (a busy machine), audio counts for inputs without RTP
        statistics."""
        out = []
        live = self.liveness
        for session in list(self._sessions.values()):
            publisher = session.source_id is not None
            if publisher:  # listeners send no audio: only the connect timeout applies
                activity = await _packets_received(session.pc)
                if session.buffer is not None:
                    activity += session.buffer.stats.pushed
                if activity != session.last_pushed:
                    session.last_pushed = activity
                    session.last_audio = now
            if session.pc.connectionState != "connected":
                # The silence clock starts when the connection is up (a slow handshake is
                # not silence); until then only the connect timeout applies.
                session.last_audio = now
                if now - session.created > live.connect_timeout:
                    session.closed_because = (
                        f"not connected {live.connect_timeout:g} s after the offer"
                    )
                    out.append(session)
            elif publisher and now - session.last_audio > (live.publisher_silence):
                session.closed_because = f"no audio for {live.publisher_silence:g} s"
                out.append(session)
        return out

    # --- internals -----------------------------------------------------------------------

    def _new_session(
        self,
        kind: SessionKind,
        source_id: str | None,
        on_close: Callable[[Session], None] | None,
        slot: Slot,
    ) -> Session:
        try:
            pc = RTCPeerConnection(self._rtc_config())
        except BaseException:
            self.limiter.release(slot)
            raise
        return Session(
            id=secrets.token_urlsafe(12),
            kind=kind,
            pc=pc,
            source_id=source_id,
            on_close=on_close,
            slot=slot,
        )

    async def _negotiate(
        self,
        session: Session,
        offer: str,
        outgoing: PacketTrack | None,
        direction: str,
        second: PacketTrack | None = None,
    ) -> str:
        pc = session.pc
        # Transceivers added before the offer is applied take its audio m-lines in order.
        for track in (outgoing, second) if second is not None else (outgoing,):
            transceiver = pc.addTransceiver(track or "audio", direction=direction)
            transceiver.setCodecPreferences(_opus_only())
            if track is not None and self._direct_rtp:
                # Send in the tick, past aiortc's per-packet sender.
                track.bind(transceiver, self._compiled_rtp)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except BaseException as exc:
            # Also on cancellation (the client hung up mid-offer): nothing may stay behind.
            for task in session.tasks:
                task.cancel()
            for track in (outgoing, second):
                if track is not None:
                    track.stop()
            if session.buffer is not None and session.source_id is not None:
                self._engine.remove_source(session.source_id, session.buffer)
            if session.slot is not None:
                self.limiter.release(session.slot)
            with contextlib.suppress(Exception):
                await pc.close()
            if not isinstance(exc, Exception):
                raise
            raise SdpError(f"cannot negotiate this offer: {exc or type(exc).__name__}") from exc
        if session.slot is not None:
            self.limiter.negotiated(session.slot)
        self._sessions[session.id] = session

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(session.id, f"connection {pc.connectionState}", lost=True)

        return pc.localDescription.sdp

    @staticmethod
    def _spawn(session: Session, coro: object) -> None:
        session.tasks.append(asyncio.ensure_future(coro))  # type: ignore[arg-type]


def _audio_sections(sdp: str) -> int:
    return sum(1 for line in sdp.splitlines() if line.startswith("m=audio "))


async def _packets_received(pc: RTCPeerConnection) -> int:
    """RTP packets received on every track of `pc` so far (aiortc's public statistics)."""
    total = 0
    for receiver in pc.getReceivers():
        try:
            report = await receiver.getStats()
        except Exception:  # a transport torn down meanwhile: nothing more arrives
            continue
        total += sum(
            getattr(stats, "packetsReceived", 0)
            for stats in report.values()
            if getattr(stats, "type", "") == "inbound-rtp"
        )
    return total


async def _drain(track: MediaStreamTrack) -> None:
    # Received tracks queue without bound in aiortc: consume even what we do not use.
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()
