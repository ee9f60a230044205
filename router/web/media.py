"""Media into the floor: the technician plays a file from the media folder (the video message)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from router.control.tokens import Role
from router.media.player import MediaNotFound, MediaUnplayable, PlaybackStatus
from router.runtime import EventRuntime
from router.web.errors import ApiError, error_responses
from router.web.requests import authenticate, json_body, read_json, require, runtime

router = APIRouter(prefix="/api/media", tags=["Media"])


class PlayRequest(BaseModel):
    file: str = Field(min_length=1, max_length=255, examples=["video_message.opus"])
    loop: bool = False


class Playback(BaseModel):
    state: str  # idle | playing | ended | stopped
    file: str | None
    loop: bool
    position: float  # seconds
    duration: float | None  # seconds, when the file says


class MediaOverview(BaseModel):
    files: list[str]
    playback: Playback


def technician(request: Request) -> EventRuntime:
    rt = runtime(request)
    require(authenticate(request, rt.tokens), Role.TECHNICIAN)
    return rt


def playback(status: PlaybackStatus) -> Playback:
    return Playback(
        state=status.state.value,
        file=status.file,
        loop=status.loop,
        position=status.position,
        duration=status.duration,
    )


@router.get(
    "",
    summary="The files that can be played and what is playing",
    responses=error_responses(401, 403),
)
async def media_overview(request: Request) -> MediaOverview:
    deck = technician(request).media
    return MediaOverview(files=deck.files(), playback=playback(deck.status()))


@router.post(
    "/play",
    summary="Play a file into the floor (replaces what is playing)",
    description='Body: `{"file": "video_message.opus", "loop": false}`: a file name from '
    "`GET /api/media` (never a path). Any file PyAV (FFmpeg) can read; a video's first audio "
    "stream is played. 404 for a name not in the media folder, 400 for a file without "
    "playable audio.",
    openapi_extra=json_body(PlayRequest),
    responses=error_responses(400, 401, 403, 404, 408, 413, 415),
)
async def media_play(request: Request) -> Playback:
    rt = technician(request)
    body = await read_json(request, PlayRequest)
    try:
        return playback(await rt.media.play(body.file, body.loop))
    except MediaNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except MediaUnplayable as exc:
        raise ApiError(400, str(exc)) from None


@router.post(
    "/stop",
    summary="Stop playback; the floor goes on without it at the next tick",
    responses=error_responses(401, 403),
)
async def media_stop(request: Request) -> Playback:
    return playback(technician(request).media.stop())
