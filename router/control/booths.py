"""Booths and seats: who is connected, who is live, and the interlock.

One live seat per output channel. The engine is told who is live; everything else here is
plain state that the web layer reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.config import EventConfig
from router.media.engine import Engine


class SeatNotFound(LookupError):
    pass


class MicRefused(Exception):
    """The mic cannot go on: interlock, or the seat is not connected."""


@dataclass
class SeatState:
    booth: str
    seat: str
    connected: bool = False
    live: bool = False

    @property
    def source_id(self) -> str:
        return seat_source_id(self.booth, self.seat)


def seat_source_id(booth: str, seat: str) -> str:
    return f"seat:{booth}:{seat}"


class BoothBoard:
    def __init__(self, config: EventConfig, engine: Engine) -> None:
        self._engine = engine
        self._channel = {bid: b.channel for bid, b in config.booths.items()}
        self._seats = {
            (bid, sid): SeatState(bid, sid) for bid, b in config.booths.items() for sid in b.seats
        }

    def seat(self, booth: str, seat: str) -> SeatState:
        try:
            return self._seats[(booth, seat)]
        except KeyError:
            raise SeatNotFound(f"no seat {seat!r} in booth {booth!r}") from None

    def has_booth(self, booth: str) -> bool:
        return booth in self._channel

    def output_channel(self, booth: str) -> str:
        return self._channel[booth]

    def live_seat(self, channel: str) -> SeatState | None:
        for state in self._seats.values():
            if state.live and self._channel[state.booth] == channel:
                return state
        return None

    def set_connected(self, booth: str, seat: str, connected: bool) -> None:
        state = self.seat(booth, seat)
        state.connected = connected
        if not connected and state.live:
            # A lost seat goes off air; it comes back only when the interpreter says so.
            self._go_off(state)

    def set_mic(self, booth: str, seat: str, on: bool) -> SeatState:
        state = self.seat(booth, seat)
        if not on:
            if state.live:
                self._go_off(state)
            return state
        if state.live:
            return state
        if not state.connected:
            raise MicRefused(f"seat {seat!r} is not connected: publish audio first")
        channel = self._channel[booth]
        holder = self.live_seat(channel)
        if holder is not None:
            raise MicRefused(
                f"interlock: seat {holder.seat!r} of booth {holder.booth!r} is live on {channel!r}"
            )
        state.live = True
        self._engine.set_live(channel, state.source_id)
        return state

    def _go_off(self, state: SeatState) -> None:
        state.live = False
        channel = self._channel[state.booth]
        if self._engine.live_source(channel) == state.source_id:
            self._engine.set_live(channel, None)

    def snapshot(self) -> list[dict[str, object]]:
        return [
            {
                "booth": s.booth,
                "seat": s.seat,
                "channel": self._channel[s.booth],
                "connected": s.connected,
                "live": s.live,
            }
            for s in self._seats.values()
        ]
