"""How long a full garbage collection stops the router's event loop, with and without freezing.

Python's cyclic collector walks every tracked object in a full (generation 2) collection.
After importing aiortc, av, numpy, scipy, FastAPI and pydantic that is some 190,000 objects,
all of which live as long as the process. `interp-router serve` (and the test session) freeze
them after start-up, so collections walk only what the event itself creates. Each mode runs in
a fresh process so that one cannot warm the other.

    python bench/gc_pause.py
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(freeze: bool, live_objects: int, repeats: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from router.app import create_app
    from router.config import load_config

    app = create_app(load_config(ROOT / "config" / "event.toml"))
    if freeze:
        gc.collect()
        gc.freeze()
    # What an event creates once running (sessions, peers, buffers): collected as usual.
    live = [[i] for i in range(live_objects)]
    pauses = []
    for _ in range(repeats):
        t = time.perf_counter()
        gc.collect()
        pauses.append((time.perf_counter() - t) * 1000)
    walked = len(gc.get_objects())  # what a full collection walks: tracked, not frozen
    del app, live
    return {
        "median_ms": statistics.median(pauses),
        "max_ms": max(pauses),
        "tracked": walked,
        "frozen": gc.get_freeze_count(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--live-objects", type=int, default=50_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--mode", choices=("plain", "frozen"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.mode:
        r = measure(args.mode == "frozen", args.live_objects, args.repeats)
        print(f"{r['median_ms']} {r['max_ms']} {r['tracked']} {r['frozen']}")
        return 0
    print(f"Full collection (gc.collect()), {args.repeats} times, {args.live_objects} live objects")
    print(f"{'mode':<8}{'median ms':>11}{'max ms':>9}{'walked':>10}{'frozen':>10}")
    for mode in ("plain", "frozen"):
        out = subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--live-objects", str(args.live_objects),
             "--repeats", str(args.repeats)],
            check=True, capture_output=True, text=True,
        ).stdout.split()  # fmt: skip
        median, worst, tracked, frozen = float(out[0]), float(out[1]), int(out[2]), int(out[3])
        print(f"{mode:<8}{median:>11.1f}{worst:>9.1f}{tracked:>10}{frozen:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
