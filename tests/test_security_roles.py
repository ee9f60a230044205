"""Every role on every route, checked against the role matrix written in docs/SECURITY.md.

The matrix is read from the document and the routes from the app: a route without a row, or
a row without a route, fails here, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from httpx_ws import aconnect_ws
from starlette.routing import Mount

from router.config import EventConfig, parse_config
from router.control.tokens import TokenBook, hash_token
from router.media.engine import SourceRole
from tests.conftest import DEFAULT_EVENT, ROOT

pytestmark = pytest.mark.webrtc

SECURITY_DOC = ROOT / "docs" / "SECURITY.md"
LISTENER_TOKEN = "listener-test-token"
TOKENS: dict[str, str | None] = {
    "anonymous": None,
    "listener": LISTENER_TOKEN,
    "panellist": "panellist-demo-token",
    "interpreter (own)": "booth-fr-demo-token",
    "interpreter (other)": "booth-es-demo-token",
    "floor": "floor-demo-token",
    "technician": "technician-demo-token",
}
# Path parameters: the booth named in the path is the "own" interpreter's booth.
PARAMS = {
    "channel": "fr",
    "booth": "fr",
    "seat": "fr1",
    "panellist_id": "landry",
    "source_id": "rtp:probe",
    "session": "20260101-000000",
    "name": "fr.opus",
    "path": "style.css",
    "lease_id": "no-such-lease",
}
# A session the role itself can create, for the `own` cells.
OWN_SESSION = {
    "panellist": "/whip/panellist/landry",
    "interpreter (own)": "/whip/booth/fr/fr1",
    "interpreter (other)": "/whip/booth/es/es1",
    "floor": "/whip/floor",
}
JSON_BODIES = {
    "POST /whip/sessions/{session_id}/listen": {"channel": "fr"},
    "POST /whep/sessions/{session_id}/channel": {"channel": "es"},
    "POST /api/listen": {"channel": "fr"},
    "POST /api/listen/sessions/{lease_id}/channel": {"channel": "es"},
    "POST /api/booths/{booth}/seats/{seat}/mic": {"on": False},
    "PUT /api/floor/language": {"language": "en"},
    "POST /api/media/play": {"file": "video_message.opus"},
    "POST /api/tech/inputs/{source_id}/gain": {"gain_db": -3.0},
    "POST /api/tech/recording": {"on": False},
    "POST /api/tech/auto-relay": {"on": False},
    "POST /api/booths/{booth}/chat": {"text": "hello", "seat": "fr1"},
    "POST /api/booths/{booth}/seats/{seat}/handover": {"action": "cancel"},
    "POST /api/booths/{booth}/seats/{seat}/cough": {"held": False},
    "POST /api/booths/{booth}/seats/{seat}/output": {"output": "A"},
    "POST /api/booths/{booth}/seats/{seat}/source": {"source": "floor"},
    "POST /api/booths/{booth}/seats/{seat}/return": {"volume_db": -3.0},
    "POST /api/booths/{booth}/seats/{seat}/slow-down": {"on": False},
}
# Allowed, but whether the action succeeds depends on the seat's state (409 when refused).
STATEFUL = {
    "POST /api/booths/{booth}/seats/{seat}/handover",
    "POST /api/booths/{booth}/seats/{seat}/cough",
    "POST /api/booths/{booth}/seats/{seat}/output",
}
# Allowed requests answer 2xx, except these (the probe names nothing that exists).
NOT_2XX = {
    "GET /api/tech/recordings/{session}/{name}": 404,
    # edge leases are capabilities like WHEP sessions; without [[edges]] none exists
    "POST /api/listen/sessions/{lease_id}/answer": 404,
    "POST /api/listen/sessions/{lease_id}/channel": 404,
    "DELETE /api/listen/sessions/{lease_id}": 404,
}


def read_matrix() -> tuple[list[str], dict[str, dict[str, str]]]:
    text = SECURITY_DOC.read_text(encoding="utf-8")
    block = text.split("<!-- role-matrix:start -->")[1].split("<!-- role-matrix:end -->")[0]
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in block.strip().splitlines()
    ]
    header, body = rows[0], rows[2:]
    roles = header[1:]
    matrix = {}
    for row in body:
        route = row[0].strip("`")
        assert route not in matrix, f"{route} has two rows"
        assert len(row) == len(header), f"{route}: {len(row)} cells for {len(header)} columns"
        matrix[route] = dict(zip(roles, row[1:], strict=True))
        assert set(matrix[route].values()) <= {"✓", "✗", "own"}, row
    return roles, matrix


def app_routes(app) -> set[str]:
    """'METHOD /path' for every route the app serves, through included routers and mounts."""

    def walk(routes, prefix=""):
        for route in routes:
            if hasattr(route, "original_router"):  # FastAPI's included router
                yield from walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif isinstance(route, Mount):
                yield f"GET {prefix}{route.path}/{{path}}"
            elif getattr(route, "methods", None) is None:
                yield f"WS {prefix}{route.path}"
            else:
                for method in sorted(route.methods - {"HEAD"}):
                    yield f"{method} {prefix}{route.path}"

    return set(walk(app.routes))


@pytest.fixture
def event_config() -> EventConfig:
    text = DEFAULT_EVENT.read_text(encoding="utf-8")
    text = text.replace('# listener = "listener-demo-token"', f'listener = "{LISTENER_TOKEN}"')
    config = parse_config(text)
    assert config.tokens.listener == LISTENER_TOKEN
    media = config.media.model_copy(update={"directory": DEFAULT_EVENT.parent / "media"})
    return config.model_copy(update={"media": media})


def test_matrix_rows_are_well_formed():
    roles, matrix = read_matrix()
    assert roles == list(TOKENS)
    assert len(matrix) > 30


async def test_the_matrix_names_every_route_and_only_routes(server):
    _, matrix = read_matrix()
    routes = app_routes(server.app)
    assert routes - set(matrix) == set(), "routes without a row in docs/SECURITY.md"
    assert set(matrix) - routes == set(), "rows in docs/SECURITY.md without a route"


def headers(token: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    out = dict(extra or {})
    if token:
        out["Authorization"] = f"Bearer {token}"
    return out


class Prober:
    def __init__(self, server, offer: str) -> None:
        self.server = server
        self.http: httpx.AsyncClient = server.http
        self.offer = offer

    async def session(self, path: str, token: str | None) -> str:
        r = await self.http.post(
            path, content=self.offer, headers=headers(token, {"Content-Type": "application/sdp"})
        )
        assert r.status_code == 201, (path, r.status_code, r.text)
        return r.headers["location"]

    async def target(self, route: str, role: str, cell: str) -> str:
        """The concrete path to try; session routes get a real session first."""
        template = route.split(" ", 1)[1]
        path = template
        for name, value in PARAMS.items():
            path = path.replace("{" + name + "}", value)
        if "{session_id}" in path:
            if template.startswith("/whep/"):
                location = await self.session("/whep/fr", LISTENER_TOKEN)
            elif cell == "own":
                location = await self.session(OWN_SESSION[role], TOKENS[role])
            else:
                location = await self.session("/whip/panellist/landry", TOKENS["panellist"])
            path = path.replace("{session_id}", location.rsplit("/", 1)[1])
        return path

    async def request(self, route: str, role: str, cell: str) -> int:
        method, _ = route.split(" ", 1)
        path = await self.target(route, role, cell)
        token = TOKENS[role]
        if method == "WS":
            return await self.websocket(path, token)
        body = JSON_BODIES.get(route)
        if body is not None:
            r = await self.http.request(method, path, json=body, headers=headers(token))
        elif method == "POST" and (path.startswith(("/whip/", "/whep/")) or "/answer" in path):
            r = await self.http.post(
                path,
                content=self.offer,
                headers=headers(token, {"Content-Type": "application/sdp"}),
            )
        else:
            r = await self.http.request(method, path, headers=headers(token))
        if r.status_code in (401, 403):
            assert r.json()["error"] in ("unauthorized", "forbidden"), r.text
        assert r.status_code < 500, (route, role, r.status_code, r.text)
        return r.status_code

    async def websocket(self, path: str, token: str | None) -> int:
        """200 when the stream starts, 401/403 when the server closes it for the token."""
        async with aconnect_ws(self.server.url + path, self.http) as ws:
            await ws.send_text(json.dumps({"token": token, "seat": PARAMS["seat"]}))
            try:
                frame = json.loads(await ws.receive_text(timeout=10))
            except Exception:
                return 401 if token is None else 403
            assert isinstance(frame, dict) and frame
            return 200


async def test_every_role_on_every_route_matches_the_matrix(server):
    _, matrix = read_matrix()
    # An input to act on, without a connection: gain and monitor need one that exists.
    server.runtime.engine.add_source("rtp:probe", SourceRole.REMOTE)
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client.addTransceiver("audio", direction="sendrecv")
    await client.setLocalDescription(await client.createOffer())
    prober = Prober(server, client.localDescription.sdp)
    wrong: list[str] = []
    try:
        for route in sorted(app_routes(server.app)):
            for role, cell in matrix[route].items():
                status = await prober.request(route, role, cell)
                if cell in ("✓", "own"):
                    expected = NOT_2XX.get(route)
                    if route in STATEFUL:
                        ok = status not in (401, 403)
                    else:
                        ok = status == expected if expected else 200 <= status < 300
                else:
                    ok = status == (401 if role == "anonymous" else 403)
                if not ok:
                    wrong.append(f"{route} as {role}: {status} (matrix: {cell})")
                if cell == "own":
                    # ...and never on a session someone else created
                    other = "floor" if role == "panellist" else "panellist"
                    path = await prober.target(route, other, "own")
                    r = await server.http.request(
                        route.split()[0],
                        path,
                        json=JSON_BODIES.get(route),
                        headers=headers(TOKENS[role]),
                    )
                    # 404: that session has no such action (a floor session has no "listen")
                    if r.status_code not in (403, 404):
                        wrong.append(f"{route} as {role} on a {other}'s session: {r.status_code}")
    finally:
        await client.close()
        await server.runtime.peers.close_all()
    assert wrong == []


async def test_panellist_session_listen_on_a_floor_session_is_not_found(server):
    """A non-panellist session has no 'listen' choice: 404, whoever asks."""
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client.addTransceiver("audio", direction="sendrecv")
    await client.setLocalDescription(await client.createOffer())
    try:
        prober = Prober(server, client.localDescription.sdp)
        location = await prober.session("/whip/floor", TOKENS["floor"])
        r = await server.http.post(
            f"{location}/listen", json={"channel": "fr"}, headers=headers(TOKENS["technician"])
        )
        assert r.status_code == 404
    finally:
        await client.close()
        await server.runtime.peers.close_all()


def test_tokens_hashed_in_the_file_work_like_plain_ones():
    text = DEFAULT_EVENT.read_text(encoding="utf-8")
    text = text.replace('"technician-demo-token"', f'"{hash_token("technician-demo-token")}"')
    text = text.replace('"booth-fr-demo-token"', f'"{hash_token("booth-fr-demo-token")}"')
    config = parse_config(text)
    assert config.tokens.technician.startswith("sha256:")
    book = TokenBook(config)
    assert book.identify("technician-demo-token").role == "technician"
    who = book.identify("booth-fr-demo-token")
    assert who.role == "booth" and who.booth == "fr"
    # the digest itself is not a token
    assert book.identify(config.tokens.technician) is None
    assert book.identify("technician-demo-tokeN") is None
    assert book.identify("") is None and book.identify(None) is None
    assert book.identify("\ud800 lone surrogate") is None


def test_a_hashed_token_equal_to_another_plain_one_is_refused():
    text = DEFAULT_EVENT.read_text(encoding="utf-8")
    text = text.replace('"technician-demo-token"', f'"{hash_token("floor-demo-token")}"')
    with pytest.raises(Exception, match="distinct"):
        parse_config(text)


@pytest.mark.parametrize("bad", ["sha256:abc", "sha256:" + "G" * 64, "sha256:" + "A" * 64])
def test_a_malformed_hashed_token_names_the_key(bad):
    text = DEFAULT_EVENT.read_text(encoding="utf-8")
    text = text.replace('"technician-demo-token"', f'"{bad}"')
    with pytest.raises(Exception, match=re.escape("tokens.technician")):
        parse_config(text)
