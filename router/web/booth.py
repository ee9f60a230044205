"""The interpreter booth console's API: actions on a seat, chat, and the booth's state stream.

Every action answers with the booth's full state; the WebSocket pushes the same full state on
every change (level-triggered), so a console that reconnects is right at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from router.control.booths import TECHNICIAN, MicRefused, Output, SeatNotFound
from router.control.tokens import Principal, Role
from router.monitoring.alarms import Severity
from router.runtime import EventRuntime
from router.web.errors import ApiError, error_responses
from router.web.pages import WEB_CLIENT
from router.web.requests import authenticate, json_body, read_json, runtime

router = APIRouter(tags=["Booth console"])
AUTH_TIMEOUT = 10.0
REFRESH_SECONDS = 1.0  # audiences change without a board change: look again this often
SEAT_ERRORS = error_responses(400, 401, 403, 404, 409, 413, 415)


class HandoverAction(StrEnum):
    REQUEST = "request"
    ACCEPT = "accept"
    CANCEL = "cancel"
    TAKE_OVER = "take_over"


class HandoverRequest(BaseModel):
    action: HandoverAction


class CoughRequest(BaseModel):
    held: bool


class OutputRequest(BaseModel):
    output: Output


class SourceRequest(BaseModel):
    source: str = Field(max_length=40, description='"floor", "auto" or a channel id (relay)')


class ReturnRequest(BaseModel):
    volume_db: float | None = Field(None, ge=-40.0, le=12.0)
    bass_db: float | None = Field(None, ge=-12.0, le=12.0)
    treble_db: float | None = Field(None, ge=-12.0, le=12.0)
    partner_db: float | None = Field(None, ge=-60.0, le=0.0, description="-60 is off")


class SlowDownRequest(BaseModel):
    on: bool


class ChatRequest(BaseModel):
    text: str = Field(min_length=1, max_length=500)
    seat: str | None = Field(None, description="the sender's seat (booth tokens)")


class AutoRelayRequest(BaseModel):
    on: bool


def booth_view(request: Request | WebSocket, booth: str) -> dict[str, Any]:
    """The booth's state plus what the board does not hold: listeners per channel."""
    rt: EventRuntime = request.app.state.runtime
    state = rt.board.booth_state(booth)
    state["audience"] = request.app.state.console.listeners_per_channel()
    return state


def _member(request: Request, booth: str) -> Principal:
    """The booth's own token, or a technician's."""
    rt = runtime(request)
    principal = authenticate(request, rt.tokens)
    if not rt.board.has_booth(booth):
        raise ApiError(404, f"unknown booth {booth!r}")
    if principal.role == Role.TECHNICIAN:
        return principal
    if principal.role != Role.BOOTH or principal.booth != booth:
        raise ApiError(403, f"this token does not grant booth {booth!r}")
    return principal


def _seat(request: Request, booth: str, seat: str) -> None:
    """A seat's own actions: its booth's token (or a technician), and a seat that exists."""
    _member(request, booth)
    try:
        runtime(request).board.seat(booth, seat)
    except SeatNotFound as exc:
        raise ApiError(404, str(exc)) from None


def _log(request: Request, severity: Severity, kind: str, subject: str, text: str) -> None:
    request.app.state.console.log.add(severity, kind, subject, text)


@router.get("/booth/{booth}/{seat}", include_in_schema=False)
async def booth_page(booth: str, seat: str) -> FileResponse:
    # The page asks /api/booths/{booth} with its token; an unknown booth or seat is shown there.
    return FileResponse(WEB_CLIENT / "booth.html", media_type="text/html")


@router.get(
    "/api/booths/{booth}",
    summary="A booth's full state: seats, live, outputs, sources, handover, chat, audiences",
    description="Token: the booth's or a technician's. The same object is pushed on the booth "
    "WebSocket at every change.",
    responses=error_responses(401, 403, 404),
)
async def booth_state(request: Request, booth: str) -> dict[str, Any]:
    _member(request, booth)
    return booth_view(request, booth)


async def _act(request: Request, booth: str, seat: str, action: Any) -> dict[str, Any]:
    _seat(request, booth, seat)
    try:
        action()
    except MicRefused as exc:
        raise ApiError(409, str(exc)) from None
    return booth_view(request, booth)


@router.post(
    "/api/booths/{booth}/seats/{seat}/handover",
    summary="Hand the mic over: request, accept, cancel (or decline), take over",
    description='`{"action": "request"}` by the live seat offers the mic to a partner; by an '
    "idle seat it asks the live partner for it. `accept` by the other side switches at the next "
    "tick with a 40 ms crossfade. `take_over` takes the mic at once when the live partner "
    "offered it or their mic is off (cough held). 409 with the reason when refused.",
    openapi_extra=json_body(HandoverRequest),
    responses=SEAT_ERRORS,
)
async def seat_handover(request: Request, booth: str, seat: str) -> dict[str, Any]:
    _seat(request, booth, seat)
    body = await read_json(request, HandoverRequest)
    board = runtime(request).board
    act = {
        HandoverAction.REQUEST: board.request_handover,
        HandoverAction.ACCEPT: board.accept_handover,
        HandoverAction.CANCEL: board.cancel_handover,
        HandoverAction.TAKE_OVER: board.take_over,
    }[body.action]
    return await _act(request, booth, seat, lambda: act(booth, seat))


@router.post(
    "/api/booths/{booth}/seats/{seat}/cough",
    summary="Cough key: mute while held (the channel carries silence, not the floor)",
    description='`{"held": true}` on press, `{"held": false}` on release. The seat stays live. '
    "A console whose state WebSocket closes releases its cough.",
    openapi_extra=json_body(CoughRequest),
    responses=SEAT_ERRORS,
)
async def seat_cough(request: Request, booth: str, seat: str) -> dict[str, Any]:
    _seat(request, booth, seat)
    body = await read_json(request, CoughRequest)
    board = runtime(request).board
    return await _act(request, booth, seat, lambda: board.set_cough(booth, seat, body.held))


@router.post(
    "/api/booths/{booth}/seats/{seat}/output",
    summary="Output A (the booth's channel) or B (its retour channel)",
    description="While live, the voice moves to the other channel under the same interlock "
    "(409 when that channel is held).",
    openapi_extra=json_body(OutputRequest),
    responses=SEAT_ERRORS,
)
async def seat_output(request: Request, booth: str, seat: str) -> dict[str, Any]:
    _seat(request, booth, seat)
    body = await read_json(request, OutputRequest)
    board = runtime(request).board
    return await _act(request, booth, seat, lambda: board.set_output(booth, seat, body.output))


@router.post(
    "/api/booths/{booth}/seats/{seat}/source",
    summary="What the seat hears: floor, auto (floor or relay by floor language), or a channel",
    openapi_extra=json_body(SourceRequest),
    responses=SEAT_ERRORS,
)
async def seat_source(request: Request, booth: str, seat: str) -> dict[str, Any]:
    _seat(request, booth, seat)
    body = await read_json(request, SourceRequest)
    board = runtime(request).board
    try:
        board.set_source(booth, seat, body.source)
    except MicRefused as exc:
        raise ApiError(400, str(exc)) from None
    return booth_view(request, booth)


@router.post(
    "/api/booths/{booth}/seats/{seat}/return",
    summary="The seat's headphone feed: volume, bass, treble (dB), partner level (dB)",
    description="Only the given fields change. The feed always ends in a limiter with a "
    "-6 dBFS ceiling.",
    openapi_extra=json_body(ReturnRequest),
    responses=SEAT_ERRORS,
)
async def seat_return(request: Request, booth: str, seat: str) -> dict[str, Any]:
    _seat(request, booth, seat)
    body = await read_json(request, ReturnRequest)
    runtime(request).board.set_return(booth, seat, **body.model_dump())
    return booth_view(request, booth)


@router.post(
    "/api/booths/{booth}/seats/{seat}/slow-down",
    summary="Ask the speaker (through the technician) to slow down, or withdraw the request",
    openapi_extra=json_body(SlowDownRequest),
    responses=SEAT_ERRORS,
)
async def seat_slow_down(request: Request, booth: str, seat: str) -> dict[str, Any]:
    _seat(request, booth, seat)
    body = await read_json(request, SlowDownRequest)
    runtime(request).board.set_slow_down(booth, seat, body.on)
    if body.on:
        text = f"booth {booth} ({seat}) asks the speaker to slow down"
        _log(request, Severity.WARNING, "slow_down", f"{booth}/{seat}", text)
    return booth_view(request, booth)


@router.post(
    "/api/booths/{booth}/chat",
    summary="Send a chat message to the booth (its seats and the technicians)",
    description='Booth token: `{"text": "...", "seat": "fr1"}`; technician token: `{"text": '
    '"..."}`. Messages appear in the booth state (the last 50).',
    openapi_extra=json_body(ChatRequest),
    responses=error_responses(400, 401, 403, 404, 413, 415),
)
async def booth_chat(request: Request, booth: str) -> dict[str, Any]:
    principal = _member(request, booth)
    body = await read_json(request, ChatRequest)
    board = runtime(request).board
    if principal.role == Role.TECHNICIAN:
        sender = TECHNICIAN
    else:
        if body.seat is None:
            raise ApiError(400, "seat: say which seat sends the message")
        try:
            board.seat(booth, body.seat)
        except SeatNotFound as exc:
            raise ApiError(404, str(exc)) from None
        sender = body.seat
    try:
        board.chat(booth, sender, body.text)
    except ValueError as exc:
        raise ApiError(400, f"text: {exc}") from None
    if sender != TECHNICIAN:
        _log(request, Severity.INFO, "chat", f"{booth}/{sender}", f"{booth}/{sender}: {body.text}")
    return booth_view(request, booth)


@router.post(
    "/api/tech/auto-relay",
    summary="Auto-relay on or off (seats on `auto` hear the pivot booth, or the floor)",
    openapi_extra=json_body(AutoRelayRequest),
    responses=error_responses(400, 401, 403, 413, 415),
    tags=["Technician"],
)
async def tech_auto_relay(request: Request) -> dict[str, bool]:
    rt = runtime(request)
    principal = authenticate(request, rt.tokens)
    if principal.role != Role.TECHNICIAN:
        raise ApiError(403, "this token does not grant the technician role")
    body = await read_json(request, AutoRelayRequest)
    rt.board.set_auto_relay(body.on)
    _log(request, Severity.INFO, "relay", "auto", f"auto-relay {'on' if body.on else 'off'}")
    return {"auto_relay": body.on}


@router.websocket("/api/booths/{booth}/ws")
async def booth_stream(ws: WebSocket, booth: str) -> None:
    """Send {"token": "...", "seat": "fr1"} first (seat optional, technicians omit it); then
    the booth's full state at every change, and at least when the audience changes."""
    await ws.accept()
    rt: EventRuntime = ws.app.state.runtime
    try:
        first = json.loads(await asyncio.wait_for(ws.receive_text(), AUTH_TIMEOUT))
        token, seat = first.get("token"), first.get("seat")
    except (TimeoutError, ValueError, AttributeError, WebSocketDisconnect):
        await ws.close(code=1008, reason='send {"token": ...} first')
        return
    who = rt.tokens.identify(token if isinstance(token, str) else None)
    allowed = who is not None and (
        who.role == Role.TECHNICIAN or (who.role == Role.BOOTH and who.booth == booth)
    )
    if not allowed or not rt.board.has_booth(booth):
        await ws.close(code=1008, reason="this booth's token or a technician token is required")
        return
    seat_id = seat if isinstance(seat, str) and _is_seat(rt, booth, seat) else None
    sender = asyncio.create_task(_push_states(ws, rt, booth))
    receiver = asyncio.create_task(_until_closed(ws))
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, receiver):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
        if seat_id is not None:
            # A held cough key whose console vanished must not mute the channel for good.
            with contextlib.suppress(MicRefused, SeatNotFound):
                rt.board.set_cough(booth, seat_id, False)
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await ws.close()


async def _push_states(ws: WebSocket, rt: EventRuntime, booth: str) -> None:
    sent = ""
    seen = -1
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REFRESH_SECONDS):
                seen = await rt.board.wait_change(seen)
        text = json.dumps({"type": "state", "state": booth_view(ws, booth)})
        if text != sent:  # level-triggered: the whole state, only when it differs
            await ws.send_text(text)
            sent = text


async def _until_closed(ws: WebSocket) -> None:
    # The console sends nothing after its token; reading is how a vanished one is noticed.
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await ws.receive_text()


def _is_seat(rt: EventRuntime, booth: str, seat: str) -> bool:
    try:
        rt.board.seat(booth, seat)
    except SeatNotFound:
        return False
    return True
