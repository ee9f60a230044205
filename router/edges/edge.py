"""One Janus edge: its session, one RTP mountpoint per channel, and the listeners' handles.

The supervisor (`run`) keeps a session open and the mountpoints present. When the edge
restarts, its session is gone (the long poll fails or answers "no such session"): the edge is
marked down, its listeners' handles are forgotten, and a new session recreates the mountpoints.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from router.config import JanusEdge
from router.edges.janus import JanusError, JanusSession, JsonObject, PluginError
from router.edges.rtp import OPUS_PAYLOAD_TYPE

log = logging.getLogger(__name__)

STREAMING = "janus.plugin.streaming"
RETRY_SECONDS = 0.5  # between attempts to reach a down edge
CHECK_SECONDS = 3.0  # between checks that every mountpoint is still there


class EdgeDown(Exception):
    """The edge is not reachable or has no session now."""


@dataclass(frozen=True)
class Mountpoint:
    channel: str
    id: int
    port: int


class EdgeLink:
    def __init__(
        self,
        spec: JanusEdge,
        channels: Sequence[str],
        http: httpx.AsyncClient,
        on_edge_down: Callable[[EdgeLink], None],
        on_handle_gone: Callable[[EdgeLink, int], None],
        srtp_key: bytes | None = None,
    ) -> None:
        self.spec = spec
        self._srtp_key = srtp_key
        self.id = spec.id
        self.mountpoints = {
            ch: Mountpoint(ch, spec.mountpoint_base + i, spec.rtp_port_base + 2 * i)
            for i, ch in enumerate(channels)
        }
        self._http = http
        self._on_edge_down = on_edge_down
        self._on_handle_gone = on_handle_gone
        self._session: JanusSession | None = None
        self._admin: int | None = None
        self._ready = asyncio.Event()
        self.sessions_opened = 0  # 1 at start; each edge restart adds one
        self.mountpoints_created = 0
        self.last_error = ""
        self.ready_since: float | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    # --- supervision ---------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self._connect()
                await self._serve()
            except asyncio.CancelledError:
                raise
            except (httpx.HTTPError, JanusError, PluginError, KeyError, ValueError) as exc:
                self._down(exc)
            await asyncio.sleep(RETRY_SECONDS)

    async def _connect(self) -> None:
        session = JanusSession(self._http, self.spec.api_url, self.spec.api_secret)
        await session.create()
        admin = await session.attach(STREAMING)
        self._session, self._admin = session, admin
        present = await self._present()
        for mp in self.mountpoints.values():
            await self._ensure(mp, mp.id in present, fresh=True)
        self.sessions_opened += 1
        self.last_error = ""
        self.ready_since = time.monotonic()
        self._ready.set()
        log.info("edge %s ready (session %s)", self.id, session.id)

    async def _serve(self) -> None:
        poller = asyncio.create_task(self._poll_forever(), name=f"edge-{self.id}-poll")
        checker = asyncio.create_task(self._check_forever(), name=f"edge-{self.id}-check")
        try:
            done, _ = await asyncio.wait({poller, checker}, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # re-raises what stopped it
        finally:
            for task in (poller, checker):
                task.cancel()
            await asyncio.gather(poller, checker, return_exceptions=True)

    async def _poll_forever(self) -> None:
        session = self._require_session()
        while True:
            for event in await session.poll():
                if event.get("janus") in ("hangup", "detached"):
                    sender = event.get("sender")
                    if isinstance(sender, int) and sender != self._admin:
                        self._on_handle_gone(self, sender)

    async def _check_forever(self) -> None:
        # A mountpoint destroyed behind our back (an operator, a config reload) comes back.
        session = self._require_session()
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            await session.keepalive()
            present = await self._present()
            for mp in self.mountpoints.values():
                if mp.id not in present:
                    log.warning("edge %s lost mountpoint %s: recreating", self.id, mp.id)
                    await self._ensure(mp, False, fresh=False)

    def _down(self, exc: BaseException) -> None:
        was_ready = self.ready
        self._ready.clear()
        self.ready_since = None
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self._session is not None:
            self._session.fail_waiting(EdgeDown(self.last_error))
        self._session = None
        self._admin = None
        if was_ready:
            log.warning("edge %s down: %s", self.id, self.last_error)
        self._on_edge_down(self)

    async def close(self) -> None:
        """End our session so the edge drops the listeners' handles at once."""
        session, self._session = self._session, None
        self._ready.clear()
        if session is not None:
            try:
                await asyncio.wait_for(session.destroy(), 2.0)
            except (httpx.HTTPError, JanusError, TimeoutError):
                pass

    # --- mountpoints ---------------------------------------------------------------------

    def _require_session(self) -> JanusSession:
        if self._session is None or self._admin is None:
            raise EdgeDown(self.last_error or f"edge {self.id} is not connected")
        return self._session

    def _with_key(self, body: JsonObject) -> JsonObject:
        if self.spec.admin_key is not None:
            body["admin_key"] = self.spec.admin_key
        return body

    async def _present(self) -> set[int]:
        session = self._require_session()
        assert self._admin is not None
        data = await session.request(self._admin, {"request": "list"})
        return {int(m["id"]) for m in data.get("list", [])}

    async def _ensure(self, mp: Mountpoint, exists: bool, fresh: bool) -> None:
        session = self._require_session()
        assert self._admin is not None
        if exists and fresh:
            # Left by an earlier router run: keep it only if it listens where we send.
            info = await session.request(self._admin, {"request": "info", "id": mp.id})
            media = info.get("info", {}).get("media", [])
            if _matches(media, mp.port) and self._srtp_key is None:
                return  # (an SRTP key cannot be read back: those are always made anew)
            await session.request(
                self._admin,
                self._with_key({"request": "destroy", "id": mp.id, "permanent": False}),
            )
        elif exists:
            return
        body: JsonObject = {"request": "create"}
        if self._srtp_key is not None:
            body |= {"srtpsuite": 80, "srtpcrypto": base64.b64encode(self._srtp_key).decode()}
        await session.request(
            self._admin,
            self._with_key(
                body
                | {
                    "type": "rtp",
                    "id": mp.id,
                    "name": mp.channel,
                    "description": mp.channel,
                    "permanent": False,
                    "media": [
                        {
                            "type": "audio",
                            "mid": "a",
                            "port": mp.port,
                            "pt": OPUS_PAYLOAD_TYPE,
                            "codec": "opus",
                        }
                    ],
                }
            ),
        )
        self.mountpoints_created += 1

    # --- listeners -----------------------------------------------------------------------

    async def watch(self, channel: str) -> tuple[int, str]:
        """A new handle watching the channel's mountpoint: (handle, the edge's SDP offer)."""
        session = self._require_session()
        handle = await session.attach(STREAMING)
        try:
            _, jsep = await session.request_async(
                handle, {"request": "watch", "id": self.mountpoints[channel].id}
            )
            if not jsep or jsep.get("type") != "offer" or not jsep.get("sdp"):
                raise PluginError(0, "the edge sent no offer")
        except BaseException:
            await self.release(handle)
            raise
        return handle, str(jsep["sdp"])

    async def answer(self, handle: int, sdp: str) -> None:
        session = self._require_session()
        # No trickle: the answer carries its candidates (the browser waits for gathering).
        await session.request_async(
            handle, {"request": "start"}, jsep={"type": "answer", "sdp": sdp, "trickle": False}
        )

    async def switch(self, handle: int, channel: str) -> None:
        session = self._require_session()
        # The Streaming plugin's switch: same PeerConnection, no renegotiation.
        data, _ = await session.request_async(
            handle, {"request": "switch", "id": self.mountpoints[channel].id}
        )
        if data.get("result", {}).get("switched") != "ok":
            raise PluginError(0, f"switch not confirmed: {data}")

    async def release(self, handle: int) -> None:
        session = self._session
        if session is None:
            return
        try:
            await session.detach(handle)
        except (httpx.HTTPError, JanusError):
            pass  # the edge forgets it anyway when it restarts or times the session out

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ready": self.ready,
            "sessions_opened": self.sessions_opened,
            "mountpoints_created": self.mountpoints_created,
            "last_error": self.last_error,
        }


def _matches(media: list[JsonObject], port: int) -> bool:
    return (
        len(media) == 1
        and media[0].get("type") == "audio"
        and media[0].get("port") == port
        and media[0].get("pt") == OPUS_PAYLOAD_TYPE
        and media[0].get("codec") == "opus"
    )
