"""Router benchmarks: server CPU per listener, added latency, channel switch time.

Run inside a private network namespace that has only loopback, e.g.

    unshare -n sh -c 'ip link set lo up && python bench/run.py'
    unshare -n sh -c 'ip link set lo up && python bench/run.py --quick'

What it does (docs/PERFORMANCE.md has the numbers and what they mean):

1. Starts the router (`python -m router serve ... --ice-host 127.0.0.1`) as a subprocess.
2. Publishes the floor (440 Hz) and the live FR seat (660 Hz) from this process, and checks
   with a probe listener that the FR channel carries both.
3. CPU: for each listener count N (0 = publishers only), starts N WHEP listeners in separate
   load-generator processes (`bench/load.py`: real aiortc peers, Opus decoding disabled) and
   reads the server process's utime+stime from /proc over fixed windows.
4. Switch: one listener toggles fr <-> es (es carries the floor); times the request to the
   RTP packet carrying the first audio of the new channel and to its decoded frame.
   Join: new listeners one at a time, POST -> first RTP packet and first decoded FR audio.
5. Latency: the same tone bursts leave a floor publisher to the router (heard by a WHEP
   listener) and a direct aiortc peer-to-peer call, at the same instant; times the onset at
   both listeners. Then again right after one lost packet on both senders.

Timings are printed, never asserted; a failure of the machinery exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/run.py` puts only bench/ on the path
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench.clients import (  # noqa: E402
    RATE,
    BurstSchedule,
    Client,
    ScheduledTrack,
    ToneTrack,
    drop_next_rtp,
    loopback_only,
    onset_offset,
    p2p_pair,
    percentile,
    tone_amplitude,
    whep_listen,
    whip_publish,
)
from router.media.direct_rtp import COMPILED  # noqa: E402
from router.media.jitter import install_audio_jitter_buffer  # noqa: E402

FLOOR_HZ, FR_HZ = 440.0, 660.0
FLOOR_TOKEN = "floor-demo-token"
TECH_TOKEN = "technician-demo-token"
FR_TOKEN = "booth-fr-demo-token"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The machinery failed (not a slow result): exit non-zero."""


# --- the server process ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) in seconds of a whole process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


class ServerProcess:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="router-bench-", suffix=".log")
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, http: httpx.AsyncClient, timeout: float = 30.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "router", "serve",
            "--config", str(self.config),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--ice-host", "127.0.0.1",
            "--log-level", "warning",
            cwd=ROOT, stdout=self.log, stderr=self.log, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.returncode is not None:
                raise BenchError(f"the server exited with {self.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/api/health")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise BenchError("the server did not answer /api/health")
            await asyncio.sleep(0.1)

    def cpu_seconds(self) -> float:
        return sum(cpu_times(self.pid))

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        self.log.flush()
        text = Path(self.log.name).read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


async def health(http: httpx.AsyncClient) -> dict:
    resp = await http.get("/api/health")
    if resp.status_code != 200:
        raise BenchError(f"/api/health: {resp.status_code}")
    return resp.json()


async def wait_listeners(http: httpx.AsyncClient, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (h := await health(http))["listeners"] != count:
        if time.monotonic() > deadline:
            raise BenchError(f"the server still has {h['listeners']} listeners, not {count}")
        await asyncio.sleep(0.1)


# --- load-generator processes ----------------------------------------------------------------


class LoadProcess:
    def __init__(self, url: str, channel: str, listeners: int) -> None:
        self.url, self.channel, self.listeners = url, channel, listeners
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.load",
            "--url", self.url, "--channel", self.channel, "--listeners", str(self.listeners),
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip

    async def read(self, timeout: float) -> dict:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise BenchError("a load generator did not answer in time") from None
        if not line:
            raise BenchError(f"a load generator exited ({await self.proc.wait()})")
        message = json.loads(line)
        if message.get("event") == "error":
            raise BenchError(f"load generator: {message['error']}")
        return message

    async def command(self, word: str, timeout: float = 20.0) -> dict:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"{word}\n".encode())
        await self.proc.stdin.drain()
        return await self.read(timeout)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return sum(cpu_times(self.proc.pid))

    async def quit(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            reply = await self.command("quit", timeout=30)
            if reply.get("event") != "bye":
                raise BenchError(f"load generator: unexpected {reply}")
            if await asyncio.wait_for(self.proc.wait(), 20) != 0:
                raise BenchError(f"a load generator exited with {self.proc.returncode}")
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


def split(n: int, parts: int) -> list[int]:
    parts = max(1, min(parts, n))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


async def start_load(url: str, channel: str, n: int, procs: int) -> list[LoadProcess]:
    loads = [LoadProcess(url, channel, k) for k in split(n, procs)]
    try:
        for load in loads:
            await load.start()
        for load in loads:
            ready = await load.read(timeout=60 + 2 * load.listeners)
            if ready.get("event") != "ready":
                raise BenchError(f"load generator: unexpected {ready}")
    except BaseException:
        await stop_load(loads)
        raise
    return loads


async def stop_load(loads: list[LoadProcess]) -> None:
    errors = []
    for load in loads:
        try:
            await load.quit()
        except BenchError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


# --- 1. publishers ---------------------------------------------------------------------------


async def set_mic(http: httpx.AsyncClient, on: bool) -> None:
    for _ in range(50):
        resp = await http.post(
            "/api/booths/fr/seats/fr1/mic",
            json={"on": on},
            headers={"Authorization": f"Bearer {FR_TOKEN}"},
        )
        if resp.status_code == 200:
            return
        if resp.status_code != 409:  # 409: the seat's audio has not arrived yet
            break
        await asyncio.sleep(0.1)
    raise BenchError(f"mic on: {resp.status_code} {resp.text}")


def is_tone(pcm: np.ndarray, want: float, other: float, minimum: float = 0.1) -> bool:
    a = tone_amplitude(pcm, want)
    return a > minimum and a > tone_amplitude(pcm, other)


async def probe_fr(http: httpx.AsyncClient) -> dict:
    """The FR channel must carry the seat (660 Hz) with the floor (440 Hz) underneath."""
    probe = await whep_listen(http, "fr", record=True)
    assert probe.frames is not None
    try:
        frame = await probe.frames.wait_for(lambda f: is_tone(f.pcm, FR_HZ, FLOOR_HZ), 15)
        start = probe.frames.frames.index(frame) + 5
        await probe.frames.wait_count(start + 25, 5)
        pcm = np.concatenate([f.pcm for f in probe.frames.frames[start:]])
        fr, floor = tone_amplitude(pcm, FR_HZ), tone_amplitude(pcm, FLOOR_HZ)
    except TimeoutError:
        raise BenchError("the FR channel does not carry the FR seat") from None
    finally:
        await probe.close(http)
    if not (fr > 0.1 and 0.005 < floor < fr):
        raise BenchError(f"FR channel: 660 Hz at {fr:.3f}, 440 Hz at {floor:.3f}")
    return {"fr_660_amplitude": round(fr, 4), "floor_bed_440_amplitude": round(floor, 4)}


# --- 3. CPU ----------------------------------------------------------------------------------


@dataclass
class CpuWindow:
    listeners: int
    label: str
    seconds: float
    cpu: float
    sys: float  # the part of `cpu` spent in the kernel
    load_cpu: float  # CPU of the load-generator processes over the same window
    packets: int
    packet_rate: float  # packets per second received by all listeners together
    min_listener_packets: int
    ticks: int
    late_ticks: int
    tick_cpu: float  # the part of `cpu` spent inside engine ticks (mix, encode, direct sends)
    rss_mb: float
    threads: int


async def cpu_windows(
    server: ServerProcess,
    http: httpx.AsyncClient,
    loads: list[LoadProcess],
    n: int,
    label: str,
    window: float,
    repeats: int,
) -> list[CpuWindow]:
    out = []
    for _ in range(repeats):
        before = [await load.command("count") for load in loads]
        h0 = await health(http)
        l0 = sum(load.cpu_seconds() for load in loads)
        t0, (u0, s0) = time.monotonic(), cpu_times(server.pid)
        await asyncio.sleep(window)  # one fixed window, not a pacing loop
        t1, (u1, s1) = time.monotonic(), cpu_times(server.pid)
        l1 = sum(load.cpu_seconds() for load in loads)
        h1 = await health(http)
        after = [await load.command("count") for load in loads]
        pairs = list(zip(after, before, strict=True))
        packets = sum(a["packets"] - b["packets"] for a, b in pairs)
        # Each load process counts over its own interval (its `count` answers take a while).
        packet_rate = sum((a["packets"] - b["packets"]) / (a["t"] - b["t"]) for a, b in pairs)
        if n and packets <= 0:
            raise BenchError(f"{n} listeners received no packets in {window} s")
        if h1["listeners"] != n:
            raise BenchError(f"the server has {h1['listeners']} listeners, expected {n}")
        out.append(
            CpuWindow(
                listeners=n,
                label=label,
                seconds=t1 - t0,
                cpu=(u1 + s1) - (u0 + s0),
                sys=s1 - s0,
                load_cpu=l1 - l0,
                packets=packets,
                packet_rate=packet_rate,
                min_listener_packets=min((a["min"] for a in after), default=0),
                ticks=h1["ticks"] - h0["ticks"],
                late_ticks=h1["late_ticks"] - h0["late_ticks"],
                tick_cpu=h1["tick_cpu_seconds"] - h0["tick_cpu_seconds"],
                rss_mb=server.rss_mb(),
                threads=server.threads(),
            )
        )
    return out


async def profile_server(pid: int, seconds: float) -> dict | None:
    """Sample the server with py-spy (if installed); self and inclusive time per function."""
    spy = shutil.which("py-spy")
    if spy is None:
        print("(py-spy not installed: no profile)", file=sys.stderr)
        return None
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        proc = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
            "--rate", "200", "--nonblocking", "--format", "raw", "--output", out.name,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        if proc.returncode != 0:
            print(f"(py-spy failed: {err.decode(errors='replace').strip()})", file=sys.stderr)
            return None
        with open(out.name) as f:  # noqa: ASYNC230 (a small local file, once)
            lines = f.read().splitlines()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_file: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        k = int(count)
        total += k
        frames = [_frame_name(f) for f in stack.split(";")[1:]]  # [0] is the thread
        if not frames:
            continue
        own[frames[-1]] += k
        by_file[frames[-1].split(" ")[-1].split(":")[0]] += k
        for name in set(frames):
            inclusive[name] += k
    return {
        "samples": total,
        "self": [(n, c / total) for n, c in own.most_common(20)],
        "self_by_file": [(n, c / total) for n, c in by_file.most_common(12)],
        "inclusive": [(n, c / total) for n, c in inclusive.most_common(30)],
    }


def _frame_name(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (package/file.py)"
    func, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    for anchor in ("site-packages", "lib"):
        if anchor in parts:
            parts = parts[len(parts) - 1 - parts[::-1].index(anchor) + 1 :]
            break
    else:
        parts = parts[-2:]
    return f"{func} ({'/'.join(parts)})"


# --- 4. switch -------------------------------------------------------------------------------


async def measure_switch(http: httpx.AsyncClient, reps: int) -> list[dict]:
    listener = await whep_listen(http, "fr", record=True)
    frames, packets = listener.frames, listener.packets
    assert frames is not None and packets is not None
    tones = {"fr": (FR_HZ, FLOOR_HZ), "es": (FLOOR_HZ, FR_HZ)}  # es has no seat: the floor
    results = []
    try:
        await frames.wait_for(lambda f: is_tone(f.pcm, *tones["fr"]), 15)
        channel = "fr"
        for _ in range(reps):
            # Random phase against the 20 ms engine tick.
            await asyncio.sleep(0.35 + random.uniform(0, 0.04))
            target = "es" if channel == "fr" else "fr"
            want, other = tones[target]
            mark = len(frames.frames)
            t_req = time.monotonic()
            resp = await http.post(f"{listener.location}/channel", json={"channel": target})
            t_resp = time.monotonic()
            if resp.status_code != 200:
                raise BenchError(f"switch: {resp.status_code} {resp.text}")
            try:
                frame = await frames.wait_for(
                    lambda f, w=want, o=other, t=t_req: f.arrival >= t and is_tone(f.pcm, w, o),
                    3.0,
                    start=mark,
                )
            except TimeoutError:
                raise BenchError(f"no {target} audio 3 s after switching") from None
            packet = packets.arrival_of(frame.pts)
            results.append(
                {
                    "to": target,
                    "http_ms": (t_resp - t_req) * 1000,
                    "packet_ms": None if packet is None else (packet - t_req) * 1000,
                    "frame_ms": (frame.arrival - t_req) * 1000,
                }
            )
            channel = target
    finally:
        await listener.close(http)
    return results


async def measure_join(http: httpx.AsyncClient, reps: int) -> list[dict]:
    """A new listener: POST of the offer -> its first RTP packet, and -> its first decoded audio
    of the channel (the FR seat's tone)."""
    results = []
    for _ in range(reps):
        await asyncio.sleep(0.2 + random.uniform(0, 0.04))  # random phase against the tick
        t_req = time.monotonic()
        listener = await whep_listen(http, "fr", record=True)
        t_resp = time.monotonic()
        frames, packets = listener.frames, listener.packets
        assert frames is not None and packets is not None
        try:
            frame = await frames.wait_for(lambda f: is_tone(f.pcm, FR_HZ, FLOOR_HZ), 5.0)
            first = min(packets.arrivals.values(), default=None)
            results.append(
                {
                    "http_ms": (t_resp - t_req) * 1000,
                    "packet_ms": None if first is None else (first - t_req) * 1000,
                    "frame_ms": (frame.arrival - t_req) * 1000,
                }
            )
        except TimeoutError:
            raise BenchError("a new listener heard nothing within 5 s") from None
        finally:
            await listener.close(http)
    return results


# --- 5. latency ------------------------------------------------------------------------------

ONSET_THRESHOLD = 0.1  # bursts are 0.5 full scale; silence decodes to ~0


@dataclass
class LatencyPath:
    name: str
    track: ScheduledTrack
    client: Client


def burst_latency(path: LatencyPath, burst: int, horizon: float) -> dict | None:
    handed = path.track.handed.get(burst)
    if handed is None:
        return None  # the sender skipped that frame (late loop)
    assert path.client.frames is not None and path.client.packets is not None
    for frame in path.client.frames.frames:
        if frame.arrival < handed:
            continue
        if frame.arrival > handed + horizon:
            return None
        k = onset_offset(frame.pcm, ONSET_THRESHOLD)
        if k is None:
            continue
        packet = path.client.packets.arrival_of(frame.pts)
        return {
            "burst": burst,
            "ms": (frame.arrival + k / RATE - handed) * 1000,
            "packet_ms": None if packet is None else (packet - handed) * 1000,
            "offset_ms": k / RATE * 1000,
        }
    return None


async def run_bursts(
    schedule: BurstSchedule, paths: list[LatencyPath], reps: int, spacing: float, lead: float
) -> dict[str, list[dict]]:
    """`reps` bursts `spacing` apart, the first `lead` from now; latencies per path."""
    first = schedule.index_at(time.monotonic() + lead)
    step = round(spacing / 0.02)
    bursts = [first + i * step for i in range(reps)]
    for b in bursts:
        schedule.burst_at(b)
    end = schedule.t0 + bursts[-1] * 0.02 + spacing
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    out = {}
    for path in paths:
        results = [burst_latency(path, b, horizon=spacing) for b in bursts]
        out[path.name] = [r for r in results if r is not None]
    return out


async def floor_input(http: httpx.AsyncClient) -> dict:
    """The room input's buffer (cushion: blocks before a tick; concealed ticks) and whether
    the engine's ticks follow it, from the tech status."""
    resp = await http.get("/api/tech/status", headers={"Authorization": f"Bearer {TECH_TOKEN}"})
    if resp.status_code != 200:
        raise BenchError(f"/api/tech/status: {resp.status_code}")
    status = resp.json()
    room = next((i for i in status["inputs"] if i["id"] == "room"), {})
    return {
        "cushion_blocks": room.get("cushion_blocks"),
        "concealed": room.get("concealed"),
        "follows": status["engine"].get("follows"),
        "lead_timeouts": status["engine"].get("lead_timeouts"),
    }


async def latency_round(
    http: httpx.AsyncClient,
    listener: Client,
    reps: int,
    loss_reps: int,
    spacing: float,
    settle: float,
) -> dict:
    """A new floor publisher and a new P2P call, at a random phase against the engine tick."""
    schedule = BurstSchedule(t0=time.monotonic() + random.uniform(0, 0.02))
    via_track, p2p_track = ScheduledTrack(schedule), ScheduledTrack(schedule)
    publisher = await whip_publish(http, "/whip/floor", FLOOR_TOKEN, via_track)
    sender, _receiver, p2p = await p2p_pair(p2p_track)
    paths = [
        LatencyPath("via router", via_track, listener),
        LatencyPath("direct P2P", p2p_track, p2p),
    ]
    out: dict = {}
    try:
        # Ready when one burst gets through both paths; then let the buffers settle.
        for _ in range(20):
            heard = await run_bursts(schedule, paths, 1, spacing, lead=0.05)
            if all(heard.values()):
                break
        else:
            raise BenchError("latency: a burst does not get through both paths")
        await asyncio.sleep(settle)  # the receive buffer's level loop settles
        out["steady"] = await run_bursts(schedule, paths, reps, spacing, lead=0.1)
        if loss_reps:
            # Both senders lose their next RTP packet (silence), 100 ms before the bursts.
            dropped = [drop_next_rtp(publisher.pc), drop_next_rtp(sender)]
            await asyncio.sleep(0.1)
            out["after 1 lost packet"] = await run_bursts(
                schedule, paths, loss_reps, spacing, lead=0.0
            )
            if [d() for d in dropped] != [1, 1]:
                raise BenchError("the simulated loss did not happen")
        out["sender_skipped_frames"] = {p.name: p.track.pacer.skipped for p in paths}
        out["floor_input"] = await floor_input(http)
    finally:
        await p2p.close()
        await sender.close()
        await publisher.close(http)
        for track in (via_track, p2p_track):
            track.stop()
    for phase, n in (("steady", reps), ("after 1 lost packet", loss_reps)):
        for name, results in out.get(phase, {}).items():
            if len(results) < max(1, n // 2):
                raise BenchError(f"latency: {name} heard {len(results)} of {n} bursts")
    return out


async def measure_latency(
    http: httpx.AsyncClient,
    floor: Client,
    rounds: int,
    reps: int,
    loss_reps: int,
    spacing: float,
    settle: float,
) -> list[dict]:
    await floor.close(http)  # the sine floor; the bursts take its place
    listener = await whep_listen(http, "floor", record=True)
    try:
        per_round = [reps // rounds + (1 if i < reps % rounds else 0) for i in range(rounds)]
        return [
            await latency_round(http, listener, n, loss_reps, spacing, settle)
            for n in per_round
            if n
        ]
    finally:
        await listener.close(http)


# --- report ----------------------------------------------------------------------------------


def machine() -> dict:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import aiortc
    import av

    try:
        import uvloop  # what uvicorn runs the server's event loop on, when installed

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "event_loop": loop,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
        "av": av.__version__,
        "kernel": platform.release(),
        "compiled_rtp": COMPILED,  # the direct path's loop in C (router/media/_rtp_burst.c)
    }


def summarize_cpu(windows: list[CpuWindow]) -> list[dict]:
    base = [w for w in windows if w.listeners == 0]
    base_rate = sum(w.cpu for w in base) / sum(w.seconds for w in base)
    base_tick_rate = sum(w.tick_cpu for w in base) / sum(w.seconds for w in base)
    rows = []
    for label in dict.fromkeys(w.label for w in windows):
        ws = [w for w in windows if w.label == label]
        n = ws[0].listeners
        seconds = sum(w.seconds for w in ws)
        cpu = sum(w.cpu for w in ws)
        per = [(w.cpu / w.seconds - base_rate) / n * 1000 for w in ws] if n else []
        rows.append(
            {
                "label": label,
                "listeners": n,
                "windows": len(ws),
                "audio_seconds": seconds,
                "cpu_seconds": cpu,
                "cpu_ms_per_s": cpu / seconds * 1000,
                "sys_share": sum(w.sys for w in ws) / cpu if cpu else 0.0,
                "load_cpu_ms_per_s": sum(w.load_cpu for w in ws) / seconds * 1000,
                "per_listener_ms_per_s": (cpu / seconds - base_rate) / n * 1000 if n else None,
                "per_listener_range": (min(per), max(per)) if per else None,
                # Of that, the part spent inside the engine's ticks (the direct path's sends);
                # the rest is aiortc's per-connection work (RTCP, ICE consent) and the kernel.
                "per_listener_tick_ms_per_s": (
                    sum(w.tick_cpu for w in ws) / seconds - base_tick_rate
                )
                / n
                * 1000
                if n
                else None,
                "packets_per_listener_s": statistics.mean(w.packet_rate for w in ws) / n
                if n
                else None,
                "late_ticks": sum(w.late_ticks for w in ws),
                "ticks": sum(w.ticks for w in ws),
                "rss_mb": ws[-1].rss_mb,
                "threads": ws[-1].threads,
            }
        )
    return rows


def stats_ms(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": percentile(values, 95),
        "min": min(values),
        "max": max(values),
    }


def summarize_latency(rounds: list[dict]) -> dict:
    out = {}
    for phase in ("steady", "after 1 lost packet"):
        via, direct, paired = [], [], []
        by_index: dict[int, list[float]] = {}
        for rnd in rounds:
            if phase not in rnd:
                continue
            v = {r["burst"]: r for r in rnd[phase]["via router"]}
            d = {r["burst"]: r for r in rnd[phase]["direct P2P"]}
            via += v.values()
            direct += d.values()
            first = min([*v, *d], default=0)
            for b in v:
                if b in d:
                    paired.append(v[b]["ms"] - d[b]["ms"])
                    by_index.setdefault(b - first, []).append(v[b]["ms"] - d[b]["ms"])
        if not via and not direct:
            continue
        out[phase] = {
            "floor input": [r.get("floor_input", {}) for r in rounds],
            "via router": stats_ms([r["ms"] for r in via]),
            "via router packet": stats_ms(
                [r["packet_ms"] for r in via if r["packet_ms"] is not None]
            ),
            "direct P2P": stats_ms([r["ms"] for r in direct]),
            "direct P2P packet": stats_ms(
                [r["packet_ms"] for r in direct if r["packet_ms"] is not None]
            ),
            "router adds (paired)": stats_ms(paired),
            "router adds by burst": {
                i * 20: statistics.median(xs) for i, xs in sorted(by_index.items())
            },
        }
    return out


def fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def render(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"Router benchmark, {m['date']}: {m['cpus']} CPUs ({m['cpu_model']}), Python "
        f"{m['python']}, aiortc {m['aiortc']}, av {m['av']}, {m['event_loop']}, direct RTP "
        f"in {'C' if m.get('compiled_rtp') else 'Python (C extension not built)'}",
        f"command: {report['command']}",
        "",
        f"Server CPU (utime+stime of the router process), listeners on channel "
        f"'{report['settings']['channel']}', {report['settings']['window']:.0f} s windows, "
        f"{report['settings']['load_procs']} load process(es), decoding disabled in them",
        f"{'listeners':<12}{'windows':>8}{'audio s':>9}{'cpu s':>8}{'cpu ms/s':>10}"
        f"{'sys':>5}{'ms/listener/s':>15}{'  (range)':<16}{'in tick':>8}{'pkt/lst/s':>10}"
        f"{'late':>6}{'rss MB':>8}{'thr':>5}{'load ms/s':>11}",
    ]
    for r in report["cpu"]:
        rng = r["per_listener_range"]
        lines.append(
            f"{r['label']:<12}{r['windows']:>8}{r['audio_seconds']:>9.1f}{r['cpu_seconds']:>8.2f}"
            f"{r['cpu_ms_per_s']:>10.1f}{r['sys_share'] * 100:>4.0f}%"
            f"{fmt(r['per_listener_ms_per_s'], 2):>15}"
            f"{'  ' + (f'{rng[0]:.2f}..{rng[1]:.2f}' if rng else ''):<16}"
            f"{fmt(r['per_listener_tick_ms_per_s'], 2):>8}"
            f"{fmt(r['packets_per_listener_s']):>10}{r['late_ticks']:>6}{r['rss_mb']:>8.0f}"
            f"{r['threads']:>5}{r['load_cpu_ms_per_s']:>11.0f}"
        )
    lines.append(
        "ms/listener/s = (server CPU rate with N listeners - rate with 0) / N, "
        "in ms of CPU per listener per second of audio; in tick = the part of it spent inside "
        "engine ticks (the direct RTP sends); sys = kernel share of the server's "
        "CPU; late = engine ticks skipped; load ms/s = CPU of the load generators"
    )
    sw = report.get("switch")
    if sw:
        lines += [
            "",
            f"Channel switch fr <-> es ({len(sw)} switches), ms from just before the POST",
        ]
        lines.append(f"{'to':<34}{'median':>8}{'p95':>8}{'min':>8}{'max':>8}")
        for key, title in (
            ("http_ms", "POST answered"),
            ("packet_ms", "RTP packet with new channel"),
            ("frame_ms", "decoded frame of new channel"),
        ):
            s = stats_ms([r[key] for r in sw if r[key] is not None])
            lines.append(
                f"{title:<34}{fmt(s.get('median')):>8}{fmt(s.get('p95')):>8}"
                f"{fmt(s.get('min')):>8}{fmt(s.get('max')):>8}"
            )
    joins = report.get("join")
    if joins:
        lines += ["", f"Join: a new listener on fr ({len(joins)} joins), ms from before the POST"]
        lines.append(f"{'to':<34}{'median':>8}{'p95':>8}{'min':>8}{'max':>8}")
        for key, title in (
            ("http_ms", "answer received"),
            ("packet_ms", "first RTP packet"),
            ("frame_ms", "first decoded audio of the channel"),
        ):
            s = stats_ms([r[key] for r in joins if r[key] is not None])
            lines.append(
                f"{title:<34}{fmt(s.get('median')):>8}{fmt(s.get('p95')):>8}"
                f"{fmt(s.get('min')):>8}{fmt(s.get('max')):>8}"
            )
    lat = report.get("latency_summary")
    if lat:
        for phase, s in lat.items():
            lines += [
                "",
                f"Latency floor -> listener, {phase}, {report['settings']['latency_rounds']} "
                "rounds: tone onset handed to the sender -> onset in a decoded frame at the "
                "listener (ms)",
                f"{'path':<34}{'n':>4}{'median':>8}{'p95':>8}{'min':>8}{'max':>8}",
            ]
            for key in (
                "direct P2P",
                "via router",
                "router adds (paired)",
                "direct P2P packet",
                "via router packet",
            ):
                v = s[key]
                title = key.replace(" packet", ": RTP packet arrival")
                lines.append(
                    f"{title:<34}{v['n']:>4}{fmt(v.get('median')):>8}{fmt(v.get('p95')):>8}"
                    f"{fmt(v.get('min')):>8}{fmt(v.get('max')):>8}"
                )
            lines.append(
                "  the room input per round (its buffer's smoothed lowest level before a tick, "
                "in blocks; ticks it was concealed in; ticks that followed its arrivals): "
                + ", ".join(
                    f"{fmt(f.get('cushion_blocks'), 2)} / {f.get('concealed')} concealed / "
                    + ("follows" if f.get("follows") == "room" else "grid")
                    for f in s["floor input"]
                )
            )
            series = s["router adds by burst"]
            lines.append(
                "  router adds, median over rounds, by time of the burst (ms after the first): "
                + ", ".join(f"{t}: {v:.0f}" for t, v in series.items())
            )
    for prof in report.get("profiles", []):
        lines += [
            "",
            f"py-spy on the server with {prof['listeners']} listeners "
            f"({prof['samples']} samples): self time by function",
        ]
        lines += [f"  {share * 100:5.1f}%  {name}" for name, share in prof["self"][:15]]
        lines.append("self time by file:")
        lines += [f"  {share * 100:5.1f}%  {name}" for name, share in prof["self_by_file"]]
    lines += [
        "",
        f"engine errors: {report['engine_errors']}, total late ticks: {report['late_ticks']}",
    ]
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def only_loopback_interfaces() -> list[str]:
    # /sys/class/net shows the namespace sysfs was mounted in; if_nameindex() asks the kernel.
    return [name for _, name in socket.if_nameindex() if name != "lo"]


async def run(args: argparse.Namespace) -> dict:
    install_audio_jitter_buffer()  # the project's low-latency receive path, both P2P and router
    loopback_only()
    server = ServerProcess(args.config)
    report: dict = {
        "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    windows: list[CpuWindow] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=30, trust_env=False) as http:
        try:
            await server.start(http)
            floor = await whip_publish(http, "/whip/floor", FLOOR_TOKEN, ToneTrack(FLOOR_HZ))
            seat = await whip_publish(http, "/whip/booth/fr/fr1", FR_TOKEN, ToneTrack(FR_HZ))
            await set_mic(http, True)
            report["probe"] = await probe_fr(http)
            await wait_listeners(http, 0)
            print(f"server pid {server.pid} on {server.url}; publishers up", file=sys.stderr)

            counts = [0, *args.listeners] + ([0] if args.baseline_after else [])
            if not args.cpu:
                counts = []
            for i, n in enumerate(counts):
                label = "0 (after)" if n == 0 and i > 0 else str(n)
                loads = await start_load(server.url, args.channel, n, args.load_procs) if n else []
                try:
                    await asyncio.sleep(args.settle)
                    ws = await cpu_windows(server, http, loads, n, label, args.window, args.repeats)
                    windows += ws
                    print(
                        f"  N={label}: {[round(w.cpu / w.seconds * 1000, 1) for w in ws]} ms CPU/s",
                        file=sys.stderr,
                    )
                    if args.profile and label in ("0", str(max(args.listeners))):
                        prof = await profile_server(server.pid, args.profile)
                        if prof:
                            report.setdefault("profiles", []).append({"listeners": n, **prof})
                finally:
                    await stop_load(loads)
                await wait_listeners(http, 0)
            report["cpu"] = summarize_cpu(windows) if windows else []
            report["cpu_windows"] = [w.__dict__ for w in windows]

            if args.switch_reps:
                report["switch"] = await measure_switch(http, args.switch_reps)
                print("  switch done", file=sys.stderr)
            if args.join_reps:
                report["join"] = await measure_join(http, args.join_reps)
                await wait_listeners(http, 0)
                print("  join done", file=sys.stderr)
            if args.latency_reps:
                latency = await measure_latency(
                    http,
                    floor,
                    args.latency_rounds,
                    args.latency_reps,
                    args.loss_reps,
                    args.spacing,
                    args.latency_settle,
                )
                report["latency"] = latency
                report["latency_summary"] = summarize_latency(latency)
                print("  latency done", file=sys.stderr)
            h = await health(http)
            report["engine_errors"] = h["engine_errors"]
            report["late_ticks"] = h["late_ticks"]
            await seat.close(http)
            with contextlib.suppress(Exception):
                await floor.close(http)
            if h["engine_errors"]:
                raise BenchError(f"the engine counted {h['engine_errors']} errors")
        except BaseException:
            if server.proc is not None:
                print(f"--- server log (tail) ---\n{server.tail()}", file=sys.stderr)
            raise
        finally:
            await server.stop()
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark the router on loopback: CPU per listener, latency, switch time.",
        epilog="Run it in a network namespace with only loopback: "
        "unshare -n sh -c 'ip link set lo up && python bench/run.py'",
    )
    p.add_argument("--config", type=Path, default=ROOT / "config" / "event.toml")
    p.add_argument(
        "--listeners",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10, 50],
        help="comma-separated listener counts (default 10,50)",
    )
    p.add_argument("--cpu", action=argparse.BooleanOptionalAction, default=True, help="measure CPU")
    p.add_argument("--channel", default="floor", help="channel the load listeners hear")
    p.add_argument("--window", type=float, default=10.0, help="seconds per CPU window")
    p.add_argument("--repeats", type=int, default=3, help="CPU windows per listener count")
    p.add_argument("--settle", type=float, default=2.0, help="seconds after connecting")
    p.add_argument("--load-procs", type=int, default=1, help="load-generator processes")
    p.add_argument(
        "--baseline-after",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure 0 listeners again at the end (drift, leaks)",
    )
    p.add_argument("--switch-reps", type=int, default=20)
    p.add_argument("--join-reps", type=int, default=10, help="new listeners timed one by one")
    p.add_argument("--latency-reps", type=int, default=20, help="bursts in all (steady)")
    p.add_argument(
        "--latency-rounds",
        type=int,
        default=4,
        help="new publishers per round: each samples another phase against the engine tick",
    )
    p.add_argument(
        "--loss-reps", type=int, default=10, help="bursts after one lost packet, per round"
    )
    p.add_argument("--spacing", type=float, default=0.5, help="seconds between tone bursts")
    p.add_argument(
        "--latency-settle",
        type=float,
        default=3.0,
        help="seconds a new floor publisher plays before its latency is measured",
    )
    p.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="py-spy the server for SECONDS at N=0 and the largest N (after the CPU windows)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="2 listeners, 2 s windows, few repetitions: checks the machinery",
    )
    p.add_argument("--json", type=Path, help="also write every measurement to this file")
    p.add_argument(
        "--allow-host-network",
        action="store_true",
        help="run even when interfaces other than lo exist (still loopback-only)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.listeners, args.window, args.repeats, args.settle = [2], 2.0, 1, 1.0
        args.baseline_after = False
        args.switch_reps, args.latency_reps, args.latency_rounds, args.loss_reps = 4, 4, 1, 3
        args.latency_settle = 1.0
        args.join_reps = 2
    if any(n <= 0 for n in args.listeners):
        p.error("listener counts must be positive (0 is always measured)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    others = only_loopback_interfaces()
    if others and not args.allow_host_network:
        print(
            f"bench: interfaces other than lo exist ({', '.join(others)}); run inside a "
            "private network namespace:\n  unshare -n sh -c 'ip link set lo up && "
            "python bench/run.py ...'\n(or pass --allow-host-network)",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    try:
        report = asyncio.run(run(args))
    except BenchError as exc:
        print(f"bench: FAILED: {exc}", file=sys.stderr)
        return 1
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    print(render(report))
    print(f"\n(wall time {report['wall_seconds']} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
