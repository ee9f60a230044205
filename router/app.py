"""The FastAPI app factory; its lifespan owns the engine task, the sessions and the demo."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from router.config import EventConfig
from router.media.clock import Clock
from router.media.jitter import install_audio_jitter_buffer
from router.runtime import EventRuntime
from router.signalling.ice import restrict_host_candidates
from router.web import api, whep, whip
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
) -> FastAPI:
    """Build the app; nothing runs until the lifespan starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install_audio_jitter_buffer()
        restore_ice = restrict_host_candidates(ice_hosts) if ice_hosts else None
        rt: EventRuntime = app.state.runtime
        engine_task = asyncio.create_task(rt.engine.run(), name="engine")
        demo_sources = None
        if demo:
            from router.demo.sources import DemoSources

            demo_sources = DemoSources(rt)
            demo_sources.start()
        try:
            yield
        finally:
            if demo_sources is not None:
                await demo_sources.stop()
            await rt.peers.close_all()
            engine_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await engine_task
            if restore_ice is not None:
                restore_ice()

    app = FastAPI(
        title="Interpretation channel router",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.runtime = EventRuntime.build(config, clock)
    install_error_handlers(app)
    app.include_router(whip.router)
    app.include_router(whep.router)
    app.include_router(api.router)
    mount_pages(app)
    return app
