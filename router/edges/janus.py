"""A minimal client of Janus Gateway's HTTP API (REST transport): one session, its handles.

Requests are POSTs; a plugin answers synchronous requests ("create", "list", "info") in the
response, and asynchronous ones ("watch", "start", "switch") with an ack followed by an event
carrying the same transaction, which arrives on the session's long poll (`poll()`).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx

JsonObject = dict[str, Any]

NO_SUCH_SESSION = 458
NO_SUCH_HANDLE = 459
EVENT_TIMEOUT_SECONDS = 15.0  # an asynchronous request's event (a watch gathers ICE)


class JanusError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"Janus error {code}: {reason}")
        self.code = code
        self.reason = reason


class SessionGone(JanusError):
    """The session no longer exists: Janus restarted or timed it out."""


class PluginError(Exception):
    """The plugin refused a request (e.g. a mountpoint that does not exist)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"plugin error {code}: {reason}")
        self.code = code
        self.reason = reason


class JanusSession:
    """One Janus session over HTTP. Network failures surface as httpx.HTTPError."""

    def __init__(self, http: httpx.AsyncClient, url: str, api_secret: str | None) -> None:
        self._http = http
        self._url = url
        self._secret = api_secret
        self.id: int | None = None
        # transaction -> future of the plugin event that answers an asynchronous request
        self._waiting: dict[str, asyncio.Future[JsonObject]] = {}

    def _message(self, kind: str, **fields: Any) -> JsonObject:
        body: JsonObject = {"janus": kind, "transaction": secrets.token_hex(8), **fields}
        if self._secret is not None:
            body["apisecret"] = self._secret
        return body

    async def _post(self, path: str, body: JsonObject) -> JsonObject:
        resp = await self._http.post(self._url + path, json=body)
        resp.raise_for_status()
        reply: JsonObject = resp.json()
        _raise_for_error(reply)
        return reply

    async def create(self) -> int:
        reply = await self._post("", self._message("create"))
        self.id = int(reply["data"]["id"])
        return self.id

    async def attach(self, plugin: str) -> int:
        reply = await self._post(f"/{self.id}", self._message("attach", plugin=plugin))
        return int(reply["data"]["id"])

    async def detach(self, handle: int) -> None:
        await self._post(f"/{self.id}/{handle}", self._message("detach"))

    async def keepalive(self) -> None:
        await self._post(f"/{self.id}", self._message("keepalive"))

    async def destroy(self) -> None:
        await self._post(f"/{self.id}", self._message("destroy"))

    async def request(self, handle: int, body: JsonObject) -> JsonObject:
        """A synchronous plugin request: the plugin's data, or PluginError."""
        reply = await self._post(f"/{self.id}/{handle}", self._message("message", body=body))
        data: JsonObject = reply["plugindata"]["data"]
        _raise_for_plugin_error(data)
        return data

    async def request_async(
        self, handle: int, body: JsonObject, jsep: JsonObject | None = None
    ) -> tuple[JsonObject, JsonObject | None]:
        """An asynchronous plugin request: waits for its event; (plugin data, jsep or None)."""
        message = self._message("message", body=body)
        if jsep is not None:
            message["jsep"] = jsep
        future: asyncio.Future[JsonObject] = asyncio.get_running_loop().create_future()
        self._waiting[message["transaction"]] = future
        try:
            reply = await self._post(f"/{self.id}/{handle}", message)
            if reply.get("janus") == "success":  # answered at once after all
                event = reply
            else:
                event = await asyncio.wait_for(future, EVENT_TIMEOUT_SECONDS)
        finally:
            self._waiting.pop(message["transaction"], None)
        data: JsonObject = event.get("plugindata", {}).get("data", {})
        _raise_for_plugin_error(data)
        return data, event.get("jsep")

    async def poll(self, max_events: int = 16) -> list[JsonObject]:
        """One long poll (Janus answers within 30 s, with a keepalive when idle).

        Events that answer a waiting request resolve it; all are returned.
        """
        params: dict[str, str | int] = {"maxev": max_events, "rid": secrets.randbelow(2**31)}
        if self._secret is not None:
            params["apisecret"] = self._secret
        resp = await self._http.get(f"{self._url}/{self.id}", params=params, timeout=45.0)
        resp.raise_for_status()
        reply = resp.json()
        events: list[JsonObject] = reply if isinstance(reply, list) else [reply]
        for event in events:
            _raise_for_error(event)
            future = self._waiting.get(str(event.get("transaction", "")))
            if future is not None and not future.done() and event.get("janus") == "event":
                future.set_result(event)
        return events

    def fail_waiting(self, exc: Exception) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(exc)
        self._waiting.clear()


def _raise_for_error(reply: JsonObject) -> None:
    if reply.get("janus") != "error":
        return
    error = reply.get("error", {})
    code, reason = int(error.get("code", 0)), str(error.get("reason", "unknown"))
    if code == NO_SUCH_SESSION:
        raise SessionGone(code, reason)
    raise JanusError(code, reason)


def _raise_for_plugin_error(data: JsonObject) -> None:
    if "error_code" in data or "error" in data:
        raise PluginError(int(data.get("error_code", 0)), str(data.get("error", "unknown")))
