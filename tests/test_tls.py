"""HTTPS served directly, from the event file or the command line, with a self-signed cert."""

from __future__ import annotations

import ssl
import subprocess
import sys

import httpx
import pytest

from router.config import ConfigError, load_config
from tests.conftest import ROOT
from tests.server_process import event_file, self_signed, start_process
from tests.webrtc_clients import listen


def trust(cert) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


async def test_https_with_the_certificate_named_in_the_event_file(tmp_path):
    cert, _ = self_signed(tmp_path)
    config = event_file(tmp_path, '[tls]\ncertfile = "cert.pem"\nkeyfile = "key.pem"\n')
    assert load_config(config).tls.certfile == tmp_path / "cert.pem"  # relative to the file
    server = await start_process(config, scheme="https", verify=trust(cert))
    try:
        async with httpx.AsyncClient(verify=trust(cert), timeout=10) as http:
            r = await http.get(server.url + "/api/event")
            assert r.status_code == 200 and r.json()["channels"]
            assert r.url.scheme == "https"
        # an unverified certificate is refused by a normal client: it is really TLS
        async with httpx.AsyncClient(timeout=10) as http:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(server.url + "/api/event")
        # plain HTTP on the TLS port gets no answer from the API
        async with httpx.AsyncClient(timeout=10) as http:
            plain = server.url.replace("https://", "http://")
            try:
                r = await http.get(plain + "/api/event")
            except httpx.TransportError:
                pass
            else:
                assert r.status_code != 200
    finally:
        assert await server.stop() == 0, server.output()


@pytest.mark.webrtc
async def test_command_line_certificate_and_a_listener_over_https(tmp_path, loopback_ice):
    cert, key = self_signed(tmp_path)
    config = event_file(tmp_path)
    server = await start_process(
        config,
        ["--tls-cert", str(cert), "--tls-key", str(key)],
        scheme="https",
        verify=trust(cert),
    )
    try:
        async with httpx.AsyncClient(base_url=server.url, verify=trust(cert), timeout=20) as http:
            peer = await listen(http, "fr")
            try:
                await peer.heard.wait_for(10, timeout=20)  # audio after an HTTPS handshake
                assert (await http.delete(peer.location)).status_code == 204
            finally:
                await peer.close()
    finally:
        assert await server.stop() == 0, server.output()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_missing_certificate_stops_the_server_at_start(tmp_path):
    config = event_file(tmp_path, '[tls]\ncertfile = "nope.pem"\nkeyfile = "key.pem"\n')
    proc = run_cli("serve", "--config", str(config), "--port", "1")
    assert proc.returncode == 2
    assert "TLS certificate" in proc.stderr and "nope.pem" in proc.stderr


def test_cert_without_key_is_a_config_error(tmp_path):
    config = event_file(tmp_path, '[tls]\ncertfile = "cert.pem"\n')
    with pytest.raises(ConfigError, match="tls"):
        load_config(config)
    proc = run_cli("serve", "--config", str(event_file(tmp_path)), "--tls-cert", "x.pem")
    assert proc.returncode == 2 and "--tls-key" in proc.stderr


def test_hash_token_prints_the_form_for_the_event_file():
    proc = run_cli("hash-token", "floor-demo-token")
    assert proc.returncode == 0
    digest = proc.stdout.strip()
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
