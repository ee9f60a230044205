"""ICE settings: which servers browsers and peers use, and which host addresses we offer."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

from router.config import IceServer


def rtc_configuration(servers: Sequence[IceServer]) -> RTCConfiguration:
    # Always explicit: with iceServers unset, aiortc would ask a public STUN server.
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in servers
        ]
    )


def default_host_addresses(bind_host: str, configured: Sequence[str]) -> list[str]:
    """Configured addresses win; a server bound to loopback offers loopback candidates."""
    if configured:
        return list(configured)
    try:
        if ipaddress.ip_address(bind_host).is_loopback:
            return [bind_host]
    except ValueError:
        if bind_host == "localhost":
            return ["127.0.0.1"]
    return []


def restrict_host_candidates(addresses: Sequence[str]) -> Callable[[], None]:
    """Make aioice gather host candidates only on `addresses` (it skips loopback by itself).

    aioice has no option for this, so its module function is replaced; the returned callable
    puts the original back.
    """
    original = aioice.ice.get_host_addresses
    chosen = list(addresses)

    def only_these(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = only_these

    def restore() -> None:
        aioice.ice.get_host_addresses = original

    return restore
