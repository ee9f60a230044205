"""TURN credentials minted the coturn way (use-auth-secret), checked against a real coturn."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from aioice import turn as aioice_turn

from router.app import create_app
from router.config import ConfigError, TurnSettings, parse_config
from router.signalling.turn import mint_turn_server
from tests.conftest import DEFAULT_EVENT, free_port, start_server

SECRET = "north-south-secret-42"


def openssl_password(secret: str, username: str) -> str:
    """coturn's REST API password, computed by another implementation (openssl's HMAC)."""
    digest = subprocess.run(
        ["openssl", "dgst", "-sha1", "-hmac", secret, "-binary"],
        input=username.encode(),
        capture_output=True,
        check=True,
    ).stdout
    return base64.b64encode(digest).decode()


def test_minted_credential_is_coturns_rest_api_form():
    settings = TurnSettings(secret=SECRET, urls=["turn:127.0.0.1:3478"], ttl_seconds=3600)
    server = mint_turn_server(settings, now=1_700_000_000)
    assert server.urls == ["turn:127.0.0.1:3478"]
    assert server.username == "1700003600:listener"
    assert server.credential == openssl_password(SECRET, "1700003600:listener")
    # A known vector (HMAC-SHA1 over the username, base64), so a change of algorithm shows.
    assert server.credential == "WaoEzxG0Tq8X2n+fLwoaOTQSvxc="


def test_turn_config_errors_name_the_key():
    base = DEFAULT_EVENT.read_text()
    with pytest.raises(ConfigError) as err:
        parse_config(base + '\n[turn]\nsecret = "short"\nurls = ["https://x"]\nttl_seconds = 5\n')
    text = str(err.value)
    assert "turn.secret" in text and "turn.urls" in text and "turn.ttl_seconds" in text
    with pytest.raises(ConfigError, match=r"turn\.urls"):
        parse_config(base + f'\n[turn]\nsecret = "{SECRET}"\nurls = []\n')


async def test_browsers_get_fresh_credentials_from_the_api(event_config, loopback_ice):
    settings = TurnSettings(secret=SECRET, urls=["turns:turn.example.org:443?transport=tcp"])
    config = event_config.model_copy(update={"turn": settings})
    app = create_app(config, ice_hosts=["127.0.0.1"])
    srv, task, url = await start_server(app)
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            for path, method in (("/api/event", "GET"), ("/api/listen", "POST")):
                kwargs = {"json": {"channel": "fr"}} if method == "POST" else {}
                r = await http.request(method, path, **kwargs)
                assert r.status_code == 200, r.text
                servers = r.json()["ice_servers"]
                assert len(servers) == 1
                minted = servers[0]
                assert minted["urls"] == ["turns:turn.example.org:443?transport=tcp"]
                expiry, user = minted["username"].split(":")
                assert user == "listener"
                assert abs(int(expiry) - (time.time() + settings.ttl_seconds)) < 60
                assert minted["credential"] == openssl_password(SECRET, minted["username"])
                assert SECRET not in r.text
            # Without edges, /api/listen sends the page to local WHEP.
            assert r.json()["mode"] == "whep" and r.json()["whep"] == "/whep/fr"
    finally:
        srv.should_exit = True
        await task


def turnserver_binary() -> str:
    path = shutil.which("turnserver")
    if path is None:
        message = "turnserver is not installed (Debian package coturn; scripts/test installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def coturn(tmp_path: Path):
    port = free_port()
    log = tmp_path / "turnserver.log"
    proc = subprocess.Popen(
        [
            turnserver_binary(),
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={port}",
            "--min-port=49000",
            "--max-port=49100",
            "--use-auth-secret",
            f"--static-auth-secret={SECRET}",
            "--realm=test.invalid",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--allow-loopback-peers",
            f"--log-file={log}",
            "--simple-log",
            f"--pidfile={tmp_path / 'turnserver.pid'}",
            f"--userdb={tmp_path / 'turndb'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield ("127.0.0.1", port)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


async def allocate(server: tuple[str, int], username: str, password: str) -> tuple[str, int]:
    """A TURN allocation over UDP; the relayed address, or an exception when refused."""
    last: Exception | None = None
    for _ in range(50):  # coturn takes a moment to open its port
        try:
            transport, _ = await asyncio.wait_for(
                aioice_turn.create_turn_endpoint(
                    asyncio.DatagramProtocol, server, username, password, lifetime=60
                ),
                5,
            )
        except ConnectionRefusedError as exc:
            last = exc
            await asyncio.sleep(0.1)
            continue
        relayed = transport.get_extra_info("sockname")
        transport.close()
        return relayed
    raise AssertionError(f"coturn never answered: {last}")


async def test_real_coturn_accepts_minted_credentials_and_refuses_expired_ones(coturn):
    settings = TurnSettings(secret=SECRET, urls=[f"turn:{coturn[0]}:{coturn[1]}"])
    fresh = mint_turn_server(settings)
    relayed = await allocate(coturn, fresh.username, fresh.credential)
    assert relayed[0] == "127.0.0.1"

    expired = mint_turn_server(settings, now=time.time() - settings.ttl_seconds - 60)
    with pytest.raises(Exception, match=r"401|Unauthorized"):
        await allocate(coturn, expired.username, expired.credential)
    with pytest.raises(Exception, match=r"401|Unauthorized"):
        await allocate(coturn, fresh.username, fresh.credential[:-4] + "AAA=")


async def test_a_listener_reached_only_through_the_routers_turn_relay_hears_its_channel(
    coturn, server
):
    # The router's own candidate is relayed (iceTransportPolicy "relay"): every packet of the
    # direct RTP path must go through aioice's TURN transport, which has no socket of its own.
    from aiortc import RTCConfiguration, RTCIceServer
    from aiortc.rtcconfiguration import RTCIceTransportPolicy

    from tests.signals import steady_tone_db
    from tests.webrtc_clients import listen, publish

    settings = TurnSettings(secret=SECRET, urls=[f"turn:{coturn[0]}:{coturn[1]}"])
    fresh = mint_turn_server(settings)
    await allocate(coturn, fresh.username, fresh.credential)  # coturn is up
    peers = server.runtime.peers
    floor = await publish(server.http, "/whip/floor", "floor-demo-token", 440.0)
    await server.wait_flowing({"room"})
    peers._rtc_config = lambda: RTCConfiguration(
        iceServers=[RTCIceServer(list(fresh.urls), fresh.username, fresh.credential)],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    )
    peer = await listen(server.http, "en")
    try:
        await peer.heard.wait_for(25, timeout=20)
        assert steady_tone_db(await peer.heard.collect(50), 440.0) > -25
        (session,) = [s for s in peers.sessions() if s.kind == "listener"]
        pair = session.pc.getTransceivers()[0].sender.transport.transport._connection
        local = pair._nominated[1].local_candidate
        assert local.type == "relay", "the router's side of the pair is its TURN relay"
        assert session.outgoing is not None and session.outgoing.direct
    finally:
        await peer.close()
        await floor.close()
