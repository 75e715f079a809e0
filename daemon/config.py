"""The TOML configuration, parsed once into frozen dataclasses.

Every error names the file and the key, and suggests the nearest valid key for a typo. The
password is never part of the configuration: only where to get it (see `secrets.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import ipaddress
import logging
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from nextround.classifier.message import plain_address
from nextround.daemon.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.55
Security = Literal["tls", "starttls", "plain"]
Auth = Literal["login", "oauth2"]


@dataclass(frozen=True)
class ImapConfig:
    host: str
    username: str
    security: Security = "tls"
    port: int = 0  # 0: follows security (993 for tls, 143 otherwise)
    password_file: str = ""
    password_command: str = ""
    auth: Auth = "login"  # oauth2: XOAUTH2 with a token from oauth2_token_command
    oauth2_token_command: str = ""
    inbox: str = "INBOX"
    drafts: str = ""
    sent: str = ""
    ca_file: str = ""
    timeout: float = 60.0

    @property
    def effective_port(self) -> int:
        if self.port:
            return self.port
        return 993 if self.security == "tls" else 143


@dataclass(frozen=True)
class IdentityConfig:
    name: str
    email: str
    # Where dates in drafts are local ("my note from 3 November"): an IANA name; empty, the
    # machine's own time zone.
    timezone: str = ""

    @property
    def zone(self) -> tzinfo | None:
        """The time zone dates in drafts are given in; None: the machine's."""
        if not self.timezone:
            return None
        return UTC if self.timezone == "UTC" else ZoneInfo(self.timezone)  # UTC needs no files


@dataclass(frozen=True)
class SyncConfig:
    backfill_days: int = 30
    max_message_bytes: int = 10_000_000


@dataclass(frozen=True)
class StateConfig:
    database: str = ""


@dataclass(frozen=True)
class ClassifierConfig:
    # The score from which a mail counts as a rejection; the default is the lowest value at
    # which the held-out evaluation kept precision at 0.98 or more (see README).
    threshold: float = DEFAULT_THRESHOLD
    extra_examples: str = ""


@dataclass(frozen=True)
class LifecycleConfig:
    # Durations are strings like "7d", "36h", "90m" (days, hours, minutes, seconds).
    follow_up_after: str = "7d"
    close_after: str = "7d"
    send_within: str = "3d"
    stages: tuple[str, ...] = ("interview", "application")

    @property
    def follow_up_delay(self) -> timedelta:
        return parse_duration(self.follow_up_after)

    @property
    def close_delay(self) -> timedelta:
        return parse_duration(self.close_after)

    @property
    def send_delay(self) -> timedelta:
        return parse_duration(self.send_within)


@dataclass(frozen=True)
class ScheduleConfig:
    poll_interval: str = "5m"  # a full cycle at least this often
    idle: bool = True  # IMAP IDLE on INBOX, so new mail is handled within seconds
    max_backoff: str = "5m"  # the longest wait between retries while the server is away

    @property
    def poll_delay(self) -> timedelta:
        return parse_duration(self.poll_interval)

    @property
    def backoff_cap(self) -> timedelta:
        return parse_duration(self.max_backoff)


@dataclass(frozen=True)
class TemplatesConfig:
    dir: str = ""  # a file here with a shipped template's name overrides it


@dataclass(frozen=True)
class Config:
    path: Path
    imap: ImapConfig
    identity: IdentityConfig
    sync: SyncConfig = field(default_factory=SyncConfig)
    state: StateConfig = field(default_factory=StateConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    templates: TemplatesConfig = field(default_factory=TemplatesConfig)

    @property
    def database_path(self) -> Path:
        if self.state.database:
            return Path(self.state.database)
        return default_state_dir() / "state.db"

    @property
    def state_dir(self) -> Path:
        return self.database_path.parent


# The sections of the file, in the order config.example.toml documents them.
SECTIONS: dict[str, type] = {
    "imap": ImapConfig,
    "identity": IdentityConfig,
    "sync": SyncConfig,
    "state": StateConfig,
    "classifier": ClassifierConfig,
    "lifecycle": LifecycleConfig,
    "schedule": ScheduleConfig,
    "templates": TemplatesConfig,
}
_PATH_KEYS = {
    ("imap", "password_file"),
    ("imap", "ca_file"),
    ("state", "database"),
    ("classifier", "extra_examples"),
    ("templates", "dir"),
}


def default_config_path(environ: typing.Mapping[str, str] | None = None) -> Path:
    """`NEXTROUND_CONFIG`, else systemd's configuration directory, else the XDG location."""
    env = os.environ if environ is None else environ
    if env.get("NEXTROUND_CONFIG"):
        return Path(env["NEXTROUND_CONFIG"])
    if env.get("CONFIGURATION_DIRECTORY"):
        return Path(env["CONFIGURATION_DIRECTORY"].split(":")[0]) / "config.toml"
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "nextround" / "config.toml"


def default_state_dir(environ: typing.Mapping[str, str] | None = None) -> Path:
    """systemd's state directory when run as a service, else `$XDG_STATE_HOME/nextround`."""
    env = os.environ if environ is None else environ
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = env.get("XDG_STATE_HOME") or str(
        Path(env.get("HOME", "~")).expanduser() / ".local" / "state"
    )
    return Path(base) / "nextround"


def load_config(path: Path) -> Config:
    """Read and validate the file at `path`; raise ConfigError naming file and key."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (create one with `nextround init` or pass -c PATH)"
        ) from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return parse_config(document, path)


def parse_config(document: dict[str, Any], path: Path) -> Config:
    _reject_unknown(document, SECTIONS, path, prefix="")
    sections: dict[str, Any] = {}
    for name, section_type in SECTIONS.items():
        table = document.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{name}] must be a table, not {_type_name(table)}")
        table = _resolve_paths(name, table, path)
        sections[name] = _build(section_type, table, path, name)
    config = Config(path=path, **sections)
    _validate(config)
    return config


def _resolve_paths(section: str, table: dict[str, Any], path: Path) -> dict[str, Any]:
    """Relative paths are relative to the config file, so the file can move with its data."""
    resolved = dict(table)
    for key, value in table.items():
        if (section, key) in _PATH_KEYS and isinstance(value, str) and value:
            candidate = Path(value).expanduser()
            if not candidate.is_absolute():
                candidate = path.parent / candidate
            resolved[key] = str(candidate)
    return resolved


def _build(section_type: type, table: dict[str, Any], path: Path, section: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(section_type)}
    hints = typing.get_type_hints(section_type)
    _reject_unknown(table, fields, path, prefix=f"[{section}] ")
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in table:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{path}: [{section}] {name}: required key is missing")
            continue
        values[name] = _check_type(table[name], hints[name], path, f"[{section}] {name}")
    return section_type(**values)


def _reject_unknown(
    table: typing.Mapping[str, Any], known: typing.Iterable[str], path: Path, prefix: str
) -> None:
    known = list(known)
    for key in table:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f' (did you mean "{near[0]}"?)' if near else ""
            what = "section" if not prefix else "key"
            raise ConfigError(f"{path}: {prefix}{key}: unknown {what}{hint}")


def _check_type(value: Any, hint: Any, path: Path, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            listed = " | ".join(str(choice) for choice in choices)
            raise ConfigError(f"{path}: {where}: must be one of {listed}, not {value!r}")
        return value
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list):
            raise ConfigError(f"{path}: {where}: must be a list, not {_type_name(value)}")
        return tuple(_check_type(entry, item, path, where) for entry in value)
    if origin in (typing.Union, types.UnionType):
        raise AssertionError(f"unsupported config type {hint}")  # pragma: no cover
    # bool is an int in Python, but `port = true` is a mistake worth naming.
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(
            f"{path}: {where}: must be {_type_name_of(hint)}, not {_type_name(value)}"
        )
    if isinstance(value, str) and "\0" in value:  # no path, command or name holds one
        raise ConfigError(f"{path}: {where}: must not contain a NUL character")
    return value


def _type_name_of(hint: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        hint, hint.__name__
    )


def _type_name(value: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
    names.update({list: "a list", dict: "a table"})
    return names.get(type(value), type(value).__name__)


def _validate(config: Config) -> None:
    path, imap = config.path, config.imap
    if not imap.host.strip():
        raise ConfigError(f"{path}: [imap] host: must not be empty")
    if problem := host_problem(imap.host):
        raise ConfigError(f"{path}: [imap] host: {imap.host!r} {problem}")
    if not 0 <= imap.port <= 65535:
        raise ConfigError(f"{path}: [imap] port: must be between 0 (the default) and 65535")
    if imap.security == "plain" and not is_loopback(imap.host):
        raise ConfigError(
            f"{path}: [imap] security: plain is only allowed to a loopback host, "
            f"not {imap.host!r} (use tls or starttls)"
        )
    if imap.password_file and imap.password_command:
        raise ConfigError(
            f"{path}: [imap] password_command: set either password_file or password_command"
        )
    if imap.auth == "oauth2" and not imap.oauth2_token_command:
        raise ConfigError(
            f'{path}: [imap] oauth2_token_command: required when auth = "oauth2" '
            "(a command that prints a fresh access token)"
        )
    if not 0 < imap.timeout <= 3600:  # also refuses nan
        raise ConfigError(f"{path}: [imap] timeout: must be a number of seconds up to 3600")
    if not plain_address(config.identity.email):
        raise ConfigError(
            f"{path}: [identity] email: not a plain address of ASCII characters, as "
            "user@example.org (it is written into every draft's From)"
        )
    if config.identity.timezone:
        try:
            config.identity.zone  # noqa: B018 - loaded here, so a bad name fails at start
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory's name
            missing = "" if available_timezones() else " (this machine has no time zone data)"
            raise ConfigError(
                f"{path}: [identity] timezone: {config.identity.timezone!r} is not a time zone "
                f'name{missing} (examples: "Europe/Berlin", "America/New_York", "UTC")'
            ) from None
    if not 0 <= config.sync.backfill_days <= MAX_DAYS:
        raise ConfigError(f"{path}: [sync] backfill_days: must be between 0 and {MAX_DAYS}")
    if not 0.0 < config.classifier.threshold < 1.0:
        raise ConfigError(f"{path}: [classifier] threshold: must be between 0 and 1")
    durations = [
        ("lifecycle", config.lifecycle, ("follow_up_after", "close_after", "send_within")),
        ("schedule", config.schedule, ("poll_interval", "max_backoff")),
    ]
    for section, values, keys in durations:
        for key in keys:
            try:
                duration = parse_duration(getattr(values, key))
            except ValueError as error:
                raise ConfigError(f"{path}: [{section}] {key}: {error}") from None
            if duration.total_seconds() <= 0:
                raise ConfigError(f"{path}: [{section}] {key}: must be longer than zero")
            if duration > timedelta(days=MAX_DAYS):
                raise ConfigError(f"{path}: [{section}] {key}: must be at most {MAX_DAYS}d")
    for stage in config.lifecycle.stages:
        if stage not in ("interview", "application"):
            raise ConfigError(
                f"{path}: [lifecycle] stages: {stage!r} is not interview or application"
            )
    if config.sync.max_message_bytes < 64 * 1024:
        raise ConfigError(f"{path}: [sync] max_message_bytes: must be at least 65536")


# A hundred years: any longer and the dates it gives overflow (and mean nothing anyway).
MAX_DAYS = 36_500

_DURATION_PART = re.compile(r"(\d+)\s*([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> timedelta:
    """ "7d", "36h", "1d12h", "90m", "30s" -> timedelta."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not compact or "".join(number + unit for number, unit in parts) != compact:
        raise ValueError(f"not a duration: {text!r} (examples: 7d, 36h, 90m)")
    try:
        return timedelta(**{_UNITS[unit]: int(number) for number, unit in parts})
    except OverflowError:
        raise ValueError(f"too long: {text!r}") from None


_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def host_problem(host: str) -> str | None:
    """Why `host` is neither a host name nor an IP address, or None. Checked here so that a
    slip ("[::1]", "localhost..", "imap.example.org:993") is named with its key, rather than
    failing at the first connection with the resolver's words."""
    if host.startswith("[") and host.endswith("]"):
        return f"is not a host name or IP address (write {host[1:-1]!r}, without brackets)"
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return None
    if ":" in host:
        return "is not a host name or IP address (the port goes in [imap] port)"
    try:  # a name in any script is looked up in its ASCII form (IDNA), as the resolver does
        name = host.encode("idna").decode("ascii")
    except UnicodeError:
        return "is not a host name or IP address"
    labels = name.removesuffix(".").split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return "is not a host name or IP address"
    return None


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback literals; decided without DNS, so it cannot be spoofed."""
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
