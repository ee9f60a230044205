"""Churn and soak: listeners join, switch channels and leave; nothing may stay behind.

Two phases against a router in this process (so that its tasks, peer connections and
sessions can be counted directly), on loopback only:

1. churn: `--cycles` listener sessions, `--concurrency` at a time; each connects, hears audio,
   switches channel once, hears audio again, and leaves (DELETE, then closes its peer);
2. soak: `--listeners` listeners connected for `--minutes`, each switching to a random channel
   every `--switch-every` seconds, while a floor and a live interpreter publish.

Leftovers (tasks, peer connections, sessions, engine consumers, limiter slots) are counted
after each phase and RSS is sampled. It stops by itself; the exit code is 1 when anything was
left behind or a listener stopped hearing audio.

    unshare -n sh -c 'ip link set lo up && python bench/soak.py'                     # 1000 + 10 min
    unshare -n sh -c 'ip link set lo up && python bench/soak.py --cycles 100 --minutes 1'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import uvicorn
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.clients import ToneTrack, loopback_only, new_pc, whip_publish  # noqa: E402
from router.app import create_app  # noqa: E402
from router.config import load_config  # noqa: E402
from router.media.jitter import install_audio_jitter_buffer  # noqa: E402

CHANNELS = ("floor", "en", "fr", "ne", "es")
FR_TOKEN = "booth-fr-demo-token"


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def task_names() -> list[str]:
    """What runs now, by coroutine name, for the message of a failed leftover check."""
    return sorted(getattr(t.get_coro(), "__qualname__", t.get_name()) for t in asyncio.all_tasks())


@dataclass
class Snapshot:
    """What the process holds now; `settle` waits until closing peers have finished."""

    tasks: int
    peer_connections: int
    sessions: int
    consumers: int
    limiter: dict[str, int]
    rss_mb: float
    descriptors: int  # open file descriptors (every listener's sockets, and the C streams' dups)


def snapshot(app: FastAPI, count_peers: bool = True) -> Snapshot:
    """Counting peer connections walks the heap (it blocks the loop for a moment)."""
    if count_peers:
        gc.collect()
    rt = app.state.runtime
    return Snapshot(
        tasks=len(asyncio.all_tasks()),
        peer_connections=sum(isinstance(o, RTCPeerConnection) for o in gc.get_objects())
        if count_peers
        else -1,
        sessions=len(rt.peers.sessions()),
        consumers=sum(rt.engine.consumers(c) for c in rt.config.channels),
        limiter={k: v for k, v in rt.peers.limiter.usage().items() if v},
        rss_mb=round(rss_mb(), 1),
        descriptors=len(os.listdir("/proc/self/fd")),
    )


def same_as(now: Snapshot, baseline: Snapshot) -> bool:
    """Nothing more held than at the baseline (and the same sessions and slots)."""
    return (
        now.tasks <= baseline.tasks
        and now.peer_connections <= baseline.peer_connections
        and now.sessions == baseline.sessions
        and now.consumers == baseline.consumers
        and now.limiter == baseline.limiter
    )


async def settle(app: FastAPI, baseline: Snapshot, timeout: float = 20.0) -> Snapshot:
    """The first full snapshot back at the baseline's counts, or the last one after `timeout`.

    Task counts move for a moment on their own (a peer's RTCP or consent timer, a keep-alive
    connection closing), so one full snapshot above the baseline is taken again, not trusted.
    """
    deadline = time.monotonic() + timeout
    while True:
        cheap = snapshot(app, count_peers=False)
        back = cheap.tasks <= baseline.tasks and cheap.sessions <= baseline.sessions
        expired = time.monotonic() > deadline
        if (back and cheap.limiter == baseline.limiter) or expired:
            await asyncio.sleep(1.0)  # peers closing finish their last callbacks
            full = snapshot(app)
            if same_as(full, baseline) or expired:
                return full
        await asyncio.sleep(0.5)


# --- listeners -------------------------------------------------------------------------------


@dataclass(eq=False)
class Listener:
    pc: RTCPeerConnection
    location: str = ""
    frames: int = 0
    last_frame: float = field(default_factory=time.monotonic)
    task: asyncio.Future[None] | None = None

    def start(self, track: MediaStreamTrack) -> None:
        self.task = asyncio.ensure_future(self._count(track))

    async def _count(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames += 1
                self.last_frame = time.monotonic()

    async def heard(self, frames: int, timeout: float = 20.0) -> None:
        wanted = self.frames + frames
        deadline = time.monotonic() + timeout
        while self.frames < wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.location}: no audio for {timeout} s")
            await asyncio.sleep(0.02)

    async def switch(self, http: httpx.AsyncClient, channel: str) -> None:
        r = await http.post(f"{self.location}/channel", json={"channel": channel})
        r.raise_for_status()

    async def leave(self, http: httpx.AsyncClient) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await http.delete(self.location)
        await self.pc.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def join(http: httpx.AsyncClient, channel: str) -> Listener:
    pc = new_pc()
    listener = Listener(pc)
    pc.addTransceiver("audio", direction="recvonly")
    pc.on("track", listener.start)
    await pc.setLocalDescription(await pc.createOffer())
    r = await http.post(
        f"/whep/{channel}",
        content=pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp"},
    )
    if r.status_code != 201:
        await pc.close()
        raise RuntimeError(f"POST /whep/{channel}: {r.status_code} {r.text}")
    listener.location = r.headers["location"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
    return listener


async def churn(http: httpx.AsyncClient, cycles: int, concurrency: int, seed: int = 1) -> list[str]:
    """`cycles` listeners join, hear, switch, hear and leave; returns what went wrong."""
    rnd = random.Random(seed)
    gate = asyncio.Semaphore(concurrency)
    failures: list[str] = []

    async def cycle() -> None:
        async with gate:
            try:
                listener = await join(http, rnd.choice(CHANNELS))
            except Exception as exc:
                failures.append(f"join: {exc!r}")
                return
            try:
                await listener.heard(3)
                await listener.switch(http, rnd.choice(CHANNELS))
                await listener.heard(2)
            except Exception as exc:
                failures.append(f"{listener.location}: {exc!r}")
            finally:
                await listener.leave(http)

    await asyncio.gather(*[cycle() for _ in range(cycles)])
    return failures


@dataclass
class SoakResult:
    seconds: float
    switches: int = 0
    stalls: int = 0  # a listener without a frame for 2 s
    failures: list[str] = field(default_factory=list)  # refused switches (session gone)
    samples: list[dict[str, float]] = field(default_factory=list)


async def soak(
    app: FastAPI,
    http: httpx.AsyncClient,
    listeners: int,
    seconds: float,
    switch_every: float,
    seed: int = 2,
) -> SoakResult:
    rnd = random.Random(seed)
    result = SoakResult(seconds=seconds)
    crowd = [await join(http, rnd.choice(CHANNELS)) for _ in range(listeners)]
    try:
        await asyncio.gather(*[p.heard(3) for p in crowd])
        started = time.monotonic()
        next_sample = started
        due = {id(p): started + rnd.uniform(0, switch_every) for p in crowd}
        while (now := time.monotonic()) - started < seconds:
            for p in crowd:
                if now >= due[id(p)]:
                    due[id(p)] = now + switch_every * rnd.uniform(0.5, 1.5)
                    try:
                        await p.switch(http, rnd.choice(CHANNELS))
                        result.switches += 1
                    except httpx.HTTPError as exc:
                        result.failures.append(f"{time.monotonic() - started:.1f} s: {exc}")
                if now - p.last_frame > 2.0:
                    result.stalls += 1
                    p.last_frame = now  # count each stall once
            if now >= next_sample:
                result.samples.append(
                    {
                        "t": round(now - started, 1),
                        "rss_mb": round(rss_mb(), 1),
                        "tasks": len(asyncio.all_tasks()),
                        "sessions": len(app.state.runtime.peers.sessions()),
                    }
                )
                next_sample += 10.0
            await asyncio.sleep(0.1)
    finally:
        for p in crowd:
            await p.leave(http)
    return result


# --- the run ---------------------------------------------------------------------------------


async def start_router(config: Path) -> tuple[FastAPI, uvicorn.Server, asyncio.Task[None], str]:
    app = create_app(load_config(config), ice_hosts=["127.0.0.1"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return app, server, task, f"http://127.0.0.1:{port}"


async def run(args: argparse.Namespace) -> dict:
    install_audio_jitter_buffer()
    loopback_only()
    app, server, task, url = await start_router(args.config)
    report: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "ok": False}
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            await phases(app, http, args, report)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
    return report


async def phases(
    app: FastAPI, http: httpx.AsyncClient, args: argparse.Namespace, report: dict
) -> None:
    floor = await whip_publish(http, "/whip/floor", "floor-demo-token", ToneTrack(440))
    seat = await whip_publish(http, "/whip/booth/fr/fr1", FR_TOKEN, ToneTrack(660))
    auth = {"Authorization": f"Bearer {FR_TOKEN}"}
    for _ in range(200):  # until the seat's audio has arrived
        r = await http.post("/api/booths/fr/seats/fr1/mic", json={"on": True}, headers=auth)
        if r.status_code == 200:
            break
        await asyncio.sleep(0.05)
    # Warm up (first-use allocations, caches) before the baseline is taken.
    failures = await churn(http, args.warmup, args.concurrency, seed=0)
    baseline = await settle(app, snapshot(app), timeout=5)
    report["baseline"] = asdict(baseline)

    t0 = time.monotonic()
    done, rss_every_100 = 0, []
    while done < args.cycles:
        chunk = min(100, args.cycles - done)
        failures += await churn(http, chunk, args.concurrency, seed=done)
        done += chunk
        rss_every_100.append(round(rss_mb(), 1))
        print(f"churn: {done} cycles, RSS {rss_every_100[-1]} MB", flush=True)
    after_churn = await settle(app, baseline)
    report["churn"] = {
        "cycles": done,
        "failures": failures,
        "seconds": round(time.monotonic() - t0, 1),
        "rss_mb_every_100_cycles": rss_every_100,
        "after": asdict(after_churn),
        "rss_growth_mb": round(after_churn.rss_mb - baseline.rss_mb, 1),
    }
    print(json.dumps({"churn": report["churn"]}), flush=True)

    result = await soak(app, http, args.listeners, args.minutes * 60, args.switch_every)
    after_soak = await settle(app, baseline)
    health = (await http.get("/api/health")).json()
    report["soak"] = {
        **asdict(result),
        "after": asdict(after_soak),
        "rss_growth_mb": round(after_soak.rss_mb - baseline.rss_mb, 1),
        "engine": health,
    }
    publishers_alive = [c.pc.connectionState for c in (floor, seat)]
    report["publishers"] = publishers_alive
    report["sessions_timed_out"] = app.state.runtime.peers.timed_out
    for client in (floor, seat):
        await client.close(http)
    leftovers = [
        phase
        for phase, after in (("churn", after_churn), ("soak", after_soak))
        if not same_as(after, baseline)
    ]
    report["leftovers"] = leftovers
    for part in (report["churn"], report["soak"]):  # a count, and the first few in full
        part["failure_count"] = len(part["failures"])
        part["failures"] = part["failures"][:10]
    report["ok"] = (
        not leftovers
        and not failures
        and not result.failures
        and result.stalls == 0
        and publishers_alive == ["connected", "connected"]
        and health["engine_errors"] == 0
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "event.toml")
    parser.add_argument("--cycles", type=int, default=1000, help="listener join/leave cycles")
    parser.add_argument("--concurrency", type=int, default=10, help="cycles at a time")
    parser.add_argument("--warmup", type=int, default=50, help="cycles before the baseline")
    parser.add_argument("--listeners", type=int, default=20, help="listeners during the soak")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak")
    parser.add_argument("--switch-every", type=float, default=5.0, help="seconds, on average")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--allow-interfaces", action="store_true")
    args = parser.parse_args()
    # Sessions the router closes by itself (connection failed, vanished) are logged as warnings.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    others = [name for _, name in socket.if_nameindex() if name != "lo"]
    if others and not args.allow_interfaces:
        print(
            f"soak: interfaces other than lo exist ({', '.join(others)}); run inside "
            "`unshare -n sh -c 'ip link set lo up && python bench/soak.py'`",
            file=sys.stderr,
        )
        return 2
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
