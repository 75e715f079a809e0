"""Config parsing: the example loads, and every mistake names the file and the key."""

from __future__ import annotations

import os
import zoneinfo
from datetime import UTC
from pathlib import Path

import pytest

from nextround.daemon.config import (
    default_config_path,
    default_state_dir,
    is_loopback,
    load_config,
)
from nextround.daemon.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
MINIMAL = """
[imap]
host = "imap.example.org"
username = "me@example.org"

[identity]
name = "Alex Doe"
email = "me@example.org"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_loads_with_documented_defaults() -> None:
    config = load_config(REPO / "config.example.toml")
    assert config.imap.host == "imap.example.org"
    assert config.imap.security == "tls"
    assert config.imap.effective_port == 993
    assert config.sync.backfill_days == 30
    assert config.sync.max_message_bytes == 10_000_000
    assert config.identity.name == "Alex Doe"


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.identity.zone is None  # the machine's own time zone
    assert config.imap.inbox == "INBOX"
    assert config.imap.drafts == ""
    assert config.state.database == ""


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(AttributeError):
        config.imap.host = "evil"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("username", "usrname"), '[imap] usrname: unknown key (did you mean "username"?)'),
        (("[identity]", "[identiy]"), 'identiy: unknown section (did you mean "identity"?)'),
        (('host = "imap.example.org"\n', ""), "[imap] host: required key is missing"),
        (('security = "tls"', 'security = "ssl"'), "[imap] security: must be one of"),
        (("port = 0", 'port = "993"'), "[imap] port: must be an integer, not a string"),
        (("port = 0", "port = true"), "[imap] port: must be an integer, not a boolean"),
        (
            ("backfill_days = 30", "backfill_days = -1"),
            "[sync] backfill_days: must be between 0 and 36500",
        ),
        (
            ("backfill_days = 30", "backfill_days = 99999999999"),
            "[sync] backfill_days: must be between 0 and 36500",
        ),
        (
            ('follow_up_after = "7d"', 'follow_up_after = "99999999999d"'),
            "[lifecycle] follow_up_after: too long",
        ),
        (
            ('follow_up_after = "7d"', 'follow_up_after = "36501d"'),
            "[lifecycle] follow_up_after: must be at most 36500d",
        ),
        (("timeout = 60.0", "timeout = nan"), "[imap] timeout: must be a number of seconds"),
        (("timeout = 60.0", "timeout = inf"), "[imap] timeout: must be a number of seconds"),
        (('email = "me@example.org"', 'email = "nobody"'), "[identity] email: not a plain address"),
        (
            ('# timezone = "Europe/Berlin"', 'timezone = "Europe/Berlinn"'),
            "[identity] timezone: 'Europe/Berlinn' is not a time zone name",
        ),
        (
            ('# timezone = "Europe/Berlin"', 'timezone = "../../etc/passwd"'),
            "[identity] timezone: '../../etc/passwd' is not a time zone name",
        ),
        (
            ('# timezone = "Europe/Berlin"', 'timezone = "Europe"'),  # a directory of zones
            "[identity] timezone: 'Europe' is not a time zone name",
        ),
        (
            ('security = "tls"', 'security = "plain"'),
            "[imap] security: plain is only allowed to a loopback host",
        ),
        (("[sync]", "sync = 3\n[sync2]"), "sync2: unknown section"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, edit: tuple[str, str], expected: str) -> None:
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    old, new = edit
    assert old in text
    path = write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_both_password_sources_is_an_error(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'username = "me@example.org"',
        'username = "me@example.org"\npassword_file = "pw"\npassword_command = "pass x"',
    )
    with pytest.raises(ConfigError, match="password_command: set either"):
        load_config(write(tmp_path, text))


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[imap\nhost="))
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    text = MINIMAL + '\n[state]\ndatabase = "data/state.db"\n'
    text = text.replace('username = "me@example.org"', 'username = "me"\nca_file = "ca.pem"')
    config = load_config(write(tmp_path, text))
    assert config.database_path == tmp_path / "data" / "state.db"
    assert config.imap.ca_file == str(tmp_path / "ca.pem")


def test_default_locations_follow_xdg_and_systemd() -> None:
    env = {"HOME": "/home/a", "XDG_CONFIG_HOME": "/cfg", "XDG_STATE_HOME": "/st"}
    assert default_config_path(env) == Path("/cfg/nextround/config.toml")
    assert default_state_dir(env) == Path("/st/nextround")
    assert default_config_path({"HOME": "/home/a"}) == Path("/home/a/.config/nextround/config.toml")
    assert default_state_dir({"HOME": "/home/a"}) == Path("/home/a/.local/state/nextround")
    assert default_config_path({**env, "NEXTROUND_CONFIG": "/x.toml"}) == Path("/x.toml")
    systemd = {**env, "CONFIGURATION_DIRECTORY": "/etc/nextround", "STATE_DIRECTORY": "/var/lib/n"}
    assert default_config_path(systemd) == Path("/etc/nextround/config.toml")
    assert default_state_dir(systemd) == Path("/var/lib/n")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("::1", True),
        ("[::1]", True),
        ("imap.example.org", False),
        ("10.0.0.1", False),
        ("localhost.evil.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("[::1]", "is not a host name or IP address (write '::1', without brackets)"),
        ("localhost..", "is not a host name or IP address"),
        ("imap.example.org:993", "is not a host name or IP address (the port goes in [imap] port)"),
        ("imap example.org", "is not a host name or IP address"),
        (" imap.example.org", "is not a host name or IP address"),
        ("-imap.example.org", "is not a host name or IP address"),
        ("a" * 64 + ".example.org", "is not a host name or IP address"),
        ("imap.example.org/inbox", "is not a host name or IP address"),
    ],
)
def test_a_host_that_is_no_host_is_named(tmp_path: Path, host: str, problem: str) -> None:
    path = write(tmp_path, MINIMAL.replace('"imap.example.org"', f"{host!r}"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: [imap] host: {host!r} {problem}"


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost.", "::1", "127.0.0.1", "imap.example.org", "mail_1.example.org",
     "bücher.example", "fe80::1%eth0"],
)  # fmt: skip
def test_names_and_addresses_are_hosts(tmp_path: Path, host: str) -> None:
    assert load_config(write(tmp_path, MINIMAL.replace("imap.example.org", host))).imap.host == host


def test_repr_holds_no_secret(tmp_path: Path) -> None:
    os.environ.pop("NEXTROUND_IMAP_PASSWORD", None)
    config = load_config(write(tmp_path, MINIMAL))
    assert "password" not in repr(config).replace("password_file", "").replace(
        "password_command", ""
    )


def test_a_time_zone_for_dates_in_drafts(tmp_path: Path) -> None:
    text = MINIMAL.replace("[identity]", '[identity]\ntimezone = "America/New_York"')
    zone = load_config(write(tmp_path, text)).identity.zone
    assert zone is not None and str(zone) == "America/New_York"


def test_without_time_zone_data_utc_still_works_and_other_names_say_why(
    tmp_path: Path,
) -> None:
    zoneinfo.reset_tzpath(to=[])  # a machine without /usr/share/zoneinfo or tzdata
    zoneinfo.ZoneInfo.clear_cache()
    try:
        utc = MINIMAL.replace("[identity]", '[identity]\ntimezone = "UTC"')
        assert load_config(write(tmp_path, utc)).identity.zone == UTC
        berlin = MINIMAL.replace("[identity]", '[identity]\ntimezone = "Europe/Berlin"')
        with pytest.raises(ConfigError, match="this machine has no time zone data"):
            load_config(write(tmp_path, berlin))
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache()
