"""`nextround init`: write a first, commented configuration file (mode 0600)."""

from __future__ import annotations

import json
import os
import sys
import tomllib
import unicodedata
from collections.abc import Callable
from pathlib import Path

from nextround.classifier.persist import private_directory
from nextround.daemon.config import parse_config
from nextround.daemon.errors import ConfigError, NextroundError, UsageError

TEMPLATE = """\
# nextround configuration, written by `nextround init`. Every key and its default is
# documented in config.example.toml; check this file with `nextround check-config`.

[imap]
host = {host}
# tls (port 993) | starttls (port 143, never falls back to plain text) | plain (loopback only)
security = {security}
port = {port}
username = {username}
# The password is never stored here. Use one of:
#   password_file = "~/.config/nextround/imap-password"   (first line; chmod 600)
#   password_command = "pass show mail/me"                  (first line of its output)
# or the environment variable NEXTROUND_IMAP_PASSWORD. Gmail and Outlook: see the README
# (app passwords, or auth = "oauth2" with oauth2_token_command).
{password_line}

[identity]
# Drafts are From this name and address, and signed with the name.
name = {name}
email = {email}

[sync]
# The first run looks this many days back, never through the whole history.
backfill_days = 30

[lifecycle]
# Only the stages listed get a feedback request draft.
stages = ["interview", "application"]
follow_up_after = "7d"
close_after = "7d"
send_within = "3d"

[schedule]
poll_interval = "5m"
idle = true
"""

Ask = Callable[[str], str]


def write_config(
    path: Path,
    values: dict[str, str | None],
    ask: Ask | None = None,
) -> Path:
    """Fill what is missing by asking (on a terminal), validate, and write with mode 0600."""
    if path.exists():
        raise NextroundError(f"{path} exists already; not overwriting it (edit it, or move it)")
    questions = {
        "host": "IMAP server (e.g. imap.gmail.com)",
        "username": "IMAP user name",
        "name": "Your name, as drafts are signed",
        "email": "Your email address",
    }
    if not values.get("email") and "@" in (values.get("username") or ""):
        values["email"] = values["username"]
    for key, question in questions.items():
        if not values.get(key):
            if ask is None:
                flags = ", ".join(f"--{k}" for k in questions if not values.get(k))
                raise UsageError(f"not a terminal: give {flags}")
            try:
                values[key] = ask(f"{question}: ").strip()
            except EOFError:
                raise UsageError("input ended before every question was answered") from None
    for key, value in values.items():
        # Control characters (Cc) and bytes that were not UTF-8 (surrogates, Cs) only: a
        # zero-width non-joiner is part of many a name.
        if value is not None and any(unicodedata.category(ch) in ("Cc", "Cs") for ch in str(value)):
            raise UsageError(
                f"--{key.replace('_', '-')}: control characters and bytes that are not UTF-8 "
                "are not allowed"
            )
    security = values.get("security") or "tls"
    password_line = '# password_command = ""'  # noqa: S105 - a commented-out example
    if values.get("password_command"):
        password_line = f"password_command = {_toml(values['password_command'] or '')}"
    elif values.get("password_file"):
        password_line = f"password_file = {_toml(values['password_file'] or '')}"
    text = TEMPLATE.format(
        host=_toml(values["host"] or ""),
        security=_toml(security),
        port=int(values.get("port") or 0),
        username=_toml(values["username"] or ""),
        password_line=password_line,
        name=_toml(values["name"] or ""),
        email=_toml(values["email"] or ""),
    )
    try:
        parse_config(tomllib.loads(text), path)
    except ConfigError as error:
        raise UsageError(str(error).replace(f"{path}: ", "")) from None
    try:
        private_directory(path.parent)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as error:
        raise NextroundError(f"{path}: cannot write it: {error.strerror or error}") from None
    return path


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def terminal_ask() -> Ask | None:
    return input if sys.stdin.isatty() else None
