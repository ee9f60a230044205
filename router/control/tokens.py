"""Roles and bearer tokens: who may publish, interpret, control or listen."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

from router.config import EventConfig


class Role(StrEnum):
    FLOOR = "floor"
    PANELLIST = "panellist"
    BOOTH = "booth"
    TECHNICIAN = "technician"
    LISTENER = "listener"


@dataclass(frozen=True)
class Principal:
    role: Role
    booth: str | None = None  # for Role.BOOTH


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenBook:
    """Maps tokens to principals; compares digests in constant time and never stops early."""

    def __init__(self, config: EventConfig) -> None:
        entries = [
            (config.tokens.floor, Principal(Role.FLOOR)),
            (config.tokens.panellist, Principal(Role.PANELLIST)),
            (config.tokens.technician, Principal(Role.TECHNICIAN)),
        ]
        entries += [(b.token, Principal(Role.BOOTH, booth=bid)) for bid, b in config.booths.items()]
        if config.tokens.listener:
            entries.append((config.tokens.listener, Principal(Role.LISTENER)))
        self._entries = [(_digest(tok), who) for tok, who in entries]
        self.listener_token_required = config.tokens.listener is not None

    def identify(self, token: str | None) -> Principal | None:
        if not token:
            return None
        probe = _digest(token)
        found: Principal | None = None
        for digest, who in self._entries:
            if hmac.compare_digest(probe, digest):
                found = who
        return found
