"""Load generator process: N WHEP listeners with decoding disabled, driven over stdin/stdout.

    python -m bench.load --url http://127.0.0.1:PORT --channel floor --listeners 50

Every listener is a real aiortc peer (ICE, DTLS, SRTP, RTCP, jitter buffer), but its
receiver hands frames to a decoder that returns nothing, so no Opus is decoded here; the
remote track is still consumed. Protocol, one JSON object per line on stdout:
`{"event": "ready", ...}` once every listener has received packets; then for each stdin line
`count` a `{"event": "count", "packets": total, ...}`; `quit` closes every session (WHEP
DELETE) and answers `{"event": "bye"}`. Any failure prints `{"event": "error", ...}` and
exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable

import httpx
from aioice import ice

from bench.clients import Client, disable_decoding, loopback_only, packets_received, whep_listen
from router.signalling.rtcp_cadence import set_report_interval

# What headless Chromium sends the router per listener, measured by bench/browser_cadence.py
# (docs/PERFORMANCE.md); the load listeners stand in for browsers, so they send the same.
BROWSER_REPORT_INTERVAL = 2.5  # s between RTCP packets, on average
BROWSER_CHECK_INTERVAL = 2.7  # s between STUN connectivity checks, on average


def browser_like_cadence() -> Callable[[], None]:
    """aiortc peers in this process report and check like Chromium; returns the undo."""
    consent = ice.CONSENT_INTERVAL
    set_report_interval(BROWSER_REPORT_INTERVAL)
    ice.CONSENT_INTERVAL = BROWSER_CHECK_INTERVAL  # aioice's only knob for its check loop

    def restore() -> None:
        set_report_interval(None)
        ice.CONSENT_INTERVAL = consent

    return restore


def say(**message: object) -> None:
    print(json.dumps(message), flush=True)


async def connect_all(http: httpx.AsyncClient, channel: str, n: int, concurrency: int) -> list:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> Client:
        async with gate:
            return await whep_listen(http, channel)

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def counts(clients: list[Client]) -> list[int]:
    return [await packets_received(c.pc) for c in clients]


async def main_async(args: argparse.Namespace) -> int:
    loopback_only()
    disable_decoding()
    browser_like_cadence()
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=args.url, timeout=30, trust_env=False) as http:
        started = time.monotonic()
        clients = await connect_all(http, args.channel, args.listeners, args.concurrency)
        connected = time.monotonic() - started
        deadline = time.monotonic() + args.ready_timeout
        while min(await counts(clients)) == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("some listeners received no packets")
            await asyncio.sleep(0.1)
        say(event="ready", listeners=len(clients), connect_seconds=round(connected, 3))
        try:
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                command = line.strip()
                if command == "count":
                    per = await counts(clients)
                    say(event="count", t=time.monotonic(), packets=sum(per), min=min(per))
                elif command in ("quit", ""):  # "" is end of input: the parent went away
                    break
                else:
                    raise ValueError(f"unknown command {command!r}")
        finally:
            await asyncio.gather(*(c.close(http) for c in clients), return_exceptions=True)
    say(event="bye")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--channel", default="floor")
    parser.add_argument("--listeners", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=8, help="connections set up at once")
    parser.add_argument("--ready-timeout", type=float, default=30.0)
    args = parser.parse_args()
    if not args.url.startswith(("http://127.0.0.1:", "http://localhost:")):
        parser.error("the load generator talks to loopback only")
    try:
        return asyncio.run(main_async(args))
    except Exception as exc:
        say(event="error", error=f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
