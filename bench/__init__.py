"""Benchmarks of the router: server CPU per listener, added latency, channel switch time.

Run `python bench/run.py --help`; results and exact commands are in docs/PERFORMANCE.md.
Never timed in tests: CI runs `bench/run.py --quick` only to keep the machinery working.
"""
