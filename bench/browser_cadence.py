"""What a listener sends the router besides asking for media: RTCP reports and STUN
connectivity checks per second, for real headless Chromium and for the aiortc listeners the
load generator uses in its place (bench/load.py), measured side by side at the router.

Each packet costs the router CPU outside the tick (unprotect, parse, dispatch; or a STUN
message integrity check and answer), so the load generator must send what a browser sends.

    unshare -n sh -c 'ip link set lo up && python bench/browser_cadence.py --seconds 60'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx
from aioice import ice
from aiortc import rtcdtlstransport

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.clients import Client, loopback_only, whep_listen  # noqa: E402
from bench.load import browser_like_cadence  # noqa: E402
from router.app import create_app  # noqa: E402
from router.config import load_config  # noqa: E402
from router.signalling.rtcp_cadence import set_report_interval  # noqa: E402
from tests.browser import chromium  # noqa: E402
from tests.conftest import DEFAULT_EVENT, start_server  # noqa: E402
from tests.webrtc_clients import publish  # noqa: E402


class Counter:
    """RTCP packets and STUN requests the router receives, per router-side connection."""

    def __init__(self) -> None:
        self.rtcp: dict[int, list[float]] = defaultdict(list)
        self.stun: dict[int, list[float]] = defaultdict(list)
        rtcp_handler = rtcdtlstransport.RTCDtlsTransport._handle_rtcp_data
        stun_handler = ice.Connection.request_received

        async def handle_rtcp(transport: object, data: bytes) -> None:
            self.rtcp[id(transport)].append(time.monotonic())
            await rtcp_handler(transport, data)  # type: ignore[arg-type]

        def handle_stun(connection: object, *args: object) -> None:
            self.stun[id(connection)].append(time.monotonic())
            stun_handler(connection, *args)  # type: ignore[arg-type]

        rtcdtlstransport.RTCDtlsTransport._handle_rtcp_data = handle_rtcp  # type: ignore[method-assign]
        ice.Connection.request_received = handle_stun  # type: ignore[method-assign]


def aiortc_cadence(configured: float) -> Callable[[], Callable[[], None]]:
    """aiortc's own report interval, for a while: the router's lifespan set `configured` for
    the whole process."""

    def use() -> Callable[[], None]:
        set_report_interval(None)
        return lambda: set_report_interval(configured)

    return use


def router_side(app: object, before: set[int]) -> list[tuple[int, int]]:
    """(DTLS transport id, ICE connection id) of the router's listener sessions since `before`."""
    out = []
    for session in app.state.runtime.peers.sessions():  # type: ignore[attr-defined]
        for t in session.pc.getTransceivers():
            dtls = t.sender.transport
            key = (id(dtls), id(dtls.transport._connection))
            if key[0] not in before and key not in out:  # bundled transceivers share one
                out.append(key)
    return out


def rates(counter: Counter, keys: list[tuple[int, int]], t0: float, t1: float) -> dict:
    span = t1 - t0

    def per_connection(times: dict[int, list[float]], key: int) -> list[float]:
        return [t for t in times.get(key, []) if t0 <= t < t1]

    rtcp = [per_connection(counter.rtcp, d) for d, _ in keys]
    stun = [per_connection(counter.stun, c) for _, c in keys]
    return {
        "connections": len(keys),
        "seconds": round(span, 1),
        "rtcp_per_s": round(statistics.mean(len(x) for x in rtcp) / span, 3),
        "stun_requests_per_s": round(statistics.mean(len(x) for x in stun) / span, 3),
    }


async def run(args: argparse.Namespace) -> dict:
    loopback_only()
    counter = Counter()
    config = load_config(DEFAULT_EVENT)
    app = create_app(config, ice_hosts=["127.0.0.1"])
    server, task, url = await start_server(app)
    report: dict = {"command": " ".join(["python", *sys.argv])}
    try:
        async with httpx.AsyncClient(base_url=url, timeout=20) as http:
            floor = await publish(http, "/whip/floor", "floor-demo-token", 440)
            try:
                # aiortc listeners as bench/load.py runs them, then as aiortc runs by default
                for name, cadence in (
                    ("aiortc, as the load generator", browser_like_cadence),
                    ("aiortc", aiortc_cadence(config.audio.rtcp_report_interval)),
                ):
                    restore = cadence()
                    before = {d for d, _ in router_side(app, set())}
                    clients: list[Client] = [
                        await whep_listen(http, "floor") for _ in range(args.listeners)
                    ]
                    await asyncio.sleep(2)
                    t0 = time.monotonic()
                    await asyncio.sleep(args.seconds)
                    report[name] = rates(counter, router_side(app, before), t0, time.monotonic())
                    for c in clients:
                        await c.close(http)
                    restore()
                before = {d for d, _ in router_side(app, set())}
                async with chromium() as browser:
                    pages = []
                    for _ in range(args.listeners):
                        page = await browser.new_page()
                        await page.goto(f"{url}/?lang=floor")
                        await page.get_by_role("button", name="Start listening").click()
                        await page.wait_for_function("window.listener.state === 'live'")
                        pages.append(page)
                    await asyncio.sleep(2)
                    t0 = time.monotonic()
                    await asyncio.sleep(args.seconds)
                    report["Chromium"] = rates(
                        counter, router_side(app, before), t0, time.monotonic()
                    )
                    report["Chromium version"] = browser.version
            finally:
                await floor.close()
    finally:
        server.should_exit = True
        await task
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="measured per kind of listener")
    p.add_argument("--listeners", type=int, default=2, help="listeners of each kind")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    report = asyncio.run(run(args))
    print(f"command: {report['command']}  ({report.get('Chromium version', '?')})")
    print(f"{'listener':<32}{'conns':>6}{'s':>6}{'RTCP/s':>9}{'STUN req/s':>12}")
    for name in ("Chromium", "aiortc", "aiortc, as the load generator"):
        r = report.get(name)
        if r:
            print(
                f"{name:<32}{r['connections']:>6}{r['seconds']:>6.0f}"
                f"{r['rtcp_per_s']:>9.3f}{r['stun_requests_per_s']:>12.3f}"
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
