"""The daemon's small parts: backoff, state-change logging, systemd notify, `init`."""

from __future__ import annotations

import logging
import random
import socket
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from nextround.daemon.config import load_config
from nextround.daemon.errors import AuthError, ConnectError, NextroundError, UsageError
from nextround.daemon.init import write_config
from nextround.daemon.notify import Notifier
from nextround.daemon.service import Backoff, StateLog


def test_backoff_grows_is_capped_and_jittered() -> None:
    backoff = Backoff(timedelta(minutes=5), random.Random(7))
    delays = [backoff.next_delay() for _ in range(12)]
    assert all(delay > 0 for delay in delays), "never a busy loop"
    assert delays[4] > delays[0]
    assert max(delays) <= 300
    assert delays[-1] >= 150, "reaches the cap region"
    assert len(set(delays)) == len(delays), "jittered"
    backoff.reset()
    assert backoff.next_delay() < 5


def test_state_log_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    state = StateLog("mailbox example.org")
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            state.failed(ConnectError("example.org: connection refused"))
        state.failed(ConnectError("example.org: timed out"))  # still "the server is away"
        state.failed(AuthError("example.org: login failed"))
        state.failed(AuthError("example.org: login failed"))
        state.ok()
        state.ok()
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "mailbox example.org: example.org: connection refused; retrying with backoff",
        "mailbox example.org: example.org: login failed; retrying with backoff",
        "mailbox example.org: working again",
    ]


@pytest.mark.parametrize("abstract", [False, True])
def test_notify_sends_datagrams(tmp_path: Path, abstract: bool) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"nextround-test-{random.randrange(10**9)}"
        receiver.bind("\0" + name)
        address = "@" + name
    else:
        address = str(tmp_path / "notify")
        receiver.bind(address)
    receiver.settimeout(2)
    notifier = Notifier(address)
    notifier.ready("logged in")
    notifier.watchdog()
    assert receiver.recv(4096) == b"READY=1\nSTATUS=logged in"
    assert receiver.recv(4096) == b"WATCHDOG=1"
    receiver.close()
    notifier.watchdog()  # nobody listening any more: dropped, never raised
    notifier.close()


def test_notify_without_systemd_does_nothing() -> None:
    notifier = Notifier("")
    assert not notifier.enabled
    notifier.ready("x")


def test_init_writes_a_valid_private_config_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "nextround" / "config.toml"
    values: dict[str, str | None] = {
        "host": "imap.example.org",
        "username": "me@example.org",
        "name": 'Alex "Al" Doe',
        "email": None,
        "password_command": "pass show mail/me",
    }
    write_config(path, dict(values))
    assert path.stat().st_mode & 0o777 == 0o600
    config = load_config(path)
    assert config.identity.name == 'Alex "Al" Doe'
    assert config.identity.email == "me@example.org"
    assert config.imap.password_command == "pass show mail/me"
    assert "#" in path.read_text(), "commented"
    tomllib.loads(path.read_text())
    with pytest.raises(NextroundError, match="exists already"):
        write_config(path, dict(values))


def test_init_asks_on_a_terminal_and_needs_flags_otherwise(tmp_path: Path) -> None:
    answers = iter(["imap.example.org", "me", "Alex Doe", "me@example.org"])
    path = write_config(tmp_path / "a.toml", {}, ask=lambda question: next(answers))
    assert load_config(path).imap.username == "me"
    with pytest.raises(UsageError, match="--host, --username, --name, --email"):
        write_config(tmp_path / "b.toml", {}, ask=None)
    with pytest.raises(UsageError, match="plain is only allowed"):
        write_config(
            tmp_path / "c.toml",
            {
                "host": "mail.example.org",
                "username": "u",
                "name": "n",
                "email": "e@x.org",
                "security": "plain",
            },
        )
