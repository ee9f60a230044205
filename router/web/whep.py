"""WHEP listeners: one connection per listener, switched between channels without renegotiation."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from router.media.engine import UnknownChannel
from router.signalling.peers import SessionKind, SessionNotFound
from router.signalling.sdp import SdpError
from router.web.errors import ApiError, error_responses
from router.web.requests import authenticate, read_json, read_sdp, runtime
from router.web.whip import CREATED, SDP_BODY, created

router = APIRouter(tags=["WHEP listeners"])


class ChannelChoice(BaseModel):
    channel: str


class ChannelNow(BaseModel):
    channel: str


def _channel_or_404(request: Request, channel: str) -> None:
    if channel not in runtime(request).config.channels:
        known = ", ".join(runtime(request).config.channels)
        raise ApiError(404, f"unknown channel {channel!r} (channels: {known})")


@router.post(
    "/whep/{channel}",
    status_code=201,
    summary="Listen to a channel",
    description="Body: an SDP offer receiving audio (Opus). When the event requires a listener "
    "token, send it as a bearer token. Switch channels later with `POST {Location}/channel`.",
    openapi_extra=SDP_BODY,
    responses={**CREATED, **error_responses(400, 401, 404, 413, 415, 503)},
)
async def whep_listen(request: Request, channel: str) -> Response:
    rt = runtime(request)
    if rt.tokens.listener_token_required:
        authenticate(request, rt.tokens)  # any valid token: staff may listen too
    _channel_or_404(request, channel)
    offer = await read_sdp(request, rt.config.limits.max_sdp_bytes)
    if rt.peers.count(SessionKind.LISTENER) >= rt.config.limits.max_listeners:
        raise ApiError(503, "this server has reached its listener limit", {"Retry-After": "10"})
    try:
        session, answer = await rt.peers.listen(channel, offer)
    except SdpError as exc:
        raise ApiError(400, str(exc)) from None
    return created(session, answer, "whep")


@router.post(
    "/whep/sessions/{session_id}/channel",
    summary="Switch a listener to another channel on the same connection",
    responses=error_responses(400, 404, 413, 415),
)
async def whep_switch(request: Request, session_id: str) -> ChannelNow:
    choice = await read_json(request, ChannelChoice)
    _channel_or_404(request, choice.channel)
    rt = runtime(request)
    try:
        session = rt.peers.get(session_id)
        if session.kind != SessionKind.LISTENER:
            raise SessionNotFound(session_id)
        rt.peers.switch(session_id, choice.channel)
    except (SessionNotFound, UnknownChannel):
        raise ApiError(404, "no such listener session") from None
    return ChannelNow(channel=choice.channel)


@router.delete(
    "/whep/sessions/{session_id}",
    status_code=204,
    summary="Stop listening (the WHEP resource)",
    responses=error_responses(404),
)
async def whep_delete(request: Request, session_id: str) -> Response:
    rt = runtime(request)
    try:
        session = rt.peers.get(session_id)
    except SessionNotFound:
        raise ApiError(404, "no such session") from None
    if session.kind != SessionKind.LISTENER:
        raise ApiError(404, "no such listener session")
    await rt.peers.close(session_id)
    return Response(status_code=204)
