"""Command line: `interp-router serve --config FILE` and `interp-router demo`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import uvicorn

from router.config import ConfigError, load_config
from router.signalling.ice import default_host_addresses

DEFAULT_CONFIG = Path("config/event.toml")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="interp-router", description="Hybrid meeting interpretation channel router"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run an event from its config file")
    serve.add_argument("--config", type=Path, required=True, help="event TOML file")
    demo = sub.add_parser("demo", help="run the default event with recorded speech, no hardware")
    demo.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="event TOML file")
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
        p.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"interp-router: {exc}", file=sys.stderr)
        return 2
    if args.public_url and not args.public_url.startswith(("http://", "https://")):
        print("interp-router: --public-url must start with http:// or https://", file=sys.stderr)
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
        print(f"Demo event: open http://{args.host}:{args.port}/ and pick a language.", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
