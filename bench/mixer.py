"""One engine tick at European-Parliament scale: 24 channels, 48 inputs.

Drives `Engine.tick` directly (no network, no event loop), so the numbers are the engine's own
CPU per tick: pulling one block from every input, the gain-matrix mix, and optionally one Opus
encode per channel (what a tick costs once every channel has listeners).

    python bench/mixer.py
    python bench/mixer.py --channels 24 --inputs 48 --ticks 3000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from router.media.clock import MonotonicClock  # noqa: E402
from router.media.engine import Engine, EngineSettings, Feed, SourceRole  # noqa: E402
from router.media.inputs import SAMPLES_PER_BLOCK  # noqa: E402
from router.media.mixer import FLOOR  # noqa: E402


class NullSink:
    def __init__(self) -> None:
        self.packets = 0

    def offer(self, packet: object) -> None:
        self.packets += 1


def build(channels: int, inputs: int, floor_inputs: int) -> tuple[Engine, list, list[str]]:
    names = (FLOOR, *(f"ch{i:02d}" for i in range(1, channels)))
    engine = Engine(EngineSettings(channels=names), MonotonicClock())
    buffers = []
    for i in range(inputs):
        role = SourceRole.PANELLIST if i < floor_inputs else SourceRole.SEAT
        buffers.append(engine.add_source(f"in{i:02d}", role))
    seats = [f"in{i:02d}" for i in range(floor_inputs, inputs)]
    for ch, seat in zip(names[1:], seats, strict=False):
        engine.set_live(ch, seat)  # every interpretation channel has a live seat
    return engine, buffers, list(names)


def measure(engine: Engine, buffers: list, ticks: int) -> list[float]:
    rng = np.random.default_rng(7)
    blocks = [(0.1 * rng.standard_normal(SAMPLES_PER_BLOCK)).astype(np.float32) for _ in range(16)]
    for buf in buffers:  # prime: playback starts at two blocks
        buf.push(blocks[0])
        buf.push(blocks[1])
    times = []
    for n in range(ticks):
        for i, buf in enumerate(buffers):
            buf.push(blocks[(n + i) % len(blocks)])
        t0 = time.process_time()
        engine.tick(n)
        times.append(time.process_time() - t0)
    return times[ticks // 10 :]  # without the warm-up


def row(label: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[int(len(ms) * 0.95)]
    return f"{label:<34}{statistics.mean(ms):>8.3f}{statistics.median(ms):>8.3f}{p95:>8.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--channels", type=int, default=24, help="including the floor")
    p.add_argument("--inputs", type=int, default=48)
    p.add_argument("--floor-inputs", type=int, default=8, help="inputs that make the floor")
    p.add_argument("--ticks", type=int, default=2000)
    p.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="OpenBLAS threads (the server uses 1; 0 keeps the library's default)",
    )
    args = p.parse_args(argv)
    if args.blas_threads:
        threadpool_limits(limits=args.blas_threads, user_api="blas")

    engine, buffers, names = build(args.channels, args.inputs, args.floor_inputs)
    mix_only = measure(engine, buffers, args.ticks)
    sinks = [NullSink() for _ in names]
    for sink, ch in zip(sinks, names, strict=True):
        engine.subscribe(sink, Feed(ch))
    with_encode = measure(engine, buffers, args.ticks)
    if not all(s.packets for s in sinks):
        print("bench: a channel produced no packets", file=sys.stderr)
        return 1
    print(
        f"Engine tick, {args.channels} channels x {args.inputs} inputs "
        f"({args.floor_inputs} floor inputs, a live seat on every other channel), "
        f"{args.ticks} ticks, CPU ms per tick (process_time, all threads), "
        f"BLAS threads: {args.blas_threads or 'library default'}"
    )
    print(f"{'':<34}{'mean':>8}{'median':>8}{'p95':>8}")
    print(row("pull + mix (no listeners)", mix_only))
    print(row(f"pull + mix + {len(names)} Opus encodes", with_encode))
    print(f"encodes per tick: {engine.stats.encodes / (2 * args.ticks):.1f} (warm-up included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
