"""Admission limits for WebRTC sessions: per kind, per client address, offers in flight.

A slot is taken before any peer connection is made and given back exactly once, when the
session ends or its negotiation fails; counters that reach zero are removed, so thousands of
clients coming and going leave nothing behind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field


class LimitReached(Exception):
    """Answered with 429 and Retry-After; the message says which limit."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class LimitSettings:
    per_kind: Mapping[str, int]  # session kind -> at most this many; absent: no own limit
    per_address: int
    pending_offers: int
    retry_after: int = 5


@dataclass(eq=False)
class Slot:
    kind: str
    address: str | None
    pending: bool = True
    released: bool = False


@dataclass
class SessionLimiter:
    settings: LimitSettings
    _kinds: Counter[str] = field(default_factory=Counter)
    _addresses: Counter[str] = field(default_factory=Counter)
    _pending: int = 0

    def acquire(self, kind: str, address: str | None) -> Slot:
        """A slot for a new session of `kind` from `address`, or LimitReached."""
        s = self.settings
        if self._pending >= s.pending_offers:
            raise LimitReached("too many offers are being negotiated; try again", s.retry_after)
        cap = s.per_kind.get(kind)
        if cap is not None and self._kinds[kind] >= cap:
            raise LimitReached(
                f"the server has reached its limit of {cap} {kind} sessions", s.retry_after
            )
        if address is not None and self._addresses[address] >= s.per_address:
            raise LimitReached(
                f"this address holds {s.per_address} sessions already", s.retry_after
            )
        self._kinds[kind] += 1
        if address is not None:
            self._addresses[address] += 1
        self._pending += 1
        return Slot(kind, address)

    def negotiated(self, slot: Slot) -> None:
        """The offer is answered: the slot no longer counts as in flight."""
        if slot.pending and not slot.released:
            slot.pending = False
            self._pending -= 1

    def release(self, slot: Slot) -> None:
        if slot.released:
            return
        self.negotiated(slot)
        slot.released = True
        _decrement(self._kinds, slot.kind)
        if slot.address is not None:
            _decrement(self._addresses, slot.address)

    def usage(self) -> dict[str, int]:
        """For tests and the technician: sessions per kind, addresses tracked, offers pending."""
        return {**self._kinds, "addresses": len(self._addresses), "pending": self._pending}


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
