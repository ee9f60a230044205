"""A real Janus Gateway for the edge tests: generated config, loopback only, restartable.

Janus never gathers ICE candidates on a loopback interface (ice.c skips IFF_LOOPBACK), so the
test's own network namespace gets a veth pair carrying 127.0.0.2 and Janus is told to use only
that interface: every packet still stays on 127.0.0.0/8 inside the namespace. libnice binds
its sockets to that device, and a device-bound socket cannot send to 127.0.0.1 (EINVAL): the
aiortc peers that talk to Janus offer 127.0.0.2 as well.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

PLUGINS = Path("/usr/lib/x86_64-linux-gnu/janus")
ICE_IFACE = "jx0"  # veth end carrying ICE_ADDRESS
ICE_ADDRESS = "127.0.0.2"
API_SECRET = "test-api-secret"
ADMIN_KEY = "test-admin-key"


def janus_binary() -> str:
    """The janus binary; with CI=true a missing one fails the test (nothing is skipped in CI)."""
    path = shutil.which("janus")
    if path is None:
        message = "janus is not installed (Debian package `janus`; scripts/test installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _only_loopback_namespace() -> None:
    ifaces = {name for _, name in socket.if_nameindex()} - {"lo", ICE_IFACE, "jx1"}
    if ifaces:
        pytest.fail(
            f"janus tests run in a loopback-only network namespace; found {sorted(ifaces)} "
            "(run: unshare -n sh -c 'ip link set lo up && python -m pytest ...')"
        )


def add_ice_interface() -> None:
    _only_loopback_namespace()
    if ICE_IFACE in {name for _, name in socket.if_nameindex()}:
        return
    for cmd in (
        ["ip", "link", "add", ICE_IFACE, "type", "veth", "peer", "name", "jx1"],
        ["ip", "addr", "add", f"{ICE_ADDRESS}/32", "dev", ICE_IFACE],
        ["ip", "link", "set", ICE_IFACE, "up"],
        ["ip", "link", "set", "jx1", "up"],
    ):
        subprocess.run(cmd, check=True, capture_output=True)


def remove_ice_interface() -> None:
    subprocess.run(["ip", "link", "del", ICE_IFACE], capture_output=True)


def free_udp_block(count: int) -> int:
    """An even base port with `count` free UDP ports from it."""
    for base in range(21000, 29000, 2 * count):
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("0.0.0.0", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port block")


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


JANUS_JCFG = """general: {{
    configs_folder = "{dir}"
    plugins_folder = "{plugins}/plugins"
    transports_folder = "{plugins}/transports"
    events_folder = "{plugins}/events"
    loggers_folder = "{plugins}/loggers"
    debug_level = 4
    api_secret = "{api_secret}"
    session_timeout = 60
}}
media: {{
    rtp_port_range = "40000-40999"
}}
nat: {{
    ice_enforce_list = "{iface}"
    ignore_mdns = true
}}
plugins: {{
    disable = "{no_plugins}"
}}
transports: {{
    disable = "{no_transports}"
}}
loggers: {{
    disable = "{no_loggers}"
}}
events: {{
    broadcast = false
}}
"""

HTTP_JCFG = """general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    port = {port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
}}
"""

STREAMING_JCFG = """general: {{
    admin_key = "{admin_key}"
    rtp_port_range = "41000-41999"
}}
"""


def _all_but(kind: str, keep: str | None) -> str:
    """Janus loads every module it finds unless disabled: keep only what the test needs."""
    folder = PLUGINS / kind
    names = sorted(p.name for p in folder.glob("libjanus_*.so")) if folder.exists() else []
    return ",".join(n for n in names if n != keep)


@dataclass
class JanusProcess:
    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    started_in: float = 0.0  # seconds from exec to the HTTP API answering

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/janus"

    def write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "janus.jcfg").write_text(
            JANUS_JCFG.format(
                dir=self.directory,
                plugins=PLUGINS,
                api_secret=API_SECRET,
                iface=ICE_IFACE,
                no_plugins=_all_but("plugins", "libjanus_streaming.so"),
                no_transports=_all_but("transports", "libjanus_http.so"),
                no_loggers=_all_but("loggers", None),
            )
        )
        (self.directory / "janus.transport.http.jcfg").write_text(HTTP_JCFG.format(port=self.port))
        (self.directory / "janus.plugin.streaming.jcfg").write_text(
            STREAMING_JCFG.format(admin_key=ADMIN_KEY)
        )

    def start(self, timeout: float = 20.0) -> None:
        binary = janus_binary()
        log = open(self.directory / "janus.out", "ab")
        t0 = time.monotonic()
        self.process = subprocess.Popen(
            [binary, "-C", str(self.directory / "janus.jcfg"), "-F", str(self.directory)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        while time.monotonic() - t0 < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"janus exited: {self.tail()}")
            try:
                if httpx.get(f"{self.api_url}/info", timeout=1.0).status_code == 200:
                    self.started_in = time.monotonic() - t0
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"janus did not answer in {timeout} s: {self.tail()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def tail(self) -> str:
        path = self.directory / "janus.out"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""
