"""Reading request bodies and tokens with limits, before anything else is touched."""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from router.control.limits import LimitReached
from router.control.tokens import Principal, Role, TokenBook
from router.runtime import EventRuntime
from router.web.errors import ApiError

MAX_JSON_BYTES = 16 * 1024
M = TypeVar("M", bound=BaseModel)


def runtime(request: Request) -> EventRuntime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate(request: Request, tokens: TokenBook) -> Principal:
    principal = tokens.identify(bearer_token(request))
    if principal is None:
        missing = bearer_token(request) is None
        raise ApiError(
            401,
            "a bearer token is required" if missing else "the token is not valid",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def require(principal: Principal, role: Role, booth: str | None = None) -> None:
    if principal.role != role or (booth is not None and principal.booth != booth):
        what = f"booth {booth!r}" if booth else f"the {role.value} role"
        raise ApiError(403, f"this token does not grant {what}")


def client_address(request: Request) -> str | None:
    """The client's address for per-address limits (behind a proxy: what uvicorn takes from
    X-Forwarded-For when the proxy is in --forwarded-allow-ips)."""
    return request.client.host if request.client else None


def too_many(exc: LimitReached) -> ApiError:
    return ApiError(429, str(exc), headers={"Retry-After": str(exc.retry_after)})


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body is larger than {limit} bytes")
    body = bytearray()
    seconds = runtime(request).config.limits.body_timeout_seconds
    try:
        # A client trickling its body (slowloris) is cut off instead of holding the request.
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise ApiError(413, f"the body is larger than {limit} bytes")
    except TimeoutError:
        raise ApiError(408, f"the body did not arrive within {seconds:g} s") from None
    return bytes(body)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_sdp(request: Request, limit: int) -> str:
    if _media_type(request) != "application/sdp":
        raise ApiError(415, "the offer must be sent as Content-Type: application/sdp")
    body = await _read_limited(request, limit)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the SDP offer is not valid UTF-8") from None


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI `openapi_extra` for a body read with `read_json` (FastAPI cannot see it)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


async def read_json(request: Request, model: type[M]) -> M:
    if _media_type(request) != "application/json":
        raise ApiError(415, "the body must be sent as Content-Type: application/json")
    body = await _read_limited(request, MAX_JSON_BYTES)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "the body is not valid JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise ApiError(400, detail) from None
