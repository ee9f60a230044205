"""Listener connections: local WHEP, or a Janus edge whose handshake the router proxies.

With edges configured the edge makes the offer (Janus Streaming "watch"), the browser answers
through us ("start"), and a language switch is the plugin's "switch" on the same connection.
The browser never sees an edge's API or secrets, only a lease id.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from router.control.tokens import Role
from router.edges.pool import EdgePool, EdgeRequestFailed, LeaseNotFound, NoEdgeAvailable
from router.signalling.sdp import SdpError, check_audio_offer
from router.signalling.turn import browser_ice_servers
from router.web.api import IceServerInfo
from router.web.errors import ApiError, error_responses
from router.web.requests import (
    authenticate,
    json_body,
    read_json,
    read_sdp,
    require,
    runtime,
)

router = APIRouter(prefix="/api/listen", tags=["Listeners through edges"])

RETRY_AFTER = {"Retry-After": "5"}


class ListenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(description="the channel to hear", examples=["fr"])


class ListenChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(description="the channel to hear now", examples=["es"])


class Connection(BaseModel):
    mode: Literal["whep", "edge"] = Field(
        description='"whep": POST your offer to `whep`; "edge": answer `offer`, POST it to '
        "`{session}/answer`"
    )
    channel: str
    whep: str | None = Field(default=None, description="mode whep: the WHEP endpoint")
    session: str | None = Field(default=None, description="mode edge: this listener's resource")
    offer: str | None = Field(default=None, description="mode edge: the edge's SDP offer")
    ice_servers: list[IceServerInfo] = Field(description="for the browser's RTCPeerConnection")


class EdgeChannelNow(BaseModel):
    channel: str


def _pool(request: Request) -> EdgePool:
    return request.app.state.edges  # type: ignore[no-any-return]


def _ice(request: Request) -> list[IceServerInfo]:
    return [IceServerInfo(**s.model_dump()) for s in browser_ice_servers(runtime(request).config)]


def _channel_or_404(request: Request, channel: str) -> None:
    channels = runtime(request).config.channels
    if channel not in channels:
        raise ApiError(404, f"unknown channel {channel!r} (channels: {', '.join(channels)})")


@router.post(
    "",
    summary="Ask for a listener connection: local WHEP, or an edge's offer",
    description='Body: `{"channel": "fr"}`; the listener token when the event requires one. '
    'Without edges: `{"mode": "whep", "whep": "/whep/fr"}` (use WHEP as usual). With edges: '
    '`201 {"mode": "edge", "session", "offer"}`: the least loaded edge\'s SDP offer; send the '
    "answer (complete, no trickle) to `POST {session}/answer` within 30 s.",
    openapi_extra=json_body(ListenRequest),
    responses=error_responses(400, 401, 404, 413, 415, 503),
    response_model_exclude_none=True,
)
async def listen(request: Request, response: Response) -> Connection:
    rt = runtime(request)
    if rt.tokens.listener_token_required:
        authenticate(request, rt.tokens)
    choice = await read_json(request, ListenRequest)
    _channel_or_404(request, choice.channel)
    ice = _ice(request)
    pool = _pool(request)
    if not pool.enabled:
        return Connection(
            mode="whep", channel=choice.channel, whep=f"/whep/{choice.channel}", ice_servers=ice
        )
    try:
        lease, offer = await pool.open(choice.channel)
    except (NoEdgeAvailable, EdgeRequestFailed) as exc:
        raise ApiError(503, str(exc), RETRY_AFTER) from None
    response.status_code = 201
    return Connection(
        mode="edge",
        channel=lease.channel,
        session=f"/api/listen/sessions/{lease.id}",
        offer=offer,
        ice_servers=ice,
    )


@router.post(
    "/sessions/{lease_id}/answer",
    summary="The browser's SDP answer to an edge's offer",
    description="Body: the complete SDP answer as `application/sdp` (gathering finished).",
    responses=error_responses(400, 404, 413, 415, 503),
)
async def answer(request: Request, lease_id: str) -> EdgeChannelNow:
    pool = _pool(request)
    try:
        pool.get(lease_id)
    except LeaseNotFound:
        raise ApiError(404, "no such listener session") from None
    sdp = await read_sdp(request, runtime(request).config.limits.max_sdp_bytes)
    try:
        check_audio_offer(sdp)
    except SdpError as exc:
        raise ApiError(400, str(exc).replace("offer", "answer")) from None
    try:
        lease = await pool.answer(lease_id, sdp)
    except LeaseNotFound:
        raise ApiError(404, "no such listener session") from None
    except EdgeRequestFailed as exc:
        raise ApiError(503, str(exc), RETRY_AFTER) from None
    return EdgeChannelNow(channel=lease.channel)


@router.post(
    "/sessions/{lease_id}/channel",
    summary="Switch an edge listener's channel on the same connection",
    description='Body: `{"channel": "es"}`. The edge switches mountpoints (Janus Streaming '
    '"switch"): no renegotiation.',
    openapi_extra=json_body(ListenChoice),
    responses=error_responses(400, 404, 413, 415, 503),
)
async def switch(request: Request, lease_id: str) -> EdgeChannelNow:
    choice = await read_json(request, ListenChoice)
    _channel_or_404(request, choice.channel)
    try:
        lease = await _pool(request).switch(lease_id, choice.channel)
    except LeaseNotFound:
        raise ApiError(404, "no such listener session") from None
    except EdgeRequestFailed as exc:
        raise ApiError(503, str(exc), RETRY_AFTER) from None
    return EdgeChannelNow(channel=lease.channel)


@router.delete(
    "/sessions/{lease_id}",
    status_code=204,
    summary="Stop listening through the edge",
    responses=error_responses(404),
)
async def stop(request: Request, lease_id: str) -> Response:
    try:
        await _pool(request).release(lease_id)
    except LeaseNotFound:
        raise ApiError(404, "no such listener session") from None
    return Response(status_code=204)


class EdgeStatus(BaseModel):
    id: str
    ready: bool
    listeners: int
    sessions_opened: int = Field(description="Janus sessions opened: 1, plus one per edge restart")
    mountpoints_created: int
    rtp_sent: int
    rtp_dropped: int
    last_error: str


class EdgesStatus(BaseModel):
    edges: list[EdgeStatus]
    channels: dict[str, int] = Field(description="listeners per channel over all edges")


@router.get(
    "/edges",
    summary="The edges: ready or not, listeners, RTP sent (technician)",
    responses=error_responses(401, 403),
)
async def edges_status(request: Request) -> EdgesStatus:
    require(authenticate(request, runtime(request).tokens), Role.TECHNICIAN)
    pool = _pool(request)
    return EdgesStatus(
        edges=[EdgeStatus(**e) for e in pool.status()],
        channels=pool.channel_counts() if pool.enabled else {},
    )
