"""WHIP (RFC 9725) publishers: the floor, remote panellists and interpreter seats."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from router.control.booths import SeatNotFound, seat_source_id
from router.control.tokens import Principal, Role
from router.media.engine import Feed, SourceRole
from router.media.mixer import FLOOR
from router.signalling.peers import Session, SessionKind, SessionNotFound
from router.signalling.sdp import SdpError
from router.web.errors import ApiError, error_responses
from router.web.requests import authenticate, read_sdp, require, runtime

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
            kind, source_id, role, offer, return_feed, on_close, owner=principal
        )
    except SdpError as exc:
        raise ApiError(400, str(exc)) from None
    if kind == SessionKind.SEAT:
        rt.board.set_connected(booth, seat, True)
    return created(session, answer, "whip")


@router.post(
    "/whip/floor",
    status_code=201,
    summary="Publish the floor (the room's sound-desk feed)",
    description="Body: an SDP offer with audio (Opus). Token: the floor role. A new floor "
    "publisher replaces the previous one.",
    openapi_extra=SDP_BODY,
    responses={**CREATED, **error_responses(400, 401, 403, 413, 415)},
)
async def whip_floor(request: Request) -> Response:
    principal = authenticate(request, runtime(request).tokens)
    require(principal, Role.FLOOR)
    return await publish(request, SessionKind.FLOOR, "room", SourceRole.ROOM, None, principal)


@router.post(
    "/whip/panellist/{panellist_id}",
    status_code=201,
    summary="Publish a remote panellist; the answer carries the floor without their own voice",
    openapi_extra=SDP_BODY,
    responses={**CREATED, **error_responses(400, 401, 403, 404, 413, 415)},
)
async def whip_panellist(request: Request, panellist_id: str) -> Response:
    rt = runtime(request)
    principal = authenticate(request, rt.tokens)
    require(principal, Role.PANELLIST)
    if panellist_id not in rt.config.panellists:
        raise ApiError(404, f"unknown panellist {panellist_id!r}")
    source = f"panellist:{panellist_id}"
    feed = Feed(FLOOR, minus=source)
    return await publish(
        request, SessionKind.PANELLIST, source, SourceRole.PANELLIST, feed, principal
    )


@router.post(
    "/whip/booth/{booth}/{seat}",
    status_code=201,
    summary="Publish an interpreter seat; the answer carries what the seat hears (the floor)",
    description="The seat is connected but not live: turn its mic on with the mic endpoint. "
    "Its return feed never contains its own voice.",
    openapi_extra=SDP_BODY,
    responses={**CREATED, **error_responses(400, 401, 403, 404, 413, 415)},
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
