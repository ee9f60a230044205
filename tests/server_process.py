"""The router as its own process (`python -m router serve`), for TLS and shutdown tests."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import DEFAULT_EVENT, ROOT, free_port


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, valid for a day; returns (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def event_file(folder: Path, extra: str = "") -> Path:
    """The default event in `folder` (its media folder too), with `extra` TOML appended."""
    (folder / "media").mkdir(exist_ok=True)
    for f in (DEFAULT_EVENT.parent / "media").iterdir():
        (folder / "media" / f.name).write_bytes(f.read_bytes())
    path = folder / "event.toml"
    path.write_text(DEFAULT_EVENT.read_text(encoding="utf-8") + "\n" + extra, encoding="utf-8")
    return path


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `sig` and wait for the process to end; 0 when it shut down cleanly.

        Uvicorn re-raises the signal it caught once the shutdown is complete, so a clean
        SIGTERM exit is -SIGTERM with the lifespan's shutdown logged."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                raise TimeoutError(f"the server did not stop in {timeout} s:\n{self.output()}")
            await asyncio.sleep(0.05)
        code = self.proc.returncode
        if code == -sig and "Application shutdown complete" in self.output():
            return 0
        return code


async def start_process(
    config: Path,
    args: list[str] | None = None,
    scheme: str = "http",
    verify: object = True,
    cwd: Path | None = None,
) -> ServerProcess:
    port = free_port()
    log = config.parent / f"server-{port}.log"
    cmd = [sys.executable, "-m", "router", "serve", "--config", str(config), "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
            [*cmd, *(args or [])], cwd=cwd or ROOT, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    server = ServerProcess(proc, f"{scheme}://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(verify=verify, timeout=5) as http:  # type: ignore[arg-type]
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}:\n{server.output()}")
            try:
                if (await http.get(server.url + "/api/health")).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"the server did not start:\n{server.output()}")
            await asyncio.sleep(0.2)
