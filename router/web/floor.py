"""The floor: which language is spoken on it now, and who may join it as a panellist."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from router.control.tokens import Role
from router.web.errors import ApiError, error_responses
from router.web.requests import authenticate, json_body, read_json, require, runtime

router = APIRouter(prefix="/api", tags=["Floor"])

# BCP 47-ish: "en", "fr", "ne", "pt-BR"; anything longer is a typo, not a language.
LANGUAGE = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"


class FloorLanguageRequest(BaseModel):
    language: str = Field(pattern=LANGUAGE, examples=["fr"])


class FloorState(BaseModel):
    language: str | None
    auto_floor: list[str]  # language channels carrying the floor because it speaks their language


class PanellistInfo(BaseModel):
    id: str
    name: str


def floor_state(request: Request) -> FloorState:
    engine = runtime(request).engine
    channels = engine.auto_floor_channels()
    return FloorState(
        language=engine.floor_language,
        auto_floor=[c for c in engine.settings.channels if c in channels],
    )


@router.get("/floor", summary="The language spoken on the floor now")
async def get_floor(request: Request) -> FloorState:
    return floor_state(request)


@router.put(
    "/floor/language",
    summary="Set the language spoken on the floor (auto-floor follows it)",
    description='Body: `{"language": "fr"}`. Token: technician. The channels in that language '
    "carry the floor at full level from the next 20 ms tick, even if a seat of their booth is "
    "live (the booth has nothing to interpret). A language without a channel is allowed: then "
    "every booth interprets. `/api/event` reports the new `floor_language`.",
    openapi_extra=json_body(FloorLanguageRequest),
    responses=error_responses(400, 401, 403, 408, 413, 415),
)
async def put_floor_language(request: Request) -> FloorState:
    rt = runtime(request)
    require(authenticate(request, rt.tokens), Role.TECHNICIAN)
    body = await read_json(request, FloorLanguageRequest)
    rt.engine.set_floor_language(body.language)
    return floor_state(request)


@router.get(
    "/panellists/{panellist_id}",
    summary="A panellist's name, for their page; also checks the token before joining",
    description="Token: the panellist token (or a technician's).",
    responses=error_responses(401, 403, 404),
)
async def get_panellist(request: Request, panellist_id: str) -> PanellistInfo:
    rt = runtime(request)
    principal = authenticate(request, rt.tokens)
    if principal.role != Role.TECHNICIAN:
        require(principal, Role.PANELLIST)
    panellist = rt.config.panellists.get(panellist_id)
    if panellist is None:
        raise ApiError(404, f"unknown panellist {panellist_id!r}")
    return PanellistInfo(id=panellist_id, name=panellist.name)
