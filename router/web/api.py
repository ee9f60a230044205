"""The event's public description, seat mic control and health."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from router.control.booths import MicRefused, SeatNotFound, seat_source_id
from router.control.tokens import Role
from router.signalling.peers import SessionKind
from router.signalling.turn import browser_ice_servers
from router.web.errors import ApiError, error_responses
from router.web.requests import authenticate, json_body, read_json, require, runtime

router = APIRouter(prefix="/api", tags=["API"])


class ChannelInfo(BaseModel):
    id: str
    name: str
    language: str | None


class IceServerInfo(BaseModel):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class EventInfo(BaseModel):
    name: str
    venue: str
    starts: str
    floor_language: str | None
    listener_token_required: bool
    channels: list[ChannelInfo]
    ice_servers: list[IceServerInfo]
    # True: listeners connect through Janus edges (POST /api/listen), not /whep directly.
    edges: bool = False


class MicRequest(BaseModel):
    on: bool


class SeatInfo(BaseModel):
    booth: str
    seat: str
    channel: str
    connected: bool
    live: bool


class ChannelStatus(BaseModel):
    live_seat: bool
    listeners: int


class EventStatus(BaseModel):
    started: bool
    channels: dict[str, ChannelStatus]


class Health(BaseModel):
    ok: bool
    ticks: int
    late_ticks: int
    engine_errors: int
    tick_cpu_seconds: float = Field(
        description="CPU spent inside engine ticks since start: mixing, encoding, fan-out"
    )
    listeners: int
    publishers: int


@router.get("/event", summary="The public description of the event, used by the pages")
async def event_info(request: Request) -> EventInfo:
    rt = runtime(request)
    cfg = rt.config
    return EventInfo(
        name=cfg.event.name,
        venue=cfg.event.venue,
        starts=cfg.event.starts,
        floor_language=rt.engine.floor_language,
        listener_token_required=cfg.tokens.listener is not None,
        channels=[
            ChannelInfo(id=cid, name=ch.name, language=ch.language)
            for cid, ch in cfg.channels.items()
        ],
        # With [turn], each answer carries freshly minted, time-limited TURN credentials.
        ice_servers=[IceServerInfo(**s.model_dump()) for s in browser_ice_servers(cfg)],
        edges=bool(cfg.edges),
    )


@router.post(
    "/booths/{booth}/seats/{seat}/mic",
    summary="Turn a seat's microphone on or off (interlock: one live seat per channel)",
    description="Token: the booth's. Goes live into the seat's output (A, or B: the retour). "
    "409 with the reason when another seat is live on that channel (interlock, across booths; "
    "a partner of the same booth: use the handover endpoint) or the seat has not published "
    "audio. A reconnected seat is never live until this is called again.",
    openapi_extra=json_body(MicRequest),
    responses=error_responses(400, 401, 403, 404, 408, 409, 413, 415),
)
async def seat_mic(request: Request, booth: str, seat: str) -> SeatInfo:
    rt = runtime(request)
    principal = authenticate(request, rt.tokens)
    if not rt.board.has_booth(booth):
        raise ApiError(404, f"unknown booth {booth!r}")
    require(principal, Role.BOOTH, booth)
    body = await read_json(request, MicRequest)
    try:
        state = rt.board.set_mic(booth, seat, body.on)
    except SeatNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except MicRefused as exc:
        raise ApiError(409, str(exc)) from None
    return SeatInfo(
        booth=state.booth,
        seat=state.seat,
        channel=rt.board.channel_of(state),
        connected=state.connected,
        live=state.live,
    )


@router.get(
    "/status",
    summary="Whether the event has started, and per channel: an interpreter live, listeners",
    description="Public, no secrets; the listener page polls it slowly. `started`: a floor "
    "source (the room, a remote panellist or a media source) is connected. `live_seat`: an "
    "interpreter is live on the channel (otherwise it carries the floor). `listeners`: WHEP "
    "listeners on the channel now.",
)
async def event_status(request: Request) -> EventStatus:
    rt = runtime(request)
    # Every source that is not an interpreter seat feeds the floor.
    seats = {seat_source_id(str(s["booth"]), str(s["seat"])) for s in rt.board.snapshot()}
    started = any(source not in seats for source in rt.engine.source_ids())
    listeners = dict.fromkeys(rt.config.channels, 0)
    for session in rt.peers.sessions():
        if session.kind == SessionKind.LISTENER:
            channel = rt.peers.channel_of(session)
            if channel in listeners:
                listeners[channel] += 1
    return EventStatus(
        started=started,
        channels={
            cid: ChannelStatus(
                live_seat=rt.engine.live_source(cid) is not None, listeners=listeners[cid]
            )
            for cid in rt.config.channels
        },
    )


@router.get("/health", summary="Liveness and the engine's counters")
async def health(request: Request) -> Health:
    rt = runtime(request)
    listeners = rt.peers.count(SessionKind.LISTENER)
    return Health(
        ok=True,
        ticks=rt.engine.stats.ticks,
        late_ticks=rt.engine.pacer.late_ticks,
        engine_errors=rt.engine.stats.errors,
        tick_cpu_seconds=round(rt.engine.stats.tick_cpu_seconds, 6),
        listeners=listeners,
        publishers=len(rt.peers.sessions()) - listeners,
    )
