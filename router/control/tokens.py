"""Roles and bearer tokens: who may publish, interpret, control or listen."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

from router.config import EventConfig, secret_digest


class Role(StrEnum):
    FLOOR = "floor"
    PANELLIST = "panellist"
    BOOTH = "booth"  # an interpreter of one booth (Principal.booth says which)
    TECHNICIAN = "technician"
    LISTENER = "listener"


@dataclass(frozen=True)
class Principal:
    role: Role
    booth: str | None = None  # for Role.BOOTH


def hash_token(token: str) -> str:
    """The form to write in the event file instead of the token itself."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenBook:
    """Maps tokens to principals.

    Only SHA-256 digests are kept (the file may hold the digests alone). A presented token is
    hashed and compared with every entry by `hmac.compare_digest`, without stopping at a match,
    so the time taken says nothing about which token, or how much of one, was right.
    """

    def __init__(self, config: EventConfig) -> None:
        entries = [
            (config.tokens.floor, Principal(Role.FLOOR)),
            (config.tokens.panellist, Principal(Role.PANELLIST)),
            (config.tokens.technician, Principal(Role.TECHNICIAN)),
        ]
        entries += [(b.token, Principal(Role.BOOTH, booth=bid)) for bid, b in config.booths.items()]
        if config.tokens.listener:
            entries.append((config.tokens.listener, Principal(Role.LISTENER)))
        self._entries = [(secret_digest(tok), who) for tok, who in entries]
        self.listener_token_required = config.tokens.listener is not None

    def identify(self, token: str | None) -> Principal | None:
        if not token:
            return None
        probe = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        for digest, who in self._entries:
            if hmac.compare_digest(probe, digest):
                found = who
        return found
