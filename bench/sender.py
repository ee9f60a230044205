"""Listener fan-out CPU: the direct RTP path (C burst) against another sender, side by side.

Two routers run at once, identical but for one `[audio]` setting: `--against aiortc` gives the
second one aiortc's own per-packet sender (`direct_rtp = false`), `--against python` the direct
path's loop in Python instead of C (`compiled_rtp = false`), `--against aiortc-reports` RTCP
reports every second as aiortc sends them, not every 5 s (`rtcp_report_interval = 1.0`). Each
gets the same floor publisher and the same number of WHEP listeners (load generators in
separate processes), and their CPU is read over the same windows, so the machine's noise hits
both alike and the ratio is fair even when the absolute numbers are not.

    unshare -n sh -c 'ip link set lo up && python bench/sender.py --listeners 25,50,100'
    unshare -n sh -c 'ip link set lo up && python bench/sender.py --against python'
    unshare -n sh -c 'ip link set lo up && python bench/sender.py --against aiortc-reports'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.clients import ToneTrack, loopback_only, whip_publish  # noqa: E402
from bench.run import (  # noqa: E402
    FLOOR_HZ,
    FLOOR_TOKEN,
    BenchError,
    CpuWindow,
    ServerProcess,
    cpu_windows,
    machine,
    start_load,
    stop_load,
    summarize_cpu,
    wait_listeners,
)
from router.media.jitter import install_audio_jitter_buffer  # noqa: E402

AGAINST = {
    "aiortc": "direct_rtp = false",
    "python": "compiled_rtp = false",
    "aiortc-reports": "rtcp_report_interval = 1.0",
}


def config_with(config: Path, folder: Path, setting: str) -> Path:
    """The same event with one `[audio]` setting; next to the original so relative paths hold."""
    text = config.read_text()
    if "[audio]" in text:
        text = text.replace("[audio]", f"[audio]\n{setting}", 1)
    else:
        text += f"\n[audio]\n{setting}\n"
    out = folder / f".bench-sender-{time.monotonic_ns()}.toml"
    out.write_text(text)
    return out


async def run(args: argparse.Namespace) -> dict:
    install_audio_jitter_buffer()
    loopback_only()
    other = args.against
    plain = config_with(args.config, args.config.parent, AGAINST[other])
    servers = {"direct": ServerProcess(args.config), other: ServerProcess(plain)}
    modes = tuple(servers)
    windows: dict[str, list[CpuWindow]] = {m: [] for m in modes}
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(plain.unlink, missing_ok=True)
        https = {
            m: await stack.enter_async_context(
                httpx.AsyncClient(base_url=s.url, timeout=30, trust_env=False)
            )
            for m, s in servers.items()
        }
        for m, server in servers.items():
            stack.push_async_callback(server.stop)
            await server.start(https[m])
            await whip_publish(https[m], "/whip/floor", FLOOR_TOKEN, ToneTrack(FLOOR_HZ))
        for n in [0, *args.listeners]:
            loads = {}
            try:
                for m in modes:
                    loads[m] = (
                        await start_load(servers[m].url, "floor", n, args.load_procs) if n else []
                    )
                for m in modes:
                    await wait_listeners(https[m], n, timeout=30 + n)
                await asyncio.sleep(args.settle)
                results = await asyncio.gather(
                    *(
                        cpu_windows(
                            servers[m], https[m], loads[m], n, str(n), args.window, args.repeats
                        )
                        for m in modes
                    )
                )
                for m, ws in zip(modes, results, strict=True):
                    windows[m] += ws
                print(f"  N={n} measured", file=sys.stderr)
            finally:
                for m in loads:
                    await stop_load(loads[m])
            for m in modes:
                await wait_listeners(https[m], 0)
    return {
        "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "against": other,
        "cpu": {m: summarize_cpu(windows[m]) for m in modes},
    }


def render(report: dict) -> str:
    m = report["machine"]
    other = report["against"]
    title = {
        "aiortc": "aiortc's sender",
        "python": "the same path in Python",
        "aiortc-reports": "RTCP reports every second (aiortc's cadence)",
    }[other]
    w = max(17, len(other) + 11)  # column width for the second router's figures
    lines = [
        f"Listener fan-out, direct RTP path vs {title}, {m['date']}: {m['cpus']} CPUs "
        f"({m['cpu_model']}), aiortc {m['aiortc']}; direct path in "
        f"{'C' if m.get('compiled_rtp') else 'Python (C extension not built)'}",
        f"command: {report['command']}",
        "",
        f"{'listeners':>9}{'direct ms/lst/s':>17}{other + ' ms/lst/s':>{w}}{'ratio':>7}"
        f"{'direct late':>13}{other + ' late':>{w - 4}}{'direct RSS':>12}",
    ]
    direct, plain = report["cpu"]["direct"], report["cpu"][other]
    for d, a in zip(direct, plain, strict=True):
        if not d["listeners"]:
            continue
        dp, ap = d["per_listener_ms_per_s"], a["per_listener_ms_per_s"]
        ratio = ap / dp if dp and dp > 0 else float("nan")
        lines.append(
            f"{d['listeners']:>9}{dp:>17.2f}{ap:>{w}.2f}{ratio:>7.2f}"
            f"{d['late_ticks']:>13}{a['late_ticks']:>{w - 4}}{d['rss_mb']:>10.0f}MB"
        )
    lines.append(
        "ms/lst/s: server CPU per listener per second of audio, above the 0-listener rate of "
        "the same server; both servers measured over the same windows"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "config" / "event.toml")
    p.add_argument(
        "--listeners", type=lambda s: [int(x) for x in s.split(",")], default=[25, 50, 100]
    )
    p.add_argument("--window", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--load-procs", type=int, default=2)
    p.add_argument(
        "--against", choices=sorted(AGAINST), default="aiortc", help="the second router's sender"
    )
    args = p.parse_args(argv)
    try:
        report = asyncio.run(run(args))
    except BenchError as exc:
        print(f"bench: FAILED: {exc}", file=sys.stderr)
        return 1
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
