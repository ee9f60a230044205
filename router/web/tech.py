"""The technician's API: status, meters stream, controls, recording, Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from router.control.booths import SeatNotFound
from router.control.limits import LimitReached
from router.control.tokens import Role
from router.monitoring.console import TechConsole
from router.signalling.sdp import SdpError
from router.web.errors import ApiError, error_responses
from router.web.pages import WEB_CLIENT
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
from router.web.whip import CREATED, SDP_BODY, created

router = APIRouter(tags=["Technician"])
AUTH_TIMEOUT = 10.0


def console(request: Request) -> TechConsole:
    return request.app.state.console  # type: ignore[no-any-return]


def technician(request: Request) -> TechConsole:
    require(authenticate(request, runtime(request).tokens), Role.TECHNICIAN)
    return console(request)


class InputGain(BaseModel):
    gain_db: float = Field(0.0, ge=-60.0, le=20.0)
    muted: bool = False


class RecordingSwitch(BaseModel):
    on: bool


@router.get(
    "/api/tech/status",
    summary="Everything a technician needs at a glance (also streamed on the WebSocket)",
    responses=error_responses(401, 403),
)
async def tech_status(request: Request) -> dict[str, Any]:
    return await technician(request).fresh_status()


@router.get(
    "/api/tech/log",
    summary="The event log since a sequence number",
    responses=error_responses(401, 403),
)
async def tech_log(request: Request, since: int = 0) -> list[dict[str, object]]:
    return [e.as_dict() for e in technician(request).log.since(since)]


@router.post(
    "/api/tech/inputs/{source_id}/gain",
    summary="Set an input's gain (dB) and mute",
    openapi_extra=json_body(InputGain),
    responses=error_responses(400, 401, 403, 404, 408, 413, 415),
)
async def tech_input_gain(request: Request, source_id: str) -> dict[str, Any]:
    desk = technician(request)
    body = await read_json(request, InputGain)
    if not runtime(request).engine.has_source(source_id):
        raise ApiError(404, f"no input {source_id!r} is connected")
    desk.set_input_gain(source_id, body.gain_db, body.muted)
    return {"id": source_id, "gain_db": body.gain_db, "muted": body.muted}


@router.post(
    "/api/tech/seats/{booth}/{seat}/off",
    summary="Force a seat off air (its channel falls back to the floor)",
    responses=error_responses(401, 403, 404),
)
async def tech_seat_off(request: Request, booth: str, seat: str) -> dict[str, Any]:
    desk = technician(request)
    rt = runtime(request)
    try:
        state = rt.board.set_mic(booth, seat, False)
    except SeatNotFound as exc:
        raise ApiError(404, str(exc)) from None
    desk.log.add_info("seat", f"{booth}/{seat}", f"technician forced {seat} off air")
    return {"booth": state.booth, "seat": state.seat, "live": state.live}


@router.post(
    "/api/tech/recording",
    summary="Start or stop recording every channel (Ogg/Opus, no re-encode)",
    openapi_extra=json_body(RecordingSwitch),
    responses=error_responses(400, 401, 403, 408, 413, 415),
)
async def tech_recording(request: Request) -> dict[str, Any]:
    desk = technician(request)
    body = await read_json(request, RecordingSwitch)
    if body.on:
        rec = desk.recording.start()
        desk.log.add_info("recording", rec.name, f"recording started: {rec.name}")
    else:
        stopped = desk.recording.stop()
        if stopped is not None:
            desk.log.add_info("recording", stopped.name, f"recording stopped: {stopped.name}")
    return desk.status()["recording"]


@router.get(
    "/api/tech/recordings",
    summary="Recorded sessions and their files",
    responses=error_responses(401, 403),
)
async def tech_recordings(request: Request) -> list[dict[str, object]]:
    return technician(request).recording.sessions()


@router.get(
    "/api/tech/recordings/{session}/{name}",
    summary="Download one recorded channel (Ogg/Opus)",
    response_class=FileResponse,
    responses=error_responses(401, 403, 404),
)
async def tech_recording_file(request: Request, session: str, name: str) -> FileResponse:
    path = technician(request).recording.file(session, name)
    if path is None:
        raise ApiError(404, "no such recording")
    return FileResponse(path, media_type="audio/ogg", filename=f"{session}-{name}")


@router.post(
    "/whep/monitor/{source_id}",
    status_code=201,
    summary="Monitor one input alone, as it arrives (WHEP, technician token)",
    description="Like `POST /whep/{channel}`, for an input (`room`, `panellist:<id>`, "
    "`seat:<booth>:<seat>`, `media`, `rtp:<id>`). End it with `DELETE {Location}`.",
    openapi_extra=SDP_BODY,
    responses={**CREATED, **error_responses(400, 401, 403, 404, 408, 413, 415, 429)},
)
async def tech_monitor(request: Request, source_id: str) -> Response:
    technician(request)
    rt = runtime(request)
    if not rt.engine.has_source(source_id):
        raise ApiError(404, f"no input {source_id!r} is connected")
    offer = await read_sdp(request, rt.config.limits.max_sdp_bytes)
    try:
        session, answer = await rt.peers.monitor(source_id, offer, client_address(request))
    except SdpError as exc:
        raise ApiError(400, str(exc)) from None
    except LimitReached as exc:
        raise too_many(exc) from None
    return created(session, answer, "whep")


@router.get("/tech", include_in_schema=False)
async def tech_page() -> FileResponse:
    return FileResponse(WEB_CLIENT / "tech.html", media_type="text/html")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Token: technician, unless the event sets `[metrics] public = true`.",
    tags=["Monitoring"],
    responses=error_responses(401, 403),
)
async def metrics(request: Request) -> Response:
    if not runtime(request).config.metrics.public:
        technician(request)
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


@router.websocket("/api/tech/ws")
async def tech_stream(ws: WebSocket) -> None:
    """Send {"token": "..."} first; then level frames at 10 Hz and status frames at 1 Hz."""
    await ws.accept()
    rt = ws.app.state.runtime
    try:
        first = await asyncio.wait_for(ws.receive_text(), AUTH_TIMEOUT)
        token = json.loads(first).get("token")
    except (TimeoutError, ValueError, AttributeError, KeyError, WebSocketDisconnect):
        await ws.close(code=1008, reason='send {"token": ...} first')
        return
    who = rt.tokens.identify(token if isinstance(token, str) else None)
    if who is None or who.role != Role.TECHNICIAN:
        await ws.close(code=1008, reason="a technician token is required")
        return
    desk: TechConsole = ws.app.state.console
    queue = desk.subscribe()
    try:
        await ws.send_text(json.dumps({"type": "status", "status": await desk.fresh_status()}))
        while True:
            await ws.send_text(await queue.get())
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        desk.unsubscribe(queue)
        with contextlib.suppress(RuntimeError):
            await ws.close()
