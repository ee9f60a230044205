"""Churn, the short version of bench/soak.py: listeners join, hear, switch and leave; then
no task, peer connection, session, consumer or limiter slot is left, and memory is bounded."""

from __future__ import annotations

import pytest

from bench.soak import churn, settle, snapshot, soak, task_names
from tests.webrtc_clients import publish

pytestmark = pytest.mark.webrtc

CYCLES = 100
FR = {"Authorization": "Bearer booth-fr-demo-token"}


async def test_listener_churn_and_switching_leave_nothing_behind(server):
    http, app = server.http, server.app
    floor = await publish(http, "/whip/floor", "floor-demo-token", 440)
    seat = await publish(http, "/whip/booth/fr/fr1", "booth-fr-demo-token", 660)
    try:
        await server.wait_flowing(["room", "seat:fr:fr1"])
        assert (
            await http.post("/api/booths/fr/seats/fr1/mic", json={"on": True}, headers=FR)
        ).status_code == 200
        assert await churn(http, 20, concurrency=5, seed=0) == []  # warm-up: first allocations
        baseline = await settle(app, snapshot(app), timeout=5)
        before = task_names()

        assert await churn(http, CYCLES, concurrency=5) == []  # every cycle heard audio twice
        after = await settle(app, baseline)
        assert after.sessions == baseline.sessions == 2  # the two publishers
        assert after.consumers == baseline.consumers
        assert after.limiter == baseline.limiter
        assert after.peer_connections <= baseline.peer_connections
        assert after.tasks <= baseline.tasks, (before, task_names())
        # Each listener held sockets on both sides (and a duplicate in its C stream): a leak
        # would leave hundreds; the HTTP client's keep-alive pool may hold a few more.
        assert after.descriptors <= baseline.descriptors + 10, (baseline, after)
        growth = after.rss_mb - baseline.rss_mb
        print(f"\n{CYCLES} cycles: RSS {baseline.rss_mb} -> {after.rss_mb} MB ({growth:+.1f})")
        # A leaked peer connection holds a few MB (DTLS, ICE, codecs, queues): 100 of them
        # would be far above this; allocator high-water marks stay below.
        assert growth < 40

        # Ten listeners switching every second for 15 s: nobody stops hearing audio.
        result = await soak(app, http, listeners=10, seconds=15, switch_every=1.0)
        assert result.switches >= 50 and result.stalls == 0
        after_soak = await settle(app, baseline)
        assert after_soak.sessions == 2 and after_soak.limiter == baseline.limiter
        assert after_soak.tasks <= baseline.tasks, (before, task_names())
        assert after_soak.peer_connections <= baseline.peer_connections
        assert after_soak.descriptors <= baseline.descriptors + 10, (baseline, after_soak)
        assert server.runtime.engine.stats.errors == 0
        assert floor.pc.connectionState == seat.pc.connectionState == "connected"
    finally:
        await floor.close()
        await seat.close()
