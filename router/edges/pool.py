"""The edges of one event: RTP to all of them, and listener leases handed out to the least loaded.

A lease is one listener's Janus handle on one edge, named by an unguessable id; the browser
only ever sees that id and the edge's SDP, never the edge's API or secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx

from router.config import EventConfig
from router.edges.edge import EdgeDown, EdgeLink
from router.edges.forwarder import RtpForwarder, RtpTarget
from router.edges.janus import JanusError, PluginError
from router.media.engine import Engine

log = logging.getLogger(__name__)

ANSWER_TIMEOUT_SECONDS = 30.0  # a lease whose answer never came is released
SWEEP_SECONDS = 5.0


class NoEdgeAvailable(Exception):
    """Every edge is down or full."""


class LeaseNotFound(Exception):
    pass


class EdgeRequestFailed(Exception):
    """The edge refused or did not answer a listener's request."""


@dataclass
class Lease:
    id: str
    edge: EdgeLink
    handle: int
    channel: str
    created: float
    answered: bool = False


class EdgePool:
    def __init__(self, config: EventConfig, engine: Engine) -> None:
        self.channels = list(config.channels)
        self._http: httpx.AsyncClient | None = None
        self.edges: list[EdgeLink] = []
        self._specs = list(config.edges)
        # SRTP keys live only in this process: a new key per start, given to each mountpoint.
        self._srtp_keys = {e.id: secrets.token_bytes(30) if e.srtp else None for e in self._specs}
        self.forwarder = RtpForwarder(
            engine,
            self.channels,
            [
                RtpTarget(e.id, e.rtp_host, e.rtp_port_base, self._srtp_keys[e.id])
                for e in config.edges
            ],
        )
        self._leases: dict[str, Lease] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def enabled(self) -> bool:
        return bool(self._specs)

    async def start(self) -> None:
        if not self.enabled:
            return
        self._http = httpx.AsyncClient(timeout=10.0)
        self.edges = [
            EdgeLink(
                spec,
                self.channels,
                self._http,
                self._edge_down,
                self._handle_gone,
                self._srtp_keys[spec.id],
            )
            for spec in self._specs
        ]
        await self.forwarder.start()
        self._tasks = [
            asyncio.create_task(edge.run(), name=f"edge-{edge.id}") for edge in self.edges
        ]
        self._tasks.append(asyncio.create_task(self._sweep(), name="edge-leases"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.forwarder.close()
        await asyncio.gather(*(edge.close() for edge in self.edges))
        self._leases.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- listeners -----------------------------------------------------------------------

    def listeners(self, edge: EdgeLink) -> int:
        return sum(1 for lease in self._leases.values() if lease.edge is edge)

    def pick(self) -> EdgeLink:
        """The ready edge with the fewest listeners that still has room."""
        candidates = [e for e in self.edges if e.ready and self.listeners(e) < e.spec.max_listeners]
        if not candidates:
            raise NoEdgeAvailable("no edge is available now")
        return min(candidates, key=self.listeners)

    async def open(self, channel: str) -> tuple[Lease, str]:
        """A lease on the least loaded edge, watching `channel`; returns it and Janus's offer."""
        edge = self.pick()
        try:
            handle, offer = await edge.watch(channel)
        except (EdgeDown, httpx.HTTPError, JanusError, PluginError, TimeoutError) as exc:
            raise EdgeRequestFailed(f"edge {edge.id}: {exc}") from exc
        lease = Lease(secrets.token_urlsafe(24), edge, handle, channel, time.monotonic())
        self._leases[lease.id] = lease
        return lease, offer

    def get(self, lease_id: str) -> Lease:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFound(lease_id)
        return lease

    async def answer(self, lease_id: str, sdp: str) -> Lease:
        lease = self.get(lease_id)
        try:
            await lease.edge.answer(lease.handle, sdp)
        except (EdgeDown, httpx.HTTPError, JanusError, PluginError, TimeoutError) as exc:
            await self.release(lease_id)
            raise EdgeRequestFailed(f"edge {lease.edge.id}: {exc}") from exc
        lease.answered = True
        return lease

    async def switch(self, lease_id: str, channel: str) -> Lease:
        lease = self.get(lease_id)
        try:
            await lease.edge.switch(lease.handle, channel)
        except (EdgeDown, httpx.HTTPError, JanusError, PluginError, TimeoutError) as exc:
            raise EdgeRequestFailed(f"edge {lease.edge.id}: {exc}") from exc
        lease.channel = channel
        return lease

    async def release(self, lease_id: str) -> None:
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            raise LeaseNotFound(lease_id)
        await lease.edge.release(lease.handle)

    def channel_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.channels, 0)
        for lease in self._leases.values():
            counts[lease.channel] = counts.get(lease.channel, 0) + 1
        return counts

    def status(self) -> list[dict[str, Any]]:
        sent = self.forwarder.stats()
        return [
            {
                **edge.status(),
                "listeners": self.listeners(edge),
                "rtp_sent": sent[edge.id].sent,
                "rtp_dropped": sent[edge.id].dropped,
            }
            for edge in self.edges
        ]

    # --- callbacks from the edges, and the sweep -------------------------------------------

    def _edge_down(self, edge: EdgeLink) -> None:
        # Its handles died with its session: those listeners reconnect through the API.
        for lease_id in [i for i, lease in self._leases.items() if lease.edge is edge]:
            del self._leases[lease_id]

    def _handle_gone(self, edge: EdgeLink, handle: int) -> None:
        for lease_id, lease in list(self._leases.items()):
            if lease.edge is edge and lease.handle == handle and lease.answered:
                del self._leases[lease_id]
                asyncio.get_running_loop().create_task(edge.release(handle))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.monotonic()
            stale = [
                lease.id
                for lease in self._leases.values()
                if not lease.answered and now - lease.created > ANSWER_TIMEOUT_SECONDS
            ]
            for lease_id in stale:
                with contextlib.suppress(LeaseNotFound):
                    await self.release(lease_id)
