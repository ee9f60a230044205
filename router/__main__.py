"""Command line: `interp-router serve --config FILE`, `interp-router demo`, `hash-token`."""

from __future__ import annotations

import argparse
import gc
import getpass
import logging
import sys
from pathlib import Path
from typing import Any

import uvicorn

from router.config import ConfigError, EventConfig, load_config
from router.signalling.ice import default_host_addresses

DEFAULT_CONFIG = Path("config/event.toml")
# On SIGTERM uvicorn waits for open requests at most this long before the lifespan closes
# every peer and finishes every recording.
GRACEFUL_SHUTDOWN_SECONDS = 10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="interp-router", description="Hybrid meeting interpretation channel router"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run an event from its config file")
    serve.add_argument("--config", type=Path, required=True, help="event TOML file")
    demo = sub.add_parser("demo", help="run the default event with recorded speech, no hardware")
    demo.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="event TOML file")
    hashing = sub.add_parser(
        "hash-token", help='print a token\'s "sha256:..." form for the event file'
    )
    hashing.add_argument("token", nargs="?", help="the token (asked for when omitted)")
    for p in (serve, demo):
        p.add_argument("--host", default="127.0.0.1", help="address to listen on")
        p.add_argument("--port", type=int, default=8000)
        p.add_argument(
            "--ice-host",
            action="append",
            default=[],
            metavar="ADDR",
            help="offer ICE host candidates only on ADDR (repeatable); "
            "defaults to the listening address when it is loopback",
        )
        p.add_argument(
            "--recordings", type=Path, default=Path("recordings"), help="recordings directory"
        )
        p.add_argument(
            "--public-url",
            metavar="URL",
            help="the server's address as listeners reach it (behind a proxy: "
            "https://interp.example.org); the room's QR code links there",
        )
        p.add_argument(
            "--tls-cert",
            type=Path,
            metavar="FILE",
            help="serve HTTPS with this certificate (PEM chain); overrides [tls] certfile",
        )
        p.add_argument(
            "--tls-key", type=Path, metavar="FILE", help="the certificate's private key (PEM)"
        )
        p.add_argument(
            "--forwarded-allow-ips",
            default="127.0.0.1",
            metavar="ADDRS",
            help="proxies whose X-Forwarded-For/-Proto are trusted (comma-separated); "
            "per-address limits then see the real client",
        )
        p.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def tls_files(args: argparse.Namespace, config: EventConfig) -> tuple[Path, Path] | None:
    """The certificate and key to serve HTTPS with, or None; ConfigError when unusable."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    cert, key = args.tls_cert, args.tls_key
    if cert is None and config.tls.certfile is not None and config.tls.keyfile is not None:
        cert, key = config.tls.certfile, config.tls.keyfile
    if cert is None or key is None:
        return None
    for what, path in (("certificate", cert), ("key", key)):
        try:
            path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"TLS {what} {path}: {exc.strerror}") from exc
    return cert, key


def uvicorn_options(args: argparse.Namespace, config: EventConfig) -> dict[str, Any]:
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "forwarded_allow_ips": args.forwarded_allow_ips,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }
    tls = tls_files(args, config)
    if tls is not None:
        options["ssl_certfile"], options["ssl_keyfile"] = str(tls[0]), str(tls[1])
    return options


def hash_token_command(token: str | None) -> int:
    from router.control.tokens import hash_token

    secret = token if token is not None else getpass.getpass("token: ")
    if len(secret) < 8:
        print("interp-router: a token has at least 8 characters", file=sys.stderr)
        return 2
    print(hash_token(secret))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "hash-token":
        return hash_token_command(args.token)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"interp-router: {exc}", file=sys.stderr)
        return 2
    if args.public_url and not args.public_url.startswith(("http://", "https://")):
        print("interp-router: --public-url must start with http:// or https://", file=sys.stderr)
        return 2
    try:
        options = uvicorn_options(args, config)
    except ConfigError as exc:
        print(f"interp-router: {exc}", file=sys.stderr)
        return 2
    from router.app import create_app

    ice_hosts = args.ice_host or default_host_addresses(args.host, config.ice.host_addresses)
    app = create_app(
        config,
        ice_hosts=ice_hosts,
        demo=args.command == "demo",
        recordings=args.recordings,
        public_url=args.public_url,
    )
    if args.command == "demo":
        scheme = "https" if "ssl_certfile" in options else "http"
        print(
            f"Demo event: open {scheme}://{args.host}:{args.port}/ and pick a language.",
            flush=True,
        )
    # Everything imported so far lives as long as the process. A full collection walking it
    # all (aiortc, av, numpy, FastAPI, pydantic) stopped the event loop for 140 ms on the bench
    # machine: seven ticks of audio late at once. Frozen, collections walk only what the event
    # creates (docs/PERFORMANCE.md, "Loop stalls").
    gc.collect()
    gc.freeze()
    uvicorn.run(app, **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
