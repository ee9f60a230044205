"""In the room: the listener link as a QR code, and a page the organisers project."""

from __future__ import annotations

import html
import io
from string import Template

import segno
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from router.web.errors import ApiError, error_responses
from router.web.pages import WEB_CLIENT
from router.web.requests import runtime

router = APIRouter(tags=["Room"])

# One line per event language, shown together: the projected page is read by everyone.
SCAN_LINES: tuple[tuple[str, str], ...] = (
    ("en", "Scan to listen to the interpretation on your phone. Please use headphones."),
    (
        "fr",
        "Scannez pour écouter l’interprétation sur votre téléphone. Utilisez des écouteurs.",
    ),
    ("ne", "आफ्नो फोनमा भाषान्तर सुन्न स्क्यान गर्नुहोस्। कृपया हेडफोन प्रयोग गर्नुहोस्।"),
    ("es", "Escanee para escuchar la interpretación en su teléfono. Use auriculares."),
)

LANG_QUERY = Query(
    None,
    description="a channel id: the link preselects that channel (`/?lang=fr`)",
    max_length=64,
)


def listener_url(request: Request, lang: str | None) -> str:
    """The listener link: the configured public URL, else the URL this request came to."""
    base = getattr(request.app.state, "public_url", None) or str(request.base_url)
    url = base.rstrip("/") + "/"
    if lang is not None:
        channels = runtime(request).config.channels
        if lang not in channels:
            raise ApiError(404, f"unknown channel {lang!r} (channels: {', '.join(channels)})")
        url += f"?lang={lang}"
    return url


def _qr(url: str) -> segno.QRCode:
    # Medium error correction survives a projector's glare; segno raises it when it is free.
    return segno.make(url, error="m", micro=False)


def _lang_attr(language: str | None) -> str:
    return f' lang="{html.escape(language)}"' if language else ""


def _short(url: str) -> str:
    """The link as people type it: no scheme, no lone trailing slash."""
    text = url.split("://", 1)[-1]
    return text[:-1] if text.endswith("/") else text


@router.get(
    "/api/qr.svg",
    summary="The listener link as a QR code (SVG)",
    description="Encodes the listener page's URL (the server's `--public-url` when set, else "
    "the URL of this request), with `?lang=` when given. 404 for an unknown channel.",
    response_class=Response,
    responses={
        200: {"description": "an SVG image", "content": {"image/svg+xml": {}}},
        **error_responses(400, 404),
    },
)
async def qr_svg(request: Request, lang: str | None = LANG_QUERY) -> Response:
    url = listener_url(request, lang)
    svg = io.BytesIO()
    _qr(url).save(svg, kind="svg", scale=10, border=4, dark="#000", light="#fff", title=url)
    return Response(
        content=svg.getvalue(),
        media_type="image/svg+xml",
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/room", include_in_schema=False)
async def room_page(request: Request, lang: str | None = LANG_QUERY) -> HTMLResponse:
    """What the organisers project: the event, a big QR code, the link and the channels."""
    rt = runtime(request)
    url = listener_url(request, lang)
    esc = html.escape
    qr = _qr(url).svg_inline(
        scale=1, border=4, dark="#000", light="#fff", omitsize=True, svgclass="qr"
    )
    # The figure is labelled by its caption; the bare drawing is decoration for screen readers.
    qr = qr.replace("<svg ", '<svg aria-hidden="true" focusable="false" ', 1)
    channels = "\n".join(
        f"          <li{_lang_attr(ch.language)}>{esc(ch.name)}</li>"
        for ch in rt.config.channels.values()
    )
    lines = "\n".join(f'        <p lang="{code}">{esc(text)}</p>' for code, text in SCAN_LINES)
    page = Template((WEB_CLIENT / "room.html").read_text(encoding="utf-8")).substitute(
        event_name=esc(rt.config.event.name),
        venue=esc(rt.config.event.venue),
        qr_svg=qr,
        url=esc(url, quote=True),
        short_url=esc(_short(url)),
        scan_lines=lines,
        channels=channels,
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
