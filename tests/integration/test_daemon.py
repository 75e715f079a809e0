"""`nextround run` as a real process against Dovecot: IDLE latency, outages, signals, systemd."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest
from dovecot import Dovecot, MailUser
from support import ConfigWriter

from nextround.daemon.store import cycle_lock

REJECTION = (
    "Hi Alex,\n\nThank you for taking the time to interview with the platform team last week "
    "for the Site Reliability Engineer role at {company}. After careful consideration we "
    "have decided to move forward with another candidate.\n\nWe wish you all the best.\n\n"
    "Ines Ferreira\nRecruiter, {company}\n"
)


def rejection(company: str, sender: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"Ines Ferreira <{sender}>"
    message["To"] = "alex@example.org"
    message["Subject"] = f"Your application at {company}"
    message["Date"] = format_datetime(time_now())
    message["Message-ID"] = make_msgid(domain="sender.example")
    message.set_content(REJECTION.format(company=company))
    return message.as_bytes()


def time_now() -> datetime:
    return datetime.now(UTC)


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> float:
    """Poll `condition` until true; return how long it took. A bounded loop, not a sleep."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


class NotifySocket:
    """A stand-in for systemd: collects the datagrams the daemon sends to $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.settimeout(0.05)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.socket.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                return self.messages

    def seen(self, line: str) -> bool:
        return any(line in message.splitlines() for message in self.drain())


@pytest.fixture
def daemon(
    mailbox_user: MailUser, write_config: ConfigWriter, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], NotifySocket, MailUser, Path]]:
    config = write_config(
        mailbox_user,
        timeout=3.0,
        extra='[schedule]\npoll_interval = "10m"\nmax_backoff = "2s"\n',
    )
    notify = NotifySocket(tmp_path / "notify.sock")
    log = (tmp_path / "daemon.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "nextround.daemon.cli", "-c", str(config), "run"],
        env={**os.environ, "NOTIFY_SOCKET": str(notify.path)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process, notify, mailbox_user, config
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        log.close()


def drafts(user: MailUser) -> int:
    return len(user.uids("Drafts"))


def test_idle_drafts_within_seconds_and_notifies_systemd(
    daemon: tuple[subprocess.Popen[bytes], NotifySocket, MailUser, Path],
) -> None:
    process, notify, user, _ = daemon
    wait_for(lambda: notify.seen("READY=1"), 60, "READY=1")
    wait_for(lambda: notify.seen("WATCHDOG=1"), 20, "WATCHDOG=1")
    time.sleep(1.0)  # let the first cycle finish and IDLE begin
    user.append("INBOX", rejection("Tidewater Systems", "ines.ferreira@tidewater.example"))
    took = wait_for(lambda: drafts(user) == 1, 5.0, "a draft within 5 s of the rejection")
    assert took < 5.0
    assert any(message.startswith("STATUS=last cycle") for message in notify.drain())
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert notify.seen("STOPPING=1")


def test_outage_reconnects_and_drafts_mail_that_arrived_meanwhile_once(
    daemon: tuple[subprocess.Popen[bytes], NotifySocket, MailUser, Path],
    dovecot: Dovecot,
    tmp_path: Path,
) -> None:
    process, notify, user, _ = daemon
    wait_for(lambda: notify.seen("READY=1"), 60, "READY=1")
    time.sleep(1.0)
    dovecot.stop()
    try:
        # Mail lands in the Maildir while the server is down (as a delivery agent would).
        user.seed_maildir("INBOX", [rejection("Quarry Lane", "ines.ferreira@quarrylane.example")])
        time.sleep(3.0)  # a few failed retries under backoff
        assert process.poll() is None, "the daemon must not exit during an outage"
    finally:
        dovecot.restart()
    wait_for(lambda: drafts(user) == 1, 30, "the draft after the server came back")
    time.sleep(3.0)
    assert drafts(user) == 1, "drafted twice"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    log = (tmp_path / "daemon.log").read_text()
    # Logged once per change of state, not once per retry.
    assert log.count("retrying with backoff") <= 2, log
    assert "working again" in log


def test_sigterm_exits_zero_with_nothing_half_written(
    daemon: tuple[subprocess.Popen[bytes], NotifySocket, MailUser, Path],
    tmp_path: Path,
) -> None:
    process, notify, user, _ = daemon
    for number in range(20):
        user.append("INBOX", rejection(f"Company {number}", f"person{number}@c{number}.example"))
    wait_for(lambda: notify.seen("READY=1"), 60, "READY=1")
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert process.wait(timeout=10) == 0
    assert time.monotonic() - started < 10
    database = tmp_path / "state" / "state.db"
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        opened = connection.execute("SELECT count(*) FROM applications").fetchone()[0]
        states = {row[0] for row in connection.execute("SELECT state FROM applications")}
    # Every application the daemon opened either has its draft recorded or is `new` (owed
    # a draft, which the next start writes after looking for it in Drafts first).
    assert states <= {"new", "drafted"}
    assert drafts(user) <= opened


def test_sighup_reloads_and_a_broken_config_keeps_the_running_one(
    daemon: tuple[subprocess.Popen[bytes], NotifySocket, MailUser, Path],
    tmp_path: Path,
) -> None:
    process, notify, user, config = daemon
    wait_for(lambda: notify.seen("READY=1"), 60, "READY=1")
    log = tmp_path / "daemon.log"
    good = config.read_text()
    config.write_text(good + "\n[schedule2]\n")
    process.send_signal(signal.SIGHUP)
    wait_for(lambda: "keeping the running configuration" in log.read_text(), 20, "refusal")
    assert process.poll() is None
    config.write_text(good.replace('poll_interval = "10m"', 'poll_interval = "9m"'))
    process.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in log.read_text(), 30, "reload")
    wait_for(lambda: log.read_text().count("ready: logged in") >= 1, 30, "login")
    # Still the same process, still drafting.
    user.append("INBOX", rejection("Harrow Lane", "ines.ferreira@harrowlane.example"))
    wait_for(lambda: drafts(user) == 1, 30, "a draft after the reload")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def test_sigterm_while_the_cycle_waits_for_the_lock_exits_at_once(
    mailbox_user: MailUser, write_config: ConfigWriter, tmp_path: Path
) -> None:
    """`nextround once` (or a second service) holds the cycle lock and the service's cycle
    waits for it (up to a minute): a SIGTERM ends the wait, within systemd's TimeoutStopSec
    (15 s), with exit 0."""
    config = write_config(
        mailbox_user,
        timeout=3.0,
        extra='[schedule]\npoll_interval = "10m"\nmax_backoff = "2s"\n',
    )
    notify = NotifySocket(tmp_path / "notify.sock")
    database = tmp_path / "state" / "state.db"
    database.parent.mkdir(mode=0o700, exist_ok=True)
    with cycle_lock(database, wait=0):  # `nextround once`, running a long first sync
        process = subprocess.Popen(
            [sys.executable, "-m", "nextround.daemon.cli", "-c", str(config), "run"],
            env={**os.environ, "NOTIFY_SOCKET": str(notify.path)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: notify.seen("READY=1"), 60, "READY=1")
            time.sleep(1.0)  # the cycle is now waiting for the lock
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            try:
                code = process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                code = None
            took = time.monotonic() - started
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
    assert code == 0 and took < 15, f"still running {took:.0f} s after SIGTERM (exit {code})"
