"""Fuzzing the HTTP API: every OpenAPI operation (Schemathesis) and mutated SDP offers
(Hypothesis) against a real server process. Zero 5xx, every error in the API's JSON shape,
and the server still serves afterwards."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx
import pytest
import requests
import schemathesis
from aiortc import RTCConfiguration, RTCPeerConnection
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from tests.server_process import event_file, start_process
from tests.test_security_roles import TOKENS, read_matrix

pytestmark = pytest.mark.webrtc

EXAMPLES = 15  # per operation, per token, per generation mode
VALID_PATH = {
    "channel": "fr",
    "booth": "fr",
    "seat": "fr1",
    "panellist_id": "landry",
    "source_id": "room",
}


@schemathesis.serializer("application/sdp")
def _sdp_body(_ctx: object, value: object) -> bytes:
    # Offers are plain text; negative cases may be any JSON value: send its text.
    return str(value).encode("utf-8", "surrogatepass")


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    server = asyncio.run(
        start_process(event_file(folder), ["--recordings", str(folder / "recordings")])
    )
    yield server
    assert asyncio.run(server.stop()) == 0, server.output()


def token_for(route: str, matrix: dict[str, dict[str, str]]) -> str | None:
    """A token that passes the route's authorisation (the technician's when allowed)."""
    cells = matrix.get(route)  # a route missing from the matrix fails test_security_roles
    if cells is None or cells["technician"] == "✓":
        return TOKENS["technician"]
    for role, cell in cells.items():
        if cell != "✗" and TOKENS[role]:
            return TOKENS[role]
    return None


def check_response(response, seen: Counter) -> None:
    seen[response.status_code // 100] += 1
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error", "detail"} and body["detail"], body


def fuzz(route: str, strategy, auth: dict[str, str], seen: Counter, session) -> int:
    """Runs one strategy's examples; returns how many requests were made."""
    calls = 0

    @FUZZ
    @given(case=strategy)
    def run(case) -> None:
        nonlocal calls
        calls += 1
        response = case.call(headers=auth, session=session, timeout=30)
        try:
            check_response(response, seen)
        except AssertionError as exc:
            raise AssertionError(f"{route}: {case.as_curl_command()}\n{exc}") from None

    try:
        run()
    except Unsatisfiable:
        pass  # e.g. no invalid request can be made for an operation without parameters
    return calls


def test_every_operation_with_generated_requests_never_fails_the_server(fuzz_server):
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    _, matrix = read_matrix()
    seen: Counter = Counter()
    cases = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    session = requests.Session()  # keep-alive: the time goes to the server, not to handshakes
    assert len(operations) > 30
    for op in operations:
        route = f"{op.method.upper()} {op.path}"
        names = {p.name for p in op.path_parameters}
        fixed = {k: v for k, v in VALID_PATH.items() if k in names}
        strategies = [op.as_strategy(GenerationMode.POSITIVE)]
        if fixed:
            # Known ids get past the lookups, so the bodies themselves are exercised.
            strategies.append(op.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed))
        try:
            strategies.append(op.as_strategy(GenerationMode.NEGATIVE))
        except Exception:  # an operation without anything to make invalid
            pass
        for token in {None, token_for(route, matrix)}:
            auth = {"Authorization": f"Bearer {token}"} if token else {}
            for strategy in strategies:
                cases += fuzz(route, strategy, auth, seen, session)
    print(f"\nfuzzed {len(operations)} operations with {cases} requests: {dict(seen)}")
    assert cases > len(operations) * EXAMPLES
    assert seen[5] == 0
    health = httpx.get(fuzz_server.url + "/api/health", timeout=10)
    assert health.status_code == 200 and health.json()["engine_errors"] == 0


def mutate(offer: str, rnd: random.Random, steps: int) -> str:
    lines = offer.replace("\r\n", "\n").strip().split("\n")
    junk = [
        "",
        "m=audio",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 111 111",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "a=rtpmap:111 opus/48000/2",
        "a=rtpmap:111 opus/48000/9999999999",
        "a=rtpmap:-1 opus/48000/2",
        "a=fmtp:111 minptime=-5;useinbandfec=x",
        "a=fingerprint:sha-256 00",
        "a=fingerprint:md5 zz",
        "a=ice-ufrag:",
        "a=ice-pwd:x",
        "a=candidate:0 1 UDP 1 999.1.1.1 99999 typ host",
        "a=candidate:garbage",
        "a=mid:",
        "a=group:BUNDLE 0 1 2 3",
        "a=setup:nonsense",
        "a=ssrc:abc cname:x",
        "a=extmap:99999 urn:x",
        "a=rtcp-fb:* nack",
        "c=IN IP4 ::::",
        "a=sendonly",
        "\x00\x01\x02",
        "é" * 50,
    ]
    for _ in range(steps):
        op = rnd.randrange(6)
        i = rnd.randrange(len(lines)) if lines else 0
        if op == 0 and lines:
            del lines[i]
        elif op == 1 and lines:
            lines.insert(i, lines[rnd.randrange(len(lines))])
        elif op == 2:
            lines.insert(i, rnd.choice(junk))
        elif op == 3 and lines:
            line = lines[i]
            cut = rnd.randrange(len(line) + 1)
            lines[i] = line[:cut] + rnd.choice(["", " ", ":", "0", "-1", "x" * 300]) + line[cut:]
        elif op == 4 and len(lines) > 2:
            j = rnd.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 5:
            lines = lines[: rnd.randrange(len(lines) + 1)]
    return "\r\n".join(lines) + "\r\n"


async def test_mutated_sdp_offers_never_fail_the_server(fuzz_server, loopback_ice):
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client.addTransceiver("audio", direction="sendrecv")
    client.addTransceiver("audio", direction="sendrecv")  # two m-lines: more to break
    await client.setLocalDescription(await client.createOffer())
    offer = client.localDescription.sdp
    await client.close()
    endpoints = [
        ("/whep/fr", None),
        ("/whip/booth/fr/fr1", TOKENS["interpreter (own)"]),
        ("/whip/floor", TOKENS["floor"]),
        ("/whip/panellist/landry?listen=es", TOKENS["panellist"]),
    ]
    seen: Counter = Counter()
    accepted = 0

    @settings(max_examples=100, deadline=None, database=None, phases=[Phase.generate])
    @given(seed=st.integers(0, 2**32), steps=st.integers(1, 6), target=st.sampled_from(endpoints))
    def cases(seed: int, steps: int, target: tuple[str, str | None]) -> None:
        generated.append((mutate(offer, random.Random(seed), steps), *target))

    generated: list[tuple[str, str, str | None]] = []
    cases()
    async with httpx.AsyncClient(base_url=fuzz_server.url, timeout=30) as http:
        for sdp, path, token in generated:
            headers = {"Content-Type": "application/sdp"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            r = await http.post(path, content=sdp.encode("utf-8", "surrogatepass"), headers=headers)
            check_response(r, seen)
            if r.status_code == 201:
                accepted += 1
                auth = {"Authorization": headers.get("Authorization", "")}
                assert (await http.delete(r.headers["location"], headers=auth)).status_code == 204
        health = (await http.get("/api/health")).json()
    print(f"\n{len(generated)} mutated offers: {dict(seen)}, {accepted} accepted and ended")
    assert seen[5] == 0 and seen[4] > 0
    assert health["engine_errors"] == 0
    assert health["listeners"] == 0 and health["publishers"] == 0
