"""The event file: the default event loads; broken files fail with the key and the problem."""

import re
import subprocess
import sys

import pytest

from router.config import ConfigError, load_config, parse_config
from tests.conftest import DEFAULT_EVENT, ROOT


def default_text() -> str:
    return DEFAULT_EVENT.read_text(encoding="utf-8")


def test_default_event_is_the_seed_event():
    cfg = load_config(DEFAULT_EVENT)
    assert list(cfg.channels) == ["floor", "en", "fr", "ne", "es"]
    assert cfg.channels["ne"].name == "नेपाली"
    assert cfg.channels["fr"].name == "Français"
    assert {b.channel for b in cfg.booths.values()} == {"en", "fr", "ne", "es"}
    assert all(2 <= len(b.seats) <= 3 for b in cfg.booths.values())
    assert cfg.audio.floor_bed_gain == pytest.approx(0.1)
    assert cfg.ice.servers == []
    assert cfg.tokens.listener is None


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (("floor_bed_db = -20.0", "floor_bed_db = 6.0"), "audio.floor_bed_db", "between -90 and 0"),
        (("floor_bed_db = -20.0", 'floor_bed_db = "loud"'), "audio.floor_bed_db", ""),
        (("opus_bitrate = 64000", "opus_bitrate = 100"), "audio.opus_bitrate", "greater than"),
        (
            ("[audio]", "[audio]\nrtcp_report_interval = 0.2"),
            "audio.rtcp_report_interval",
            "greater than or equal to 1",
        ),
        (("[audio]", '[audio]\nfollow_room = "sometimes"'), "audio.follow_room", "boolean"),
        (('channel = "fr"', 'channel = "de"'), "booths.fr.channel", "unknown channel 'de'"),
        (('channel = "fr"', 'channel = "en"'), "booths.fr.channel", "already belongs"),
        (('seats = ["fr1", "fr2"]', 'seats = ["fr1", "fr1"]'), "booths.fr.seats", "unique"),
        (('token = "booth-fr-demo-token"', 'token = "floor-demo-token"'), "tokens", "distinct"),
        (
            ('technician = "technician-demo-token"', 'technician = "x"'),
            "tokens.technician",
            "at least 8",
        ),
        (("[channels.floor]", "[channels.original]"), "channels", '"floor" channel'),
        (("[limits]", "[limits]\nmax_listners = 5"), "limits.max_listners", "unknown key"),
    ],
)
def test_broken_config_names_key_and_problem(change, key, problem):
    old, new = change
    text = default_text()
    assert old in text
    with pytest.raises(ConfigError) as err:
        parse_config(text.replace(old, new, 1), "event.toml")
    message = str(err.value)
    assert message.startswith("event.toml:")
    assert key in message and problem in message, message


def test_bed_can_be_off():
    cfg = parse_config(default_text().replace("floor_bed_db = -20.0", 'floor_bed_db = "off"'))
    assert cfg.audio.floor_bed_gain == 0.0


def test_invalid_toml_and_missing_file():
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("[event\nname=", "x.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(ROOT / "nope.toml")


def test_cli_refuses_a_broken_file_with_a_clear_message(tmp_path):
    broken = tmp_path / "event.toml"
    broken.write_text(default_text().replace("opus_bitrate = 64000", "opus_bitrate = 1"))
    proc = subprocess.run(
        [sys.executable, "-m", "router", "serve", "--config", str(broken), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert re.search(r"audio\.opus_bitrate: .*greater than", proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
