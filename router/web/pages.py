"""The browser pages: served from the web_client package."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB_CLIENT = Path(str(files("web_client")))

router = APIRouter(include_in_schema=False)


@router.get("/")
async def listener_page() -> FileResponse:
    return FileResponse(WEB_CLIENT / "index.html", media_type="text/html")


@router.get("/panellist/{panellist_id}")
async def panellist_page(panellist_id: str) -> FileResponse:
    # The page asks /api/panellists/{id} with its token; an unknown id is shown there.
    return FileResponse(WEB_CLIENT / "panellist.html", media_type="text/html")


@router.get("/floor")
async def floor_page() -> FileResponse:
    return FileResponse(WEB_CLIENT / "floor.html", media_type="text/html")


def mount_pages(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=WEB_CLIENT), name="static")
