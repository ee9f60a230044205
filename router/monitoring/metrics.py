"""Prometheus metrics, read from the console's last snapshot at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router.monitoring.console import TechConsole
from router.signalling.peers import SessionKind


class RouterCollector(Collector):
    def __init__(self, console: TechConsole) -> None:
        self._console = console

    def collect(self) -> Iterator[Metric]:
        console = self._console
        rt = console.rt
        engine = rt.engine

        listeners = GaugeMetricFamily(
            "interp_listeners", "Listeners connected, per channel", labels=["channel"]
        )
        for channel, count in console.listeners_per_channel().items():
            listeners.add_metric([channel], count)
        yield listeners

        sessions = GaugeMetricFamily("interp_connections", "WebRTC sessions", labels=["kind"])
        for kind in SessionKind:
            sessions.add_metric([kind.value], rt.peers.count(kind))
        yield sessions

        yield CounterMetricFamily("interp_engine_ticks", "Engine ticks", value=engine.stats.ticks)
        yield CounterMetricFamily(
            "interp_engine_late_ticks",
            "Ticks skipped because the engine was late",
            value=engine.pacer.late_ticks,
        )
        yield CounterMetricFamily(
            "interp_engine_errors", "Exceptions caught in the tick", value=engine.stats.errors
        )
        yield CounterMetricFamily(
            "interp_engine_tick_cpu_seconds",
            "CPU time spent in ticks",
            value=engine.stats.tick_cpu_seconds,
        )

        peak = GaugeMetricFamily("interp_level_peak_dbfs", "Sample peak", labels=["kind", "name"])
        lufs = GaugeMetricFamily("interp_level_lufs", "Momentary loudness", labels=["kind", "name"])
        for name, level in console.levels.items():
            kind, _, ident = name.partition(":")
            peak.add_metric([kind, ident], level.peak_db)
            lufs.add_metric([kind, ident], level.lufs)
        yield peak
        yield lufs

        under = CounterMetricFamily(
            "interp_input_underruns", "Ticks an input had no audio", labels=["source"]
        )
        over = CounterMetricFamily(
            "interp_input_overruns",
            "Blocks dropped because an input buffer was full",
            labels=["source"],
        )
        for sid in engine.source_ids():
            stats = engine.buffer(sid).stats
            under.add_metric([sid], stats.underruns)
            over.add_metric([sid], stats.overruns)
        yield under
        yield over

        live = GaugeMetricFamily(
            "interp_seat_live", "1 when a seat is live", labels=["booth", "seat"]
        )
        for seat in rt.board.snapshot():
            live.add_metric([str(seat["booth"]), str(seat["seat"])], 1 if seat["live"] else 0)
        yield live

        yield GaugeMetricFamily(
            "interp_recording", "1 while recording", value=1 if console.recording.current else 0
        )
        yield GaugeMetricFamily(
            "interp_alarms_active", "Active alarms", value=len(console.alarms.active)
        )


def metrics_registry(console: TechConsole) -> CollectorRegistry:
    # One registry per app: no process-global state shared between events or tests.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RouterCollector(console))
    return registry
