"""`nextround run`: the daemon. APScheduler runs the cycle; IMAP IDLE makes it prompt.

Threads: APScheduler's single worker runs `Engine.poll_once` every `[schedule] poll_interval`
(max_instances=1 and coalesce, so cycles never overlap and missed runs collapse into one).
The main thread keeps a second connection in IDLE on INBOX and, when mail arrives, asks the
scheduler to run the cycle now. It also handles signals and feeds systemd's watchdog.

Failures (DNS, refused connections, a restarting server, rejected logins) are logged once per
change of state and retried with capped exponential backoff and jitter; never a crash loop,
never a busy loop. SIGTERM/SIGINT: the message in hand is committed, then logout, exit 0.
SIGHUP: the configuration is read again; if it is valid the daemon restarts its scheduler and
connections in-process with it (same PID), otherwise it logs why and keeps the old one.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import imapclient
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from nextround.daemon import stopping
from nextround.daemon.config import Config, load_config
from nextround.daemon.credentials import read_secret
from nextround.daemon.engine import Engine
from nextround.daemon.errors import ConfigError, MailboxError, NextroundError
from nextround.daemon.imap import ImapMailbox, connect
from nextround.daemon.notify import Notifier
from nextround.daemon.session import Session, open_session
from nextround.daemon.store import Store, cycle_lock
from nextround.daemon.training import ModelSettings, get_model

logger = logging.getLogger(__name__)

StopCheck = Callable[[], bool]
JOB_ID = "cycle"
# How long a cycle waits for one already running on the same state (`nextround once` run by
# hand) before it fails and is retried with backoff.
CYCLE_LOCK_WAIT = 60.0
# RFC 2177 asks clients to renew IDLE before 29 minutes; some servers and NATs cut sooner.
IDLE_RENEW = timedelta(minutes=10)
# How long one wait inside IDLE lasts: bounds how late a stop or a watchdog ping can be.
IDLE_SLICE = 5.0
FIRST_BACKOFF = 2.0
# A cycle running longer than this is considered hung: the watchdog is no longer fed, so
# systemd restarts the service.
CYCLE_HUNG_AFTER = timedelta(minutes=30)
# On the way out, a goodbye (DONE, LOGOUT) waits this long at most for its answer, not
# [imap] timeout: systemd kills the service 15 s after SIGTERM, and nothing needs the answer.
GOODBYE_SECONDS = 2.0
# After a SIGTERM, how long a cycle may go on to its next commit before its connection is
# shut: a read stalled on a silent link would otherwise last [imap] timeout.
STOP_GRACE_SECONDS = 5.0
# Beyond the poll interval (or the backoff cap, if longer), how late the periodic cycle may
# be before the main thread asks for it: APScheduler times it by the wall clock, which an
# administrator or NTP may set back.
OVERDUE_MARGIN = timedelta(minutes=1)


def hasten(client: imapclient.IMAPClient) -> None:
    """Bound the reads still to come on `client` by GOODBYE_SECONDS."""
    with contextlib.suppress(OSError):
        client.socket().settimeout(GOODBYE_SECONDS)


def due_anyway(running: bool, wanted: bool, idle_seconds: float, patience: float) -> bool:
    """Whether the main thread should ask for a cycle APScheduler has not run: none is
    running, and one was asked for (a wake-up APScheduler refused, as it counts the cycle
    that just ended as running until it returns), or none has ended for `patience`."""
    return not running and (wanted or idle_seconds > patience)


class Backoff:
    """Capped exponential backoff with jitter; `reset()` after a success."""

    def __init__(self, cap: timedelta, rng: random.Random | None = None) -> None:
        self.cap = cap.total_seconds()
        self.attempts = 0
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def next_delay(self) -> float:
        base = min(self.cap, FIRST_BACKOFF * 2**self.attempts)
        self.attempts += 1
        jittered: float = base * self.rng.uniform(0.5, 1.0) + self.rng.uniform(0.0, 1.0)
        return min(self.cap, jittered)

    def reset(self) -> None:
        self.attempts = 0


class StateLog:
    """Logs a connection's trouble once per change of state, not once per retry."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.problem: str | None = None

    def failed(self, error: NextroundError) -> None:
        # The state is the kind of trouble (server away, login refused, TLS, DNS, ...): a
        # server restarting goes from BYE to "connection refused" without a new log line.
        problem = getattr(error, "kind", type(error).__name__)
        if problem in ("imap", "connection"):
            problem = "connection"
        if problem != self.problem:
            logger.warning("%s: %s; retrying with backoff", self.what, error)
        self.problem = problem

    def ok(self) -> None:
        if self.problem is not None:
            logger.warning("%s: working again", self.what)
        self.problem = None


@dataclass
class Health:
    cycle_started: float | None = None
    cycle_ended: float = field(default_factory=time.monotonic)
    last_summary: str = "starting"
    ready: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Service:
    def __init__(self, config_path: Path, notifier: Notifier | None = None) -> None:
        self.config_path = config_path
        self.config = load_config(config_path)
        self.notifier = notifier or Notifier()
        self.reload_requested = threading.Event()
        self.health = Health()

    # -- signals ----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            logger.info("received %s: finishing the message in hand", signal.Signals(signum).name)
            stopping.STOP.set()

        def reload(signum: int, frame: FrameType | None) -> None:
            logger.info("received SIGHUP: reloading the configuration")
            self.reload_requested.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    # -- the whole run ----------------------------------------------------------------------

    def run(self) -> int:
        self.install_signal_handlers()
        running: Config | None = None  # the configuration the last Runner ran with
        while True:
            try:
                runner = Runner(self.config, self.notifier, self.health)
            except NextroundError as error:
                if running is None or self.config is running:
                    raise  # at start, or the running one fails too: systemd restarts us
                # Valid, but not usable (a database it cannot open, a model it cannot
                # train): as with a configuration that does not parse.
                logger.error("not reloading, keeping the running configuration: %s", error)
                self.config = running
                continue
            running = self.config
            runner.run(lambda: stopping.STOP.is_set() or self.reload_requested.is_set())
            if stopping.STOP.is_set():
                break
            self.reload_requested.clear()
            try:
                self.config = load_config(self.config_path)
                logger.info("configuration reloaded from %s", self.config_path)
            except ConfigError as error:
                logger.error("not reloading, keeping the running configuration: %s", error)
        self.notifier.stopping()
        logger.info("stopped")
        return 0


class Runner:
    """One configuration's worth of daemon: scheduler, cycle connection, IDLE connection."""

    def __init__(self, config: Config, notifier: Notifier, health: Health) -> None:
        self.config = config
        self.notifier = notifier
        self.health = health
        classifier = config.classifier
        extra = Path(classifier.extra_examples) if classifier.extra_examples else None
        self.model = get_model(ModelSettings(config.state_dir, classifier.threshold, extra))
        self.engine = Engine(config, self.model)
        self.store = Store.open(config.database_path)  # last: nothing after it can fail
        self.session: Session | None = None
        # Set when mail arrives while a cycle runs: that cycle may have looked already, so
        # another follows it at once (a trigger during a run would be coalesced away).
        self.wanted = threading.Event()
        self.cycle_backoff = Backoff(config.schedule.backoff_cap)
        # APScheduler's shutdown holds its job store while it waits for the cycle in hand,
        # and that cycle asking the job store for its next run would wait for ever: once
        # `closing` is set (under this lock), nothing asks.
        self.scheduling = threading.Lock()
        self.closing = False
        self.cycle_state = StateLog(f"mailbox {config.imap.host}")
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=UTC,
        )

    def run(self, should_stop: StopCheck) -> None:
        interval = self.config.schedule.poll_delay
        self.scheduler.add_job(
            self.cycle,
            "interval",
            seconds=interval.total_seconds(),
            id=JOB_ID,
            replace_existing=True,
            next_run_time=datetime.now(UTC),
        )
        self.scheduler.start()
        try:
            if self.config.schedule.idle:
                IdleWatcher(self).watch(should_stop)
            else:
                while not should_stop():
                    self.feed_watchdog()
                    self.nudge()
                    time.sleep(1.0)
        finally:
            with self.scheduling:
                self.closing = True
            self.finish_cycle()
            if self.session is not None:
                if stopping.STOP.is_set() and isinstance(self.session.mailbox, ImapMailbox):
                    hasten(self.session.mailbox.client)
                self.session.close()
                self.session = None
            self.store.close()

    def finish_cycle(self) -> None:
        """Wait for the cycle in hand, feeding the watchdog meanwhile (a reload lets it run to
        its end, which may be minutes). After a SIGTERM it stops at its next commit
        (stopping.check); if it is still reading STOP_GRACE_SECONDS later, a silent link
        holds it, and its connection is shut."""
        ended = threading.Event()

        def shutdown() -> None:
            try:
                self.scheduler.shutdown(wait=True)
            finally:
                ended.set()

        threading.Thread(target=shutdown, name="nextround-shutdown", daemon=True).start()
        stop_seen: float | None = None
        while not ended.wait(0.5):
            self.feed_watchdog()
            if not stopping.STOP.is_set():
                continue
            stop_seen = stop_seen or time.monotonic()
            if time.monotonic() - stop_seen > STOP_GRACE_SECONDS:
                session = self.session
                if session is not None and isinstance(session.mailbox, ImapMailbox):
                    with contextlib.suppress(OSError):
                        session.mailbox.client.socket().shutdown(socket.SHUT_RDWR)

    # -- the cycle job ----------------------------------------------------------------------

    def cycle(self) -> None:
        with self.health.lock:
            self.health.cycle_started = time.monotonic()
        self.wanted.clear()
        try:
            if stopping.STOP.is_set():
                return
            if self.session is None:
                self.session = open_session(self.config)
                if not self.health.ready:
                    self.health.ready = True
                    self.notifier.ready(f"logged in to {self.config.imap.host}")
                    logger.info("ready: logged in to %s", self.config.imap.host)
            with cycle_lock(self.config.database_path, CYCLE_LOCK_WAIT):
                report = self.engine.poll_once(
                    self.session.mailbox, self.store, self.session.folders, datetime.now(UTC)
                )
            summary = f"last cycle {datetime.now(UTC):%H:%M} UTC: {report.summary()}"
            self.health.last_summary = summary
            self.notifier.status(summary)
            logger.info("%s", summary)
            self.cycle_state.ok()
            self.cycle_backoff.reset()
        except stopping.ShutdownRequested:
            logger.info("stopped after committing the message in hand")
        except NextroundError as error:
            self.cycle_failed(error)
        except Exception:  # a bug must not kill the daemon: log it and retry later
            logger.exception("the cycle failed unexpectedly; retrying with backoff")
            self.cycle_failed(None)
        finally:
            with self.health.lock:
                self.health.cycle_started = None
                self.health.cycle_ended = time.monotonic()
            self.feed_watchdog()
            if self.wanted.is_set() and self.cycle_backoff.attempts == 0:
                self.run_cycle_at(datetime.now(UTC) + timedelta(seconds=0.2))

    def cycle_failed(self, error: NextroundError | None) -> None:
        if error is not None:
            self.cycle_state.failed(error)
        if self.session is not None:
            with contextlib.suppress(NextroundError):
                self.session.close()
            self.session = None
        delay = self.cycle_backoff.next_delay()
        self.notifier.status(f"waiting {delay:.0f} s to retry: {error or 'unexpected error'}")
        self.run_cycle_at(datetime.now(UTC) + timedelta(seconds=delay))

    def run_cycle_at(self, when: datetime) -> None:
        with self.scheduling:
            if self.closing or stopping.STOP.is_set():
                return
            job = self.scheduler.get_job(JOB_ID)
            if job is not None:
                job.modify(next_run_time=when)

    def run_cycle_now(self) -> None:
        self.wanted.set()
        self.run_cycle_at(datetime.now(UTC))

    def nudge(self) -> None:
        """Ask again for a cycle APScheduler did not run (see `due_anyway`)."""
        schedule = self.config.schedule
        patience = max(schedule.poll_delay, schedule.backoff_cap) + OVERDUE_MARGIN
        with self.health.lock:
            running = self.health.cycle_started is not None
            idle = time.monotonic() - self.health.cycle_ended
        wanted = self.wanted.is_set() and self.cycle_backoff.attempts == 0  # as `cycle` asks
        if due_anyway(running, wanted, idle, patience.total_seconds()):
            self.run_cycle_at(datetime.now(UTC))

    def feed_watchdog(self) -> None:
        """Proves the daemon is alive, including while it waits out an outage; withheld only
        while a cycle is hung, so systemd restarts what cannot recover by itself."""
        with self.health.lock:
            started = self.health.cycle_started
        if started is not None and time.monotonic() - started > CYCLE_HUNG_AFTER.total_seconds():
            return
        self.notifier.watchdog()


class IdleWatcher:
    """A second connection, in IDLE on INBOX, that wakes the cycle when mail arrives."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.config = runner.config
        self.mailbox: ImapMailbox | None = None
        self.backoff = Backoff(self.config.schedule.backoff_cap)
        self.state = StateLog(f"IDLE on {self.config.imap.host}")

    def watch(self, should_stop: StopCheck) -> None:
        try:
            while not should_stop():
                try:
                    self.idle_round(should_stop)
                    self.state.ok()
                    self.backoff.reset()
                except MailboxError as error:
                    self.state.failed(error)
                    self.drop()
                    self.wait(self.backoff.next_delay(), should_stop)
                except NextroundError as error:  # a password command failing, for example
                    self.state.failed(error)
                    self.drop()
                    self.wait(self.backoff.next_delay(), should_stop)
                except Exception:  # a bug must not end IDLE for good: log it, retry later
                    logger.exception("IDLE failed unexpectedly; retrying with backoff")
                    self.drop()
                    self.wait(self.backoff.next_delay(), should_stop)
        finally:
            self.drop()

    def connect(self) -> ImapMailbox:
        mailbox = connect(self.config.imap, read_secret(self.config.imap))
        if not mailbox.client.has_capability("IDLE"):
            mailbox.logout()
            raise MailboxError(f"{self.config.imap.host}: the server does not support IDLE")
        mailbox.select(self.config.imap.inbox)
        return mailbox

    def idle_round(self, should_stop: StopCheck) -> None:
        """IDLE until renewal time, a stop, or new mail; then end IDLE cleanly."""
        if self.mailbox is None:
            self.mailbox = self.connect()
            # Mail may have arrived while this connection was down: look now.
            self.runner.run_cycle_now()
        client = self.mailbox.client
        started = time.monotonic()
        new_mail = False
        try:
            client.idle()
            while not should_stop() and time.monotonic() - started < IDLE_RENEW.total_seconds():
                responses = client.idle_check(timeout=IDLE_SLICE)
                if not responses and not _socket_alive(client):
                    # imapclient returns [] both on timeout and when the server hung up.
                    raise MailboxError(f"{self.config.imap.host}: connection closed during IDLE")
                if any(_is_new_mail(response) for response in responses):
                    new_mail = True
                    break
                if any(_is_bye(response) for response in responses):
                    raise MailboxError(f"{self.config.imap.host}: server said BYE during IDLE")
                self.runner.feed_watchdog()
                self.runner.nudge()
            # DONE has to be answered: a dead link times out here instead of hanging, and
            # soon when stopping. Mail that came just before it is told in the answer.
            if should_stop():
                hasten(client)
            _, late = client.idle_done()
            new_mail = new_mail or any(_is_new_mail(response) for response in late)
        except (OSError, imapclient.exceptions.IMAPClientError) as error:
            raise MailboxError(f"{self.config.imap.host}: IDLE failed: {error}") from None
        if new_mail:
            logger.debug("IDLE: new mail in %s", self.config.imap.inbox)
            self.runner.run_cycle_now()
        else:
            self.mailbox.noop()  # renewing: prove the connection still answers

    def drop(self) -> None:
        if self.mailbox is not None:
            mailbox, self.mailbox = self.mailbox, None
            if stopping.STOP.is_set():
                hasten(mailbox.client)
            with contextlib.suppress(NextroundError):
                mailbox.logout()

    def wait(self, seconds: float, should_stop: StopCheck) -> None:
        deadline = time.monotonic() + seconds
        while not should_stop() and time.monotonic() < deadline:
            self.runner.feed_watchdog()
            self.runner.nudge()
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _is_new_mail(response: object) -> bool:
    return (
        isinstance(response, tuple) and len(response) >= 2 and response[1] in (b"EXISTS", b"RECENT")
    )


def _is_bye(response: object) -> bool:
    return isinstance(response, tuple) and bool(response) and response[0] == b"BYE"


def _socket_alive(client: imapclient.IMAPClient) -> bool:
    """Peek at the raw socket: EOF means the server closed the connection."""
    try:
        descriptor = client.socket().fileno()
        probe = socket.socket(fileno=socket.dup(descriptor))
    except OSError:
        return False
    try:
        probe.setblocking(False)
        return probe.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True  # nothing to read: alive
    except OSError:
        return False
    finally:
        probe.close()
