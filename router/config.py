"""Event configuration: a TOML file validated into typed models.

A broken file stops the server before it binds a port, with a message that names the key.
"""

from __future__ import annotations

import ipaddress
import math
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
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
Secret = Annotated[str, StringConstraints(min_length=8, max_length=256)]


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
    opus_bitrate: int = Field(32000, ge=6000, le=510000)
    # Floor underneath an interpretation, in dB; "off" removes it.
    floor_bed_db: float | Literal["off"] = -20.0
    # Expected packet loss for Opus in-band FEC (percent).
    opus_packet_loss_percent: int = Field(10, ge=1, le=100)

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


class EventConfig(_Strict):
    event: EventInfo
    audio: AudioSettings = AudioSettings()
    ice: IceSettings = IceSettings()
    tokens: Tokens
    channels: dict[Ident, Channel]
    booths: dict[Ident, Booth]
    panellists: dict[Ident, Panellist] = {}
    limits: Limits = Limits()
    media: MediaSettings = MediaSettings()
    rtp_inputs: list[RtpInput] = []

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
        secrets = [self.tokens.floor, self.tokens.panellist, self.tokens.technician]
        secrets += [b.token for b in self.booths.values()]
        if self.tokens.listener:
            secrets.append(self.tokens.listener)
        if len(set(secrets)) != len(secrets):
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
        return self

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
