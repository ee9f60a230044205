"""Shared fixtures: the default event, a real server on loopback, loopback-only ICE."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from router.app import create_app
from router.config import EventConfig, load_config
from router.media.jitter import install_audio_jitter_buffer
from router.signalling.ice import restrict_host_candidates

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EVENT = ROOT / "config" / "event.toml"


def pytest_collection_finish(session: pytest.Session) -> None:
    # As `interp-router serve` does, once every test module is imported: the servers under
    # test share this process, and a full collection walking every imported module stops
    # their event loop for 100 ms and more.
    gc.collect()
    gc.freeze()


@pytest.fixture
def event_config() -> EventConfig:
    return load_config(DEFAULT_EVENT)


@pytest.fixture
def loopback_ice():
    """Every peer in the test process offers 127.0.0.1 only: no other interface is used."""
    install_audio_jitter_buffer()
    restore = restrict_host_candidates(["127.0.0.1"])
    yield
    restore()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    app: FastAPI
    url: str
    http: httpx.AsyncClient

    @property
    def runtime(self):
        return self.app.state.runtime

    async def wait_flowing(self, sources: set[str] | list[str], timeout: float = 10.0) -> None:
        """Until every source is registered and has delivered some audio to its buffer."""
        engine = self.runtime.engine
        wanted = set(sources)
        for _ in range(int(timeout / 0.05)):
            if wanted <= set(engine.source_ids()) and all(
                engine.buffer(s).stats.pushed > 10 for s in wanted
            ):
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"sources not flowing: {wanted - set(engine.source_ids())}")


async def start_server(app: FastAPI) -> tuple[uvicorn.Server, asyncio.Task, str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server, task, f"http://127.0.0.1:{port}"


@pytest.fixture
async def server(event_config, loopback_ice) -> AsyncIterator[RunningServer]:
    app = create_app(event_config, ice_hosts=["127.0.0.1"])
    srv, task, url = await start_server(app)
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        yield RunningServer(app, url, http)
    srv.should_exit = True
    await task
