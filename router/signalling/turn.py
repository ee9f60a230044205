"""Time-limited TURN credentials the coturn way (use-auth-secret, the "TURN REST API").

username = "<expiry unix time>:<user>", password = base64(HMAC-SHA1(secret, username)).
coturn recomputes the password from its static-auth-secret and refuses an expired username.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from router.config import EventConfig, IceServer, TurnSettings


def turn_password(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def mint_turn_server(turn: TurnSettings, now: float | None = None) -> IceServer:
    """An ICE server entry for a browser, valid for `turn.ttl_seconds` from `now`."""
    expiry = int(time.time() if now is None else now) + turn.ttl_seconds
    username = f"{expiry}:{turn.user}"
    return IceServer(
        urls=list(turn.urls), username=username, credential=turn_password(turn.secret, username)
    )


def browser_ice_servers(config: EventConfig, now: float | None = None) -> list[IceServer]:
    """What a browser gets: the configured servers, plus TURN credentials minted now."""
    servers = list(config.ice.servers)
    if config.turn is not None:
        servers.append(mint_turn_server(config.turn, now))
    return servers
