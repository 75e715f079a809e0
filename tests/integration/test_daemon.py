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
from tcpproxy import TcpProxy

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


def cycles_done(notify: NotifySocket) -> int:
    """How many cycles have ended well: each says so in its STATUS."""
    return sum(message.startswith("STATUS=last cycle") for message in notify.drain())


def newsletter() -> bytes:
    message = EmailMessage()
    message["From"] = "Weekly Digest <digest@news.example>"
    message["To"] = "Alex Doe <alex@example.org>"
    message["Subject"] = "This week in gardening"
    message["Date"] = format_datetime(time_now())
    message["Message-ID"] = make_msgid(domain="news.example")
    message.set_content("Ten bulbs to plant before the frost.\n")
    return message.as_bytes()


def test_idle_drafts_within_seconds_and_notifies_systemd(
    daemon: tuple[subprocess.Popen[bytes], NotifySocket, MailUser, Path],
) -> None:
    process, notify, user, _ = daemon
    wait_for(lambda: notify.seen("READY=1"), 60, "READY=1")
    wait_for(lambda: notify.seen("WATCHDOG=1"), 20, "WATCHDOG=1")
    # The first cycle has ended (IDLE, once connected, looks for mail that came before it).
    wait_for(lambda: cycles_done(notify) >= 1, 30, "the first cycle")
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
    log = tmp_path / "daemon.log"
    wait_for(lambda: cycles_done(notify) >= 1, 60, "the first cycle")
    dovecot.stop()
    try:
        # Mail lands in the Maildir while the server is down (as a delivery agent would).
        user.seed_maildir("INBOX", [rejection("Quarry Lane", "ines.ferreira@quarrylane.example")])
        wait_for(lambda: "retrying with backoff" in log.read_text(), 30, "a failed retry")
        assert process.poll() is None, "the daemon must not exit during an outage"
    finally:
        dovecot.restart()
    wait_for(lambda: drafts(user) == 1, 30, "the draft after the server came back")
    # One more cycle, woken by other mail, finds nothing more to draft.
    done = cycles_done(notify)
    user.append("INBOX", newsletter())
    wait_for(lambda: cycles_done(notify) > done, 30, "a cycle after the draft")
    assert drafts(user) == 1, "drafted twice"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    text = log.read_text()
    # Logged once per change of state, not once per retry.
    assert text.count("retrying with backoff") <= 2, text
    assert "working again" in text


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
    # One that parses but cannot be used (its database under a file) is refused alike (found
    # by review in session 12: the daemon exited, and systemd restarted it into the same).
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config.write_text(good.replace(str(tmp_path / "state"), str(blocker)))
    process.send_signal(signal.SIGHUP)
    wait_for(lambda: log.read_text().count("keeping the running") == 2, 60, "second refusal")
    assert process.poll() is None, log.read_text()
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
            wait_for(lambda: notify.seen("READY=1"), 60, "READY=1")  # then the lock's wait
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


def start(config: Path, notify: NotifySocket, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "nextround.daemon.cli", "-c", str(config), "run"],
        env={**os.environ, "NOTIFY_SOCKET": str(notify.path)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def test_sigterm_on_a_silent_link_exits_before_systemd_kills(
    mailbox_user: MailUser, write_config: ConfigWriter, tmp_path: Path
) -> None:
    """The link goes silent while the daemon is in IDLE (a NAT forgets it): DONE and each
    LOGOUT would wait [imap] timeout (20 s here) for answers that never come. On the way
    out they wait GOODBYE_SECONDS, so the exit comes before systemd's SIGKILL at 15 s (found
    by review in session 12: 44 s here, two minutes with the default timeout)."""
    with TcpProxy(mailbox_user.server.host, mailbox_user.server.port_plain) as proxy:
        config = write_config(
            mailbox_user,
            host=proxy.host,
            port=proxy.port,
            timeout=20.0,
            extra='[schedule]\npoll_interval = "10m"\nmax_backoff = "2s"\n',
        )
        notify = NotifySocket(tmp_path / "notify.sock")
        log = tmp_path / "daemon.log"
        process = start(config, notify, log)
        try:
            wait_for(lambda: notify.seen("READY=1"), 60, "READY=1")
            wait_for(lambda: "IDLE" in proxy.commands, 30, "IDLE")
            proxy.stall(True)
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = process.wait(timeout=60)
            took = time.monotonic() - started
        finally:
            proxy.stall(False)
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
    assert code == 0 and took < 15, f"exit {code} after {took:.0f} s\n{log.read_text()[-1500:]}"


def test_the_watchdog_is_fed_while_a_reload_waits_for_the_cycle(
    mailbox_user: MailUser, write_config: ConfigWriter, tmp_path: Path
) -> None:
    """A SIGHUP ends IDLE, which fed the watchdog, and the reload waits for the cycle in
    hand, minutes in a first sync: the main thread feeds it meanwhile (found by review in
    session 12: none for as long as the cycle ran). Here the cycle waits for the lock."""
    config = write_config(
        mailbox_user, timeout=3.0, extra='[schedule]\npoll_interval = "10m"\nmax_backoff = "2s"\n'
    )
    notify = NotifySocket(tmp_path / "notify.sock")
    database = tmp_path / "state" / "state.db"
    database.parent.mkdir(mode=0o700, exist_ok=True)
    with cycle_lock(database, wait=0):  # `nextround once`, running a long first sync
        process = start(config, notify, tmp_path / "daemon.log")
        try:
            wait_for(lambda: notify.seen("READY=1"), 60, "READY=1")
            before = len(notify.drain())
            process.send_signal(signal.SIGHUP)

            def beats() -> int:
                return sum(message == "WATCHDOG=1" for message in notify.drain()[before:])

            wait_for(lambda: beats() >= 3, 20, "WATCHDOG=1 while the reload waits")
            assert process.poll() is None
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            finally:
                if process.poll() is None:
                    process.kill()
                process.wait(timeout=10)
