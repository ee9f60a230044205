"""Booths and seats: the state machine interpreters work with.

Who is connected, who is live into which output (A: the booth's channel, B: its retour), the
interlock (one live seat per output channel, across booths), handover (request, accept, cancel,
take over), the cough key, dropped seats, what each seat hears and how (its return feed), the
slow-down request and the chat. The engine is told who is live, who is muted and what each
seat's return carries; every change bumps a version that the booth WebSockets wait on, and each
of them then sends a full snapshot (level-triggered: a reconnecting console is right at once).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import StrEnum

from router.config import EventConfig
from router.control.booth_chat import ChatLog
from router.control.booth_relay import AUTO, FLOOR, LiveSeat, resolve
from router.media.engine import Engine, Feed
from router.media.fanout import PacketSink
from router.media.returnfeed import ReturnSpec

PARTNER_DB = -15.0  # a partner's voice in a seat's headphones: present, well under the source
TECHNICIAN = "technician"


class SeatNotFound(LookupError):
    pass


class Reason(StrEnum):
    NOT_CONNECTED = "not_connected"
    INTERLOCK = "interlock"  # another booth is live on the channel
    PARTNER_LIVE = "partner_live"  # a partner is live: hand over instead
    NO_RETOUR = "no_retour"
    NOBODY_LIVE = "nobody_live"
    NO_REQUEST = "no_request"
    NOT_YOURS = "not_yours"
    UNKNOWN_SOURCE = "unknown_source"


class MicRefused(Exception):
    """A booth action is refused; `reason` is a stable word, the message a sentence."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Output(StrEnum):
    A = "A"  # the booth's language
    B = "B"  # the retour


@dataclass
class SeatState:
    booth: str
    seat: str
    connected: bool = False
    live: bool = False
    output: Output = Output.A
    source: str = AUTO  # floor, auto, or a channel (relay)
    coughing: bool = False
    dropped: bool = False  # went silent while connected (no packets); cleared when audio resumes
    volume_db: float = 0.0
    bass_db: float = 0.0
    treble_db: float = 0.0
    partner_db: float = PARTNER_DB
    sink: PacketSink | None = field(default=None, repr=False)  # the seat's return track

    @property
    def source_id(self) -> str:
        return seat_source_id(self.booth, self.seat)


@dataclass(frozen=True)
class Handover:
    requester: str  # a seat of the booth
    live: bool  # the requester was live (an offer to partners) or not (a request to take over)
    at: float


def seat_source_id(booth: str, seat: str) -> str:
    return f"seat:{booth}:{seat}"


def parse_seat_source(source: str) -> tuple[str, str] | None:
    parts = source.split(":")
    return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == "seat" else None


class BoothBoard:
    def __init__(self, config: EventConfig, engine: Engine) -> None:
        self._engine = engine
        self._booths = dict(config.booths)
        self._channel = {bid: b.channel for bid, b in config.booths.items()}
        self._channels = tuple(config.channels)
        self._languages = {bid: tuple(b.understands) for bid, b in config.booths.items()}
        self._channel_language = {
            c: ch.language for c, ch in config.channels.items() if ch.language
        }
        self._seats = {
            (bid, sid): SeatState(bid, sid) for bid, b in config.booths.items() for sid in b.seats
        }
        self._handover: dict[str, Handover] = {}
        self._slow_down: dict[str, tuple[str, float]] = {}
        self._chat = {bid: ChatLog() for bid in config.booths}
        self.auto_relay = True
        self._version = 0
        self._changed = asyncio.Event()
        engine.add_stall_listener(self._on_stall)
        engine.add_floor_language_listener(lambda _: self._changed_routing())

    # --- lookups -------------------------------------------------------------------------

    def seat(self, booth: str, seat: str) -> SeatState:
        try:
            return self._seats[(booth, seat)]
        except KeyError:
            raise SeatNotFound(f"no seat {seat!r} in booth {booth!r}") from None

    def has_booth(self, booth: str) -> bool:
        return booth in self._channel

    def booth_ids(self) -> list[str]:
        return list(self._channel)

    def output_channel(self, booth: str) -> str:
        return self._channel[booth]

    def retour_channel(self, booth: str) -> str | None:
        return self._booths[booth].retour

    def channel_of(self, state: SeatState) -> str:
        """The channel this seat speaks into when live (output A or B)."""
        if state.output is Output.B:
            retour = self.retour_channel(state.booth)
            if retour is not None:
                return retour
        return self._channel[state.booth]

    def live_seat(self, channel: str) -> SeatState | None:
        for state in self._seats.values():
            if state.live and self.channel_of(state) == channel:
                return state
        return None

    def seats_of(self, booth: str) -> list[SeatState]:
        return [s for (b, _), s in self._seats.items() if b == booth]

    def hears(self, state: SeatState) -> str:
        """The channel the seat's return carries now (its source resolved)."""
        live = [
            LiveSeat(self.channel_of(s), s.booth, s.source) for s in self._seats.values() if s.live
        ]
        return resolve(
            state.booth,
            state.source,
            own_channel=self.channel_of(state),
            auto_relay=self.auto_relay,
            floor_language=self._engine.floor_language,
            languages=self._languages,
            channel_language=self._channel_language,
            live=live,
        )

    # --- connection ----------------------------------------------------------------------

    def set_connected(self, booth: str, seat: str, connected: bool) -> None:
        state = self.seat(booth, seat)
        state.connected = connected
        state.dropped = False
        if not connected:
            # A lost or reloaded console goes off air; it is live again only when the
            # interpreter says so (a new session starts connected and not live).
            self._go_off(state)
            self._release_cough(state)
            self._cancel_involving(state)
            state.sink = None
        self._changed_routing()

    def attach_return(self, booth: str, seat: str, sink: PacketSink) -> None:
        """The seat's return track: from now on it carries what the seat chose to hear."""
        state = self.seat(booth, seat)
        state.sink = sink
        self._apply_return(state)
        self._bump()

    def _on_stall(self, source: str, stalled: bool) -> None:
        ids = parse_seat_source(source)
        if ids is None or ids not in self._seats:
            return
        state = self._seats[ids]
        if stalled:
            # No packets for ~500 ms: the channel goes back to the floor now, not when ICE
            # gives up (~30 s). The session stays; audio coming back makes it connected again.
            state.connected = False
            state.dropped = True
            self._go_off(state)
            self._release_cough(state)
            self._cancel_involving(state)
        elif state.dropped:
            state.connected = True
            state.dropped = False
        self._changed_routing()

    # --- the mic, interlock and handover -------------------------------------------------

    def set_mic(self, booth: str, seat: str, on: bool) -> SeatState:
        state = self.seat(booth, seat)
        if not on:
            if state.live:
                self._go_off(state)
                self._release_cough(state)
                self._cancel_involving(state)
                self._changed_routing()
            return state
        if state.live:
            return state
        self._check_can_go_live(state, self.channel_of(state))
        self._go_live(state, self.channel_of(state))
        self._changed_routing()
        return state

    def set_output(self, booth: str, seat: str, output: Output) -> SeatState:
        state = self.seat(booth, seat)
        if output is Output.B and self.retour_channel(booth) is None:
            raise MicRefused(Reason.NO_RETOUR, f"booth {booth!r} has no retour channel (B)")
        if output is state.output:
            return state
        if state.live:
            # Switching A/B while live moves the voice, under the same interlock.
            target = self._channel[booth] if output is Output.A else self.retour_channel(booth)
            assert target is not None
            self._check_can_go_live(state, target)
            self._go_off(state)
            state.output = output
            self._go_live(state, target)
        else:
            state.output = output
        self._changed_routing()
        return state

    def request_handover(self, booth: str, seat: str) -> Handover:
        state = self.seat(booth, seat)
        if not state.connected:
            raise MicRefused(Reason.NOT_CONNECTED, f"seat {seat!r} is not connected")
        if not state.live and self._booth_live(booth) is None:
            raise MicRefused(
                Reason.NOBODY_LIVE, f"nobody in booth {booth!r} is live: turn your mic on"
            )
        request = Handover(seat, state.live, time.time())
        self._handover[booth] = request
        self._bump()
        return request

    def cancel_handover(self, booth: str, seat: str) -> None:
        """The requester withdraws, or a partner declines."""
        self.seat(booth, seat)
        if booth not in self._handover:
            raise MicRefused(Reason.NO_REQUEST, "there is no handover request to cancel")
        del self._handover[booth]
        self._bump()

    def accept_handover(self, booth: str, seat: str) -> SeatState:
        """Accept a partner's request; the switch happens at the next tick, crossfaded."""
        state = self.seat(booth, seat)
        request = self._handover.get(booth)
        if request is None:
            raise MicRefused(Reason.NO_REQUEST, "there is no handover request to accept")
        if request.requester == seat:
            raise MicRefused(Reason.NOT_YOURS, "a partner has to accept your own request")
        live = self._booth_live(booth)
        if live is None:
            del self._handover[booth]
            self._bump()
            raise MicRefused(Reason.NOBODY_LIVE, "nobody in the booth is live any more")
        if request.live:
            # the live requester offered the mic: the acceptor takes it
            outgoing, incoming = live, state
        else:
            if live is not state:
                raise MicRefused(Reason.NOT_YOURS, "only the live partner can accept this request")
            outgoing, incoming = state, self.seat(booth, request.requester)
        self._switch(outgoing, incoming)
        return self.seat(booth, seat)

    def take_over(self, booth: str, seat: str) -> SeatState:
        """Take the mic from a live partner who agreed (offered a handover) or whose mic is
        off (coughing, or the link dropped); with nobody live it is a plain mic on."""
        state = self.seat(booth, seat)
        if state.live:
            return state
        live = self._booth_live(booth)
        if live is None:
            return self.set_mic(booth, seat, True)
        request = self._handover.get(booth)
        offered = request is not None and request.live and request.requester == live.seat
        if not (offered or live.coughing):
            raise MicRefused(
                Reason.PARTNER_LIVE,
                f"seat {live.seat!r} is speaking: ask for a handover, "
                "or wait until their mic is off",
            )
        self._switch(live, state)
        return state

    def set_cough(self, booth: str, seat: str, held: bool) -> SeatState:
        """Mute while held: the channel keeps its live seat (and only the floor bed under it),
        never falls back to the floor at full level."""
        state = self.seat(booth, seat)
        if held and not state.connected:
            raise MicRefused(Reason.NOT_CONNECTED, f"seat {seat!r} is not connected")
        if state.coughing != held:
            state.coughing = held
            self._engine.set_muted(state.source_id, held)
            self._bump()
        return state

    # --- what a seat hears ---------------------------------------------------------------

    def set_source(self, booth: str, seat: str, source: str) -> SeatState:
        state = self.seat(booth, seat)
        if source not in (AUTO, FLOOR) and source not in self._channels:
            known = ", ".join([AUTO, *self._channels])
            raise MicRefused(Reason.UNKNOWN_SOURCE, f"unknown source {source!r} (known: {known})")
        state.source = source
        self._changed_routing()
        return state

    def set_return(
        self,
        booth: str,
        seat: str,
        *,
        volume_db: float | None = None,
        bass_db: float | None = None,
        treble_db: float | None = None,
        partner_db: float | None = None,
    ) -> SeatState:
        state = self.seat(booth, seat)
        if volume_db is not None:
            state.volume_db = volume_db
        if bass_db is not None:
            state.bass_db = bass_db
        if treble_db is not None:
            state.treble_db = treble_db
        if partner_db is not None:
            state.partner_db = partner_db
        self._changed_routing()
        return state

    def set_auto_relay(self, on: bool) -> None:
        self.auto_relay = on
        self._changed_routing()

    # --- slow-down and chat --------------------------------------------------------------

    def set_slow_down(self, booth: str, seat: str, on: bool) -> None:
        self.seat(booth, seat)
        if on:
            self._slow_down[booth] = (seat, time.time())
        else:
            self._slow_down.pop(booth, None)
        self._bump()

    def chat(self, booth: str, sender: str, text: str) -> None:
        """`sender`: a seat of the booth or TECHNICIAN; ValueError for an empty text."""
        self._chat[booth].add(sender, text)
        self._bump()

    # --- snapshots -----------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._version

    async def wait_change(self, seen: int) -> int:
        """Until the state is newer than `seen`; returns the version now (callers bound the
        wait with asyncio.timeout to refresh what the board does not own, like audiences)."""
        if self._version == seen:
            await self._changed.wait()
        return self._version

    def booth_state(self, booth: str) -> dict[str, object]:
        """The full state of one booth, as its consoles and technicians see it."""
        live = self._booth_live(booth)
        request = self._handover.get(booth)
        slow = self._slow_down.get(booth)
        other_live = {
            ch: f"{s.booth}/{s.seat}"
            for ch in (self._channel[booth], self.retour_channel(booth))
            if ch is not None and (s := self.live_seat(ch)) is not None
        }
        return {
            "booth": booth,
            "channel": self._channel[booth],
            "retour": self.retour_channel(booth),
            "floor_language": self._engine.floor_language,
            "auto_relay": self.auto_relay,
            "live_seat": live.seat if live else None,
            "live_on": other_live,  # who holds the booth's outputs now (any booth)
            "handover": (
                {"from": request.requester, "from_live": request.live, "at": request.at}
                if request
                else None
            ),
            "slow_down": {"seat": slow[0], "at": slow[1]} if slow else None,
            "seats": [
                {
                    "seat": s.seat,
                    "connected": s.connected,
                    "dropped": s.dropped,
                    "live": s.live,
                    "output": s.output.value,
                    "channel": self.channel_of(s),
                    "source": s.source,
                    "hears": self.hears(s),
                    "coughing": s.coughing,
                    "volume_db": s.volume_db,
                    "bass_db": s.bass_db,
                    "treble_db": s.treble_db,
                    "partner_db": s.partner_db,
                }
                for s in self.seats_of(booth)
            ],
            "chat": self._chat[booth].messages(),
        }

    def snapshot(self) -> list[dict[str, object]]:
        """Every seat, flat (the technician's status and the alarms read this)."""
        return [
            {
                "booth": s.booth,
                "seat": s.seat,
                "channel": self.channel_of(s),
                "connected": s.connected,
                "live": s.live,
            }
            for s in self._seats.values()
        ]

    # --- internals -----------------------------------------------------------------------

    def _booth_live(self, booth: str) -> SeatState | None:
        return next((s for s in self.seats_of(booth) if s.live), None)

    def _check_can_go_live(self, state: SeatState, channel: str) -> None:
        if not state.connected:
            raise MicRefused(
                Reason.NOT_CONNECTED, f"seat {state.seat!r} is not connected: publish audio first"
            )
        holder = self.live_seat(channel)
        if holder is not None and holder is not state:
            if holder.booth == state.booth:
                raise MicRefused(
                    Reason.PARTNER_LIVE,
                    f"interlock: your partner {holder.seat!r} is live on {channel!r}: "
                    "ask for a handover",
                )
            raise MicRefused(
                Reason.INTERLOCK,
                f"interlock: seat {holder.seat!r} of booth {holder.booth!r} is live on {channel!r}",
            )

    def _go_live(self, state: SeatState, channel: str) -> None:
        state.live = True
        self._engine.set_live(channel, state.source_id)

    def _go_off(self, state: SeatState) -> None:
        if not state.live:
            return
        state.live = False
        channel = self.channel_of(state)
        if self._engine.live_source(channel) == state.source_id:
            self._engine.set_live(channel, None)

    def _switch(self, outgoing: SeatState, incoming: SeatState) -> None:
        """One call between two ticks: the engine crossfades the channel from one to the other."""
        if not incoming.connected:
            raise MicRefused(Reason.NOT_CONNECTED, f"seat {incoming.seat!r} is not connected")
        channel = self.channel_of(outgoing)
        outgoing.live = False
        self._release_cough(outgoing)
        incoming.output = outgoing.output
        incoming.live = True
        self._release_cough(incoming)
        self._engine.set_live(channel, incoming.source_id)
        self._handover.pop(outgoing.booth, None)
        self._changed_routing()

    def _release_cough(self, state: SeatState) -> None:
        if state.coughing:
            state.coughing = False
            self._engine.set_muted(state.source_id, False)

    def _cancel_involving(self, state: SeatState) -> None:
        request = self._handover.get(state.booth)
        if request is None:
            return
        live = self._booth_live(state.booth)
        stale = live is None or (request.live and live.seat != request.requester)
        if request.requester == state.seat or stale:
            del self._handover[state.booth]

    def _apply_return(self, state: SeatState) -> None:
        if state.sink is None:
            return
        own = state.source_id
        gain = 10 ** (state.partner_db / 20) if state.partner_db > -60 else 0.0
        partners = {
            p.source_id: gain
            for p in self.seats_of(state.booth)
            if p is not state and p.connected and gain > 0
        }
        self._engine.set_return(
            own, ReturnSpec(partners, state.volume_db, state.bass_db, state.treble_db)
        )
        feed = Feed(self.hears(state), minus=own, personal=own)
        if self._engine.feed_of(state.sink) != feed:
            self._engine.subscribe(state.sink, feed)

    def _changed_routing(self) -> None:
        # What a seat hears depends on everyone's live state, sources and the floor language.
        for state in self._seats.values():
            self._apply_return(state)
        self._bump()

    def _bump(self) -> None:
        self._version += 1
        self._changed.set()
        self._changed = asyncio.Event()
