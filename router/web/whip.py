"""WHIP (RFC 9725) publishers: the floor, remote panellists and interpreter seats."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from router.control.booths import SeatNotFound, seat_source_id
from router.control.limits import LimitReached
from router.control.tokens import Principal, Role
from router.media.engine import Feed, SourceRole
from router.media.mixer import FLOOR
from router.runtime import EventRuntime
from router.signalling.peers import Session, SessionKind, SessionNotFound
from router.signalling.sdp import SdpError
from router.web.errors import ApiError, error_responses
from router.web.requests import (
    authenticate,
    client_address,
    json_body,
    read_json,
    read_sdp,
    require,
    runtime,
    too_many,
)

router = APIRouter(tags=["WHIP publishers"])

SDP_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/sdp": {"schema": {"type": "string"}}},
    }
}
CREATED = {
    201: {
        "description": "Session created; the body is the SDP answer, `Location` names the session",
        "content": {"application/sdp": {"schema": {"type": "string"}}},
    }
}


def created(session: Session, answer: str, prefix: str) -> Response:
    return Response(
        content=answer,
        status_code=201,
        media_type="application/sdp",
        headers={"Location": f"/{prefix}/sessions/{session.id}"},
    )


async def publish(
    request: Request,
    kind: SessionKind,
    source_id: str,
    role: SourceRole,
    return_feed: Feed | None,
    principal: Principal,
) -> Response:
    rt = runtime(request)
    offer = await read_sdp(request, rt.config.limits.max_sdp_bytes)
    on_close = None
    if kind == SessionKind.SEAT:
        booth, seat = source_id.split(":")[1:]

        def on_close(_: Session) -> None:
            rt.board.set_connected(booth, seat, False)

    try:
        session, answer = await rt.peers.publish(
            kind,
            source_id,
            role,
            offer,
            return_feed,
            on_close,
            owner=principal,
            client=client_address(request),
        )
    except SdpError as exc:
        raise ApiError(400, str(exc)) from None
    except LimitReached as exc:
        raise too_many(exc) from None
    if kind == SessionKind.SEAT:
        rt.board.set_connected(booth, seat, True)
        if session.outgoing is not None:  # what the seat hears: its source choice, its settings
            rt.board.attach_return(booth, seat, session.outgoing)
    return created(session, answer, "whip")


class ListenChoice(BaseModel):
    channel: str


class ListeningTo(BaseModel):
    channel: str


def room_return(rt: EventRuntime) -> Feed:
    """What the room's loudspeakers play: the floor without anything picked up in the room
    (the desk feed, and RTP inputs marked in_room), so the room never hears itself twice."""
    room = rt.room_sources
    return Feed(FLOOR, minus=next(iter(room)) if len(room) == 1 else room)


def panellist_return(rt: EventRuntime, source: str, channel: str) -> Feed:
    """A panellist hears the floor or a language channel, never their own voice in either."""
    if channel not in rt.config.channels:
        known = ", ".join(rt.config.channels)
        raise ApiError(404, f"unknown channel {channel!r} (channels: {known})")
    return Feed(channel, minus=source)


@router.post(
    "/whip/floor",
    status_code=201,
    summary="Publish the floor (the room's sound-desk feed); the answer carries the room return",
    description="Body: an SDP offer with audio (Opus), sendrecv to play the room return: the "
    "remote panellists and media for the room's loudspeakers, never the room itself. Token: "
    "the floor role. A new floor publisher replaces the previous one.",
    openapi_extra=SDP_BODY,
    responses={**CREATED, **error_responses(400, 401, 403, 408, 413, 415, 429)},
)
async def whip_floor(request: Request) -> Response:
    rt = runtime(request)
    principal = authenticate(request, rt.tokens)
    require(principal, Role.FLOOR)
    return await publish(
        request, SessionKind.FLOOR, "room", SourceRole.ROOM, room_return(rt), principal
    )


@router.post(
    "/whip/panellist/{panellist_id}",
    status_code=201,
    summary="Publish a remote panellist; the answer carries the floor without their own voice",
    description="`?listen=ne` returns a language channel instead of the floor (still without "
    "their own voice); switch later with `POST /whip/sessions/{id}/listen`.",
    openapi_extra=SDP_BODY,
    responses={**CREATED, **error_responses(400, 401, 403, 404, 408, 413, 415, 429)},
)
async def whip_panellist(
    request: Request,
    panellist_id: str,
    listen: str = Query(FLOOR, description="the channel the panellist hears"),
) -> Response:
    rt = runtime(request)
    principal = authenticate(request, rt.tokens)
    require(principal, Role.PANELLIST)
    if panellist_id not in rt.config.panellists:
        raise ApiError(404, f"unknown panellist {panellist_id!r}")
    source = f"panellist:{panellist_id}"
    feed = panellist_return(rt, source, listen)
    return await publish(
        request, SessionKind.PANELLIST, source, SourceRole.PANELLIST, feed, principal
    )


@router.post(
    "/whip/booth/{booth}/{seat}",
    status_code=201,
    summary="Publish an interpreter seat; the answer carries what the seat hears",
    description="The seat is connected but not live: turn its mic on with the mic endpoint. "
    "Its return feed is its chosen source (floor, auto or a relay channel, see "
    "`/api/booths/{booth}/seats/{seat}/source`), never its own voice, with its booth partners "
    "low, its volume and tone, and a limiter.",
    openapi_extra=SDP_BODY,
    responses={**CREATED, **error_responses(400, 401, 403, 404, 408, 413, 415, 429)},
)
async def whip_seat(request: Request, booth: str, seat: str) -> Response:
    rt = runtime(request)
    principal = authenticate(request, rt.tokens)
    if not rt.board.has_booth(booth):
        raise ApiError(404, f"unknown booth {booth!r}")
    require(principal, Role.BOOTH, booth)
    try:
        rt.board.seat(booth, seat)
    except SeatNotFound as exc:
        raise ApiError(404, str(exc)) from None
    source = seat_source_id(booth, seat)
    feed = Feed(FLOOR, minus=source)
    return await publish(request, SessionKind.SEAT, source, SourceRole.SEAT, feed, principal)


@router.post(
    "/whip/sessions/{session_id}/listen",
    summary="Choose what a panellist hears: the floor or a language channel",
    description='Body: `{"channel": "ne"}`. Token: the one that created the session, or a '
    "technician. Takes effect at the next 20 ms packet, on the same connection; the panellist's "
    "own voice is never in it.",
    openapi_extra=json_body(ListenChoice),
    responses=error_responses(400, 401, 403, 404, 408, 413, 415),
)
async def whip_listen(request: Request, session_id: str) -> ListeningTo:
    rt = runtime(request)
    principal = authenticate(request, rt.tokens)
    choice = await read_json(request, ListenChoice)
    try:
        session = rt.peers.get(session_id)
    except SessionNotFound:
        raise ApiError(404, "no such session") from None
    if session.kind != SessionKind.PANELLIST or session.outgoing is None:
        raise ApiError(404, "no such panellist session")
    if principal != session.owner and principal.role != Role.TECHNICIAN:
        raise ApiError(403, "this token did not create that session")
    assert session.source_id is not None
    rt.engine.subscribe(session.outgoing, panellist_return(rt, session.source_id, choice.channel))
    return ListeningTo(channel=choice.channel)


@router.delete(
    "/whip/sessions/{session_id}",
    status_code=204,
    summary="End a publisher session (the WHIP resource)",
    responses=error_responses(401, 403, 404),
)
async def whip_delete(request: Request, session_id: str) -> Response:
    rt = runtime(request)
    principal = authenticate(request, rt.tokens)
    try:
        session = rt.peers.get(session_id)
    except SessionNotFound:
        raise ApiError(404, "no such session") from None
    if session.kind == SessionKind.LISTENER or (
        principal != session.owner and principal.role != Role.TECHNICIAN
    ):
        raise ApiError(403, "this token did not create that session")
    await rt.peers.close(session_id)
    return Response(status_code=204)
