"""WHEP listeners: one connection per listener, switched between channels without renegotiation."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from router.control.limits import LimitReached
from router.media.engine import UnknownChannel
from router.signalling.peers import NoUnderneathTrack, SessionKind, SessionNotFound
from router.signalling.sdp import SdpError
from router.web.errors import ApiError, error_responses
from router.web.requests import (
    authenticate,
    client_address,
    json_body,
    read_json,
    read_sdp,
    runtime,
    too_many,
)
from router.web.whip import CREATED, SDP_BODY, created

router = APIRouter(tags=["WHEP listeners"])


class ChannelChoice(BaseModel):
    """What a listener wants now; at least one field."""

    model_config = ConfigDict(extra="forbid")

    channel: str | None = Field(default=None, description="the channel to hear", examples=["es"])
    underneath: StrictBool | None = Field(
        default=None,
        description="the original on the second audio track (the offer must have had two "
        "audio m-lines); false: the channel as the event mixes it, on the first track only",
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> ChannelChoice:
        if self.channel is None and self.underneath is None:
            raise ValueError('give "channel", "underneath" or both')
        return self


class ChannelNow(BaseModel):
    channel: str
    underneath: bool | None = Field(
        default=None, description="only for a session with two tracks (two audio m-lines)"
    )


def _channel_or_404(request: Request, channel: str) -> None:
    if channel not in runtime(request).config.channels:
        known = ", ".join(runtime(request).config.channels)
        raise ApiError(404, f"unknown channel {channel!r} (channels: {known})")


@router.post(
    "/whep/{channel}",
    status_code=201,
    summary="Listen to a channel",
    description="Body: an SDP offer receiving audio (Opus). When the event requires a listener "
    "token, send it as a bearer token. Switch channels later with `POST {Location}/channel`.\n\n"
    "An offer with **two** recvonly audio m-lines also gets the original underneath: with "
    "`underneath` on, the first track carries the live interpreter alone and the second the "
    "floor (only while an interpreter is live on the channel), to be mixed by the client. With "
    "it off (the default) the first track carries the channel as the event mixes it and the "
    "second gets no packets. A one-m-line offer gets one track, the channel.",
    openapi_extra=SDP_BODY,
    responses={**CREATED, **error_responses(400, 401, 404, 408, 413, 415, 429)},
)
async def whep_listen(
    request: Request,
    channel: str,
    underneath: bool = Query(
        False, description="start with the original underneath on (needs two audio m-lines)"
    ),
) -> Response:
    rt = runtime(request)
    if rt.tokens.listener_token_required:
        authenticate(request, rt.tokens)  # any valid token: staff may listen too
    _channel_or_404(request, channel)
    offer = await read_sdp(request, rt.config.limits.max_sdp_bytes)
    try:
        session, answer = await rt.peers.listen(
            channel, offer, underneath, client=client_address(request)
        )
    except (SdpError, NoUnderneathTrack) as exc:
        raise ApiError(400, str(exc)) from None
    except LimitReached as exc:
        raise too_many(exc) from None
    return created(session, answer, "whep")


@router.post(
    "/whep/sessions/{session_id}/channel",
    summary="Switch a listener's channel or the original underneath, on the same connection",
    description='Body: `{"channel": "es"}`, `{"underneath": true}` or both. The next 20 ms '
    "packet follows the new choice, with continuous RTP timestamps; no renegotiation. "
    "`underneath` needs a session whose offer had two audio m-lines (400 otherwise).",
    openapi_extra=json_body(ChannelChoice),
    responses=error_responses(400, 404, 408, 413, 415),
    response_model_exclude_none=True,
)
async def whep_switch(request: Request, session_id: str) -> ChannelNow:
    choice = await read_json(request, ChannelChoice)
    if choice.channel is not None:
        _channel_or_404(request, choice.channel)
    rt = runtime(request)
    try:
        session = rt.peers.get(session_id)
        if session.kind != SessionKind.LISTENER:
            raise SessionNotFound(session_id)
        channel, underneath = rt.peers.switch(session_id, choice.channel, choice.underneath)
    except (SessionNotFound, UnknownChannel):
        raise ApiError(404, "no such listener session") from None
    except NoUnderneathTrack as exc:
        raise ApiError(400, str(exc)) from None
    # A one-track session answers exactly as before the second track existed.
    return ChannelNow(channel=channel, underneath=underneath if session.under else None)


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
    if session.kind not in (SessionKind.LISTENER, SessionKind.MONITOR):
        raise ApiError(404, "no such listener session")
    await rt.peers.close(session_id)
    return Response(status_code=204)
