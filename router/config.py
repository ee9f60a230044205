"""Event configuration: a TOML file validated into typed models.

A broken file stops the server before it binds a port, with a message that names the key.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

FLOOR = "floor"

Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
HASHED_SECRET = "sha256:"


def _secret_form(v: str) -> str:
    if v.startswith(HASHED_SECRET) and not re.fullmatch(r"[0-9a-f]{64}", v[len(HASHED_SECRET) :]):
        raise ValueError('a hashed token is "sha256:" and 64 lower-case hex digits')
    return v


# A token as written in the file: the token itself, or "sha256:<hex>" of it (the file then holds
# no usable secret; `interp-router hash-token` prints the form).
Secret = Annotated[
    str, StringConstraints(min_length=8, max_length=256), AfterValidator(_secret_form)
]


def secret_digest(secret: str) -> bytes:
    """The SHA-256 digest a configured token stands for, whether written plain or hashed."""
    if secret.startswith(HASHED_SECRET):
        return bytes.fromhex(secret[len(HASHED_SECRET) :])
    return hashlib.sha256(secret.encode("utf-8")).digest()


class ConfigError(Exception):
    """The event file cannot be used; the message names the key and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventInfo(_Strict):
    name: str = Field(min_length=1)
    venue: str = ""
    starts: str = ""
    floor_language: str = "en"


class AudioSettings(_Strict):
    # 64 kbit/s keeps 125 Hz-15 kHz within 3 dB through the whole chain even on a loaded
    # machine; at 48 the top band sometimes falls 4-5 dB, at 32 it can vanish (docs/CONFIG.md).
    opus_bitrate: int = Field(64000, ge=6000, le=510000)
    # Floor underneath an interpretation, in dB; "off" removes it.
    floor_bed_db: float | Literal["off"] = -20.0
    # Expected packet loss for Opus in-band FEC (percent). At 10 and more libopus codes every
    # frame in hybrid mode with FEC, and the band above 8 kHz drops away.
    opus_packet_loss_percent: int = Field(5, ge=1, le=100)
    # Listeners' packets go out from the tick straight through SRTP (router/media/direct_rtp.py);
    # false falls back to aiortc's own per-packet sender (about four times the CPU).
    direct_rtp: bool = True
    # The direct path's per-listener loop runs in C (router/media/_rtp_burst.c) when it was
    # built; false keeps it in Python, to compare the two (bench/sender.py).
    compiled_rtp: bool = True
    # The engine's ticks follow the room's desk feed as its blocks arrive, instead of a fixed
    # 20 ms grid that the floor must wait for (router/media/pacer.py); false keeps the grid.
    follow_room: bool = True
    # Seconds between the RTCP reports of every connection, on average: libwebrtc's audio
    # cadence; 1.0 is aiortc's own (router/signalling/rtcp_cadence.py).
    rtcp_report_interval: float = Field(5.0, ge=1.0, le=60.0)

    @field_validator("floor_bed_db")
    @classmethod
    def _bed_is_attenuation(cls, v: float | str) -> float | str:
        if isinstance(v, float) and not (-90.0 <= v <= 0.0):
            raise ValueError('must be between -90 and 0 dB, or "off"')
        return v

    @property
    def floor_bed_gain(self) -> float:
        if self.floor_bed_db == "off":
            return 0.0
        return float(math.pow(10.0, float(self.floor_bed_db) / 20.0))


class IceServer(_Strict):
    urls: list[str] = Field(min_length=1)
    username: str | None = None
    credential: str | None = None


class IceSettings(_Strict):
    # Empty means host candidates only: no STUN/TURN request leaves the machine.
    servers: list[IceServer] = []
    # Restricts the server's own host candidates (like Janus's ice_enforce_list).
    host_addresses: list[str] = []


class Channel(_Strict):
    name: str = Field(min_length=1)
    language: str | None = None


class Booth(_Strict):
    channel: Ident
    seats: list[Ident] = Field(min_length=1, max_length=4)
    token: Secret
    # Output B: the channel this booth can work into as well (retour), e.g. NE booth into "en".
    retour: Ident | None = None
    # Languages the booth understands: a seat on "auto" hears the floor when the floor language
    # is one of them, else the channel of a booth live from the floor. Empty: every language.
    understands: list[str] = []

    @field_validator("seats")
    @classmethod
    def _unique_seats(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("seat ids must be unique")
        return v


class Panellist(_Strict):
    name: str = Field(min_length=1)


class Tokens(_Strict):
    floor: Secret
    panellist: Secret
    technician: Secret
    # When set, listeners must present it; when absent, listening is public.
    listener: Secret | None = None


class Limits(_Strict):
    max_sdp_bytes: int = Field(65536, ge=1024, le=1_048_576)
    max_listeners: int = Field(2000, ge=1)
    max_monitors: int = Field(8, ge=1)  # technicians' monitor sessions
    # Sessions (of every kind) one client address may hold. Phones on the venue's Wi-Fi often
    # share one address behind NAT: keep it above the audience that may come that way.
    max_sessions_per_address: int = Field(500, ge=1)
    # Offers being negotiated at once (each costs a DTLS key and ICE gathering).
    max_pending_offers: int = Field(32, ge=1)
    retry_after_seconds: int = Field(5, ge=1, le=3600)
    # A request body (SDP, JSON) must arrive within this time: slow clients cannot hold a slot.
    body_timeout_seconds: float = Field(10.0, gt=0, le=300)
    # A publisher with no audio for this long is gone (no DELETE, network lost): its session is
    # closed and a live seat's channel falls back to the floor.
    publisher_silence_seconds: float = Field(3.0, ge=0.5, le=60)
    # A session whose connection is not up this long after its offer is closed.
    connect_timeout_seconds: float = Field(20.0, ge=1, le=300)


class TlsSettings(_Strict):
    """HTTPS served directly; relative paths are relative to the event file's folder."""

    certfile: Path | None = None
    keyfile: Path | None = None

    @model_validator(mode="after")
    def _both(self) -> TlsSettings:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile go together")
        return self

    @property
    def enabled(self) -> bool:
        return self.certfile is not None


class MetricsSettings(_Strict):
    # False: /metrics needs the technician token (Prometheus: `authorization` credentials).
    public: bool = False


class MediaSettings(_Strict):
    # Files the technician can play into the floor (the video message); a relative path is
    # relative to the event file's folder. Only files directly inside it can be played.
    directory: Path = Path("media")


class RtpInput(_Strict):
    """Plain RTP from a sound desk or another system, received as a floor source."""

    id: Ident
    host: str = "127.0.0.1"
    port: int = Field(ge=1024, le=65535)
    codec: Literal["opus", "L16", "L24"] = "opus"
    # None accepts any payload type; set it to drop everything else (RTCP is always ignored).
    payload_type: int | None = Field(None, ge=0, le=127)
    channels: int = Field(1, ge=1, le=2)
    sample_rate: int = Field(48000, ge=8000, le=192000)  # L16/L24; Opus is always 48 kHz
    # The room's own sound (a desk feed): kept out of the room's return like the floor station.
    in_room: bool = True

    @field_validator("host")
    @classmethod
    def _ip_address(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError("must be an IP address to listen on, e.g. 127.0.0.1") from None
        return v

    @model_validator(mode="after")
    def _opus_rate(self) -> RtpInput:
        if self.codec == "opus" and self.sample_rate != 48000:
            raise ValueError("sample_rate: Opus RTP is always 48000")
        return self


class JanusEdge(_Strict):
    """A Janus Gateway whose Streaming plugin fans one channel out to many listeners."""

    id: Ident
    # Janus's HTTP API (janus.transport.http), reachable from the router only: never browsers.
    api_url: str
    api_secret: str | None = None  # janus.jcfg general.api_secret, if set
    admin_key: str | None = None  # janus.plugin.streaming.jcfg general.admin_key, if set
    # Where the router sends the channels' RTP: channel i goes to rtp_port_base + 2*i.
    rtp_host: str
    rtp_port_base: int = Field(20000, ge=1024, le=65000)
    mountpoint_base: int = Field(8000, ge=1, le=2**31)  # mountpoint id of channel i: base + i
    max_listeners: int = Field(2500, ge=1)
    # Encrypt the RTP to this edge (SRTP, AES-CM-128 + HMAC-SHA1-80) with a key the router
    # makes at start and hands to the edge in each mountpoint's "create".
    srtp: bool = False

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", v):
            raise ValueError("must be Janus's HTTP API URL, e.g. http://10.0.0.21:8088/janus")
        return v.rstrip("/")

    @field_validator("rtp_host")
    @classmethod
    def _rtp_ip(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError("must be the IP address of the Janus host, e.g. 10.0.0.21") from None
        return v


class TurnSettings(_Strict):
    """coturn with use-auth-secret: the router mints time-limited credentials for browsers."""

    # coturn's static-auth-secret, in clear: the router signs with it (never sent to browsers).
    secret: str = Field(min_length=8, max_length=256)
    urls: list[str] = Field(min_length=1)
    ttl_seconds: int = Field(12 * 3600, ge=60, le=7 * 24 * 3600)
    user: str = Field("listener", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    @field_validator("urls")
    @classmethod
    def _turn_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not re.match(r"^(turn|turns|stun):[^\s]+$", url):
                raise ValueError(f"{url!r} is not a turn:, turns: or stun: URL")
        return v


class EventConfig(_Strict):
    event: EventInfo
    audio: AudioSettings = AudioSettings()
    ice: IceSettings = IceSettings()
    tokens: Tokens
    channels: dict[Ident, Channel]
    booths: dict[Ident, Booth]
    panellists: dict[Ident, Panellist] = {}
    limits: Limits = Limits()
    tls: TlsSettings = TlsSettings()
    metrics: MetricsSettings = MetricsSettings()
    media: MediaSettings = MediaSettings()
    rtp_inputs: list[RtpInput] = []
    edges: list[JanusEdge] = []  # Janus Streaming edges; empty: listeners use local WHEP
    turn: TurnSettings | None = None

    @model_validator(mode="after")
    def _consistent(self) -> EventConfig:
        if FLOOR not in self.channels:
            raise ValueError(f'channels: a "{FLOOR}" channel (the original) is required')
        used: dict[str, str] = {}
        for booth_id, booth in self.booths.items():
            if booth.channel == FLOOR:
                raise ValueError(f"booths.{booth_id}.channel: a booth cannot work into the floor")
            if booth.channel not in self.channels:
                raise ValueError(
                    f"booths.{booth_id}.channel: unknown channel {booth.channel!r} "
                    f"(known: {', '.join(self.channels)})"
                )
            if booth.channel in used:
                raise ValueError(
                    f"booths.{booth_id}.channel: channel {booth.channel!r} already belongs "
                    f"to booth {used[booth.channel]!r}"
                )
            used[booth.channel] = booth_id
            if booth.retour is not None and (
                booth.retour not in self.channels or booth.retour in (FLOOR, booth.channel)
            ):
                raise ValueError(
                    f"booths.{booth_id}.retour: must be another language channel "
                    f"(known: {', '.join(self.language_channels)})"
                )
        secrets = [self.tokens.floor, self.tokens.panellist, self.tokens.technician]
        secrets += [b.token for b in self.booths.values()]
        if self.tokens.listener:
            secrets.append(self.tokens.listener)
        if len({secret_digest(s) for s in secrets}) != len(secrets):
            raise ValueError("tokens: every role and booth needs its own distinct token")
        seen_ids: set[str] = set()
        seen_ports: set[tuple[str, int]] = set()
        for i, rtp in enumerate(self.rtp_inputs):
            if rtp.id in seen_ids:
                raise ValueError(f"rtp_inputs.{i}.id: {rtp.id!r} is used twice")
            if (rtp.host, rtp.port) in seen_ports:
                raise ValueError(f"rtp_inputs.{i}.port: {rtp.host}:{rtp.port} is used twice")
            seen_ids.add(rtp.id)
            seen_ports.add((rtp.host, rtp.port))
        self._check_edges()
        return self

    def _check_edges(self) -> None:
        ids: set[str] = set()
        targets: dict[str, list[tuple[int, int]]] = {}
        span = 2 * len(self.channels)  # an RTP port and its (unused) RTCP neighbour per channel
        for i, edge in enumerate(self.edges):
            if edge.id in ids:
                raise ValueError(f"edges.{i}.id: {edge.id!r} is used twice")
            ids.add(edge.id)
            if edge.rtp_port_base + span > 65536:
                raise ValueError(
                    f"edges.{i}.rtp_port_base: {len(self.channels)} channels need ports "
                    f"{edge.rtp_port_base}..{edge.rtp_port_base + span - 1}, past 65535"
                )
            lo, hi = edge.rtp_port_base, edge.rtp_port_base + span
            for other_lo, other_hi in targets.get(edge.rtp_host, []):
                if lo < other_hi and other_lo < hi:
                    raise ValueError(
                        f"edges.{i}.rtp_port_base: ports {lo}..{hi - 1} on {edge.rtp_host} "
                        "overlap another edge's"
                    )
            targets.setdefault(edge.rtp_host, []).append((lo, hi))

    @property
    def language_channels(self) -> list[str]:
        return [c for c in self.channels if c != FLOOR]


def parse_config(text: str, source: str = "<config>") -> EventConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return EventConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid event config:\n{_describe(exc)}") from exc


def load_config(path: Path) -> EventConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the event config: {exc.strerror}") from exc
    config = parse_config(text, str(path))
    if not config.media.directory.is_absolute():
        media = config.media.model_copy(update={"directory": path.parent / config.media.directory})
        config = config.model_copy(update={"media": media})
    if config.tls.certfile is not None and config.tls.keyfile is not None:
        tls = config.tls.model_copy(
            update={
                "certfile": path.parent / config.tls.certfile,
                "keyfile": path.parent / config.tls.keyfile,
            }
        )
        config = config.model_copy(update={"tls": tls})
    return config


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)
