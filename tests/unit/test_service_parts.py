"""The daemon's small parts: backoff, state-change logging, systemd notify, `init`, and the
main thread's watch on IDLE and on the scheduler."""

from __future__ import annotations

import logging
import random
import socket
import threading
import tomllib
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nextround.daemon import service
from nextround.daemon.config import load_config
from nextround.daemon.errors import (
    AuthError,
    ConnectError,
    NextroundError,
    StorageError,
    UsageError,
)
from nextround.daemon.imap import ImapMailbox
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


@pytest.mark.parametrize(
    ("running", "wanted", "idle_seconds", "due"),
    [
        (False, False, 10.0, False),  # APScheduler's own timer will run it
        (False, True, 10.0, True),  # a wake-up it refused as the last cycle was ending
        (True, True, 10.0, False),  # that cycle itself asks for the next at its end
        (False, False, 400.0, True),  # overdue: the wall clock was set back
        (True, False, 400.0, False),  # a long cycle (the watchdog judges those)
    ],
)
def test_a_cycle_is_asked_for_when_the_scheduler_missed_it(
    running: bool, wanted: bool, idle_seconds: float, due: bool
) -> None:
    assert service.due_anyway(running, wanted, idle_seconds, patience=360.0) is due


class ScriptedIdle:
    """imapclient's IDLE calls: nothing while checked, `late` in the answer to DONE."""

    def __init__(self, late: list[Any]) -> None:
        self.late = late
        self.calls: list[str] = []

    def idle(self) -> None:
        self.calls.append("idle")

    def idle_check(self, timeout: float | None = None) -> list[Any]:
        self.calls.append("idle_check")
        return []

    def idle_done(self) -> tuple[bytes, list[Any]]:
        self.calls.append("idle_done")
        return b"Idle completed", self.late

    def noop(self) -> tuple[bytes, list[Any]]:
        self.calls.append("noop")
        return b"OK", []


@pytest.mark.parametrize(("late", "woken"), [([(3, b"EXISTS")], ["cycle"]), ([], [])])
def test_mail_told_in_the_answer_to_done_wakes_the_cycle(
    monkeypatch: pytest.MonkeyPatch, late: list[Any], woken: list[str]
) -> None:
    """Mail that arrives between the last check and DONE is told in DONE's answer only (as
    Dovecot does; found by review in session 12): it wakes the cycle, not the next poll."""
    monkeypatch.setattr(service, "IDLE_RENEW", timedelta(seconds=0))  # renewing at once
    monkeypatch.setattr(service, "_socket_alive", lambda client: True)
    asked: list[str] = []
    config = SimpleNamespace(
        imap=SimpleNamespace(host="imap.example.org", inbox="INBOX"),
        schedule=SimpleNamespace(backoff_cap=timedelta(seconds=2)),
    )
    runner = SimpleNamespace(
        config=config,
        run_cycle_now=lambda: asked.append("cycle"),
        feed_watchdog=lambda: None,
        nudge=lambda: None,
    )
    watcher = service.IdleWatcher(runner)  # type: ignore[arg-type]
    client = ScriptedIdle(late)
    watcher.mailbox = ImapMailbox(client, "imap.example.org")
    watcher.idle_round(lambda: False)
    assert "idle_done" in client.calls and asked == woken


def test_a_reload_that_neither_configuration_can_run_ends_the_daemon(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """After a SIGHUP the new configuration cannot run, and then neither can the running
    one (its state directory went read-only, say): the daemon ends with the error, for
    systemd to restart it with its own back-off, rather than try again and again (found by
    review in session 12)."""
    built: list[object] = []

    class Runner:
        def __init__(self, config: object, notifier: object, health: object) -> None:
            built.append(config)
            if len(built) > 1:
                raise StorageError("state.db: unable to open database file")

        def run(self, should_stop: object) -> None:
            daemon.reload_requested.set()

    monkeypatch.setattr(service, "Runner", Runner)
    monkeypatch.setattr(service, "load_config", lambda path: "the new configuration")
    monkeypatch.setattr(service.Service, "install_signal_handlers", lambda self: None)
    daemon: Any = object.__new__(service.Service)
    daemon.config_path, daemon.config = tmp_path / "config.toml", "the running configuration"
    daemon.notifier, daemon.health = Notifier(""), service.Health()
    daemon.reload_requested = threading.Event()
    with pytest.raises(StorageError):
        daemon.run()
    assert built == [
        "the running configuration",
        "the new configuration",
        "the running configuration",
    ]
