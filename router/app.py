"""The FastAPI app factory; its lifespan owns the engine task, the sessions and the demo."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from router.config import EventConfig
from router.edges.pool import EdgePool
from router.media.clock import Clock
from router.media.jitter import install_audio_jitter_buffer
from router.monitoring.console import TechConsole
from router.monitoring.metrics import metrics_registry
from router.runtime import EventRuntime
from router.signalling.ice import restrict_host_candidates
from router.signalling.rtcp_cadence import set_report_interval
from router.web import api, booth, edges, floor, media, room, tech, whep, whip
from router.web.errors import install_error_handlers
from router.web.pages import mount_pages

DESCRIPTION = """Routes a hybrid meeting's floor and interpreter booths into language channels.

Publishers use WHIP (RFC 9725), listeners use WHEP; both exchange one SDP offer and answer
over HTTP with a bearer token. Errors are JSON: `{"error": word, "detail": sentence}`.
"""


def create_app(
    config: EventConfig,
    *,
    ice_hosts: Sequence[str] = (),
    demo: bool = False,
    clock: Clock | None = None,
    recordings: Path = Path("recordings"),
    public_url: str | None = None,
) -> FastAPI:
    """Build the app; nothing runs until the lifespan starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install_audio_jitter_buffer()
        set_report_interval(app.state.runtime.config.audio.rtcp_report_interval)
        # The tick's matrix products are tiny; OpenBLAS would spread them over threads that
        # then spin between ticks, burning the cores the event loop and Opus need (bench/mixer.py:
        # a 24x48 tick's p95 goes from 16 ms to 0.4 ms with one thread).
        blas = threadpool_limits(limits=1, user_api="blas")
        rt: EventRuntime = app.state.runtime
        await rt.start_inputs()  # RTP ports: a port that cannot be had stops the server
        restore_ice = restrict_host_candidates(ice_hosts) if ice_hosts else None
        engine_task = asyncio.create_task(rt.engine.run(), name="engine")
        console_task = asyncio.create_task(app.state.console.run(), name="console")
        # Sessions whose client vanished without a DELETE are closed within seconds.
        watch_task = asyncio.create_task(rt.peers.watch(), name="session-watch")
        # Janus edges: RTP forwarding and each edge's supervisor (nothing without [[edges]]).
        await app.state.edges.start()
        demo_sources = None
        if demo:
            from router.demo.sources import DemoSources

            demo_sources = DemoSources(rt)
            demo_sources.start()
        try:
            yield
        finally:
            watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch_task
            if demo_sources is not None:
                await demo_sources.stop()
            await app.state.edges.close()
            await rt.peers.close_all()
            rt.close_inputs()
            app.state.console.close()  # finishes every recording
            for task in (console_task, engine_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if restore_ice is not None:
                restore_ice()
            blas.restore_original_limits()

    app = FastAPI(
        title="Interpretation channel router",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.runtime = EventRuntime.build(config, clock)
    app.state.public_url = public_url  # the listener link's base in QR codes; None: per request
    app.state.console = TechConsole(app.state.runtime, recordings)
    app.state.edges = EdgePool(config, app.state.runtime.engine)
    app.state.metrics = metrics_registry(app.state.console)
    install_error_handlers(app)
    app.include_router(whip.router)
    app.include_router(whep.router)
    app.include_router(edges.router)
    app.include_router(api.router)
    app.include_router(booth.router)
    app.include_router(room.router)
    app.include_router(tech.router)
    app.include_router(floor.router)
    app.include_router(media.router)
    mount_pages(app)
    return app
