"""Fault-injection harness: hundreds of `nextround once` cycles against a real Dovecot, with
faults injected at random points, while mail keeps arriving and a simulated user sends and
deletes drafts; then the invariants that must survive every fault are checked.

Used by `tests/reliability/test_faults.py` (~200 cycles, in CI) and `bench/faults.py` (the
long version). Neither pytest nor the bench is imported here.

Each cycle is `nextround once --now T` with T advancing (minutes to days). Most cycles run
in-process (`support.run_cli`); the cycles whose fault is a real process death run as a
subprocess and are SIGKILLed. nextround reaches Dovecot only through a `TcpProxy`, which
cuts or stalls its connections; the simulated user and the recruiters talk to Dovecot
directly. In-process cycles reuse one loaded classifier (`training.get_model` is patched for
the call; loading the 10 MB model is not what is tested); subprocesses load it as usual.

Between two cycles (and during some), mail arrives: rejections from 20 companies for 14
roles (each filled-in template checked with the classifier first), closed positions,
ordinary mail; the user sends a quarter of the drafts it finds (through SMTP, storing the
copy in Sent; 70% like Gmail, dropping the X-Nextround-Application header, 30% keeping it)
and deletes some; recruiters reply to sent requests, or answer with an out-of-office.
Simulated time advances 5 min to 3 days per cycle, so send deadlines, follow-ups and
closing fall due. The faults (see `Kind`; each occurs at least twice, and a kind that did
not hit a running cycle is tried again in place of a later clean cycle):

- process death: `NEXTROUND_FAULT_KILL_AT=after-append` (the daemon's own checkpoint), and a
  SIGKILL from the harness after a random delay or at a random IMAP command;
- Dovecot stopped before a cycle (the cycle must fail cleanly: exit 1, one line) and
  restarted after it, or restarted from a timer thread in the middle of a cycle;
- the connection cut after a random number of server bytes, or reset (`drop_all`) or
  stalled (`stall`) from a timer thread: after a random delay, at a random command, or just
  after a FETCH or an APPEND was sent; new connections refused;
- the state database locked by another process (`BEGIN EXCLUSIVE`) for 0-3 s, which a cycle
  waits out; and locked longer while `store.BUSY_TIMEOUT_MS` is lowered to 250 ms, in-process
  only (monkeypatched, restored after the cycle), so the cycle gives up;
- the state directory out of space: `OSError(ENOSPC)` raised inside the `storage_errors`
  seam at a random call (monkeypatched in `nextround.daemon.store` and
  `nextround.daemon.applications`, in-process only); and, when this process may mount a
  tmpfs (root), the state directory lives on a small tmpfs which is filled up for a few
  cycles, so SQLite meets a real ENOSPC.

After the faulted cycles, a few clean catch-up cycles run, then `check_invariants` verifies:

1. every application has exactly one feedback-request draft (in Drafts, marked with
   `X-Nextround-Application: <id>; step=request`, or its sent copy in Sent, found by
   In-Reply-To), or it is skipped/closed/replied/stale and has at most one; never two; the
   same "at most one" for the follow-up and thank-you drafts. "Never two" also holds over
   time: the harness remembers every draft it saw in Drafts (it looks before each cycle,
   and the simulated user only sends or deletes drafts it has seen), so a second draft
   counts even after the user deleted or sent one of the two. One exception, by design
   and reported as an anomaly: a draft whose APPEND failed with its answer lost, which the
   user deleted before the next cycle, is written again (nextround cannot tell it from a
   draft that never got there, and an extra draft beats a lost one);
2. no message recorded twice, and at most one request_drafted(_no_contact) event per
   application;
3. every delivered rejection opened an application, or was attached to one of the same
   company and role opened within 60 days;
4. `PRAGMA integrity_check` is ok.

Besides: every cycle either succeeds, is killed, or fails cleanly (exit 1, one line on
stderr, run with --log-level error); anything else is an "unclean" failure. Violations come
with the timeline of the application concerned (`Report.evidence`); the full timeline of
cycles and world events is in `Report.timeline` (and in bench/results/faults.json).
"""

from __future__ import annotations

import contextlib
import errno
import imaplib
import json
import logging
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from enum import StrEnum
from pathlib import Path
from typing import Any

import imapclient
from dovecot import Dovecot, MailUser
from mailclient import MailClient, SmtpServer, parse
from reliability import mails
from support import run_cli
from tcpproxy import TcpProxy

from nextround.classifier.analyse import analyse
from nextround.classifier.inference import RejectionModel
from nextround.classifier.message import message_ids
from nextround.classifier.verdict import company_key
from nextround.daemon import applications as apps_module
from nextround.daemon import store as store_module
from nextround.daemon import training as training_module
from nextround.daemon.config import DEFAULT_THRESHOLD
from nextround.daemon.drafts import HEADER, parse_header_value
from nextround.daemon.faults import ENVIRONMENT as KILL_AT_ENVIRONMENT
from nextround.daemon.parse import parse_message
from nextround.daemon.training import ModelSettings, get_model

SEED_ENVIRONMENT = "NEXTROUND_FAULT_SEED"
DEFAULT_SEED = 20261102
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
IMAP_TIMEOUT = 2.0  # seconds: a stalled connection costs this (twice: the command, LOGOUT)
CATCH_UP_TIMEOUT = 30.0
LOWERED_BUSY_TIMEOUT_MS = 250
ATTACH_WINDOW = timedelta(days=60)  # as daemon/engine.py
FRESH_AFTER = ATTACH_WINDOW + timedelta(days=5)  # a company and role unused this long is new
CATCH_UP = (timedelta(minutes=1), timedelta(minutes=12), timedelta(minutes=24))
TMPFS_SIZE = "40m"  # the model (~10 MB) lives in the state directory too
SUBPROCESS_TIMEOUT = 120.0
TERMINAL_OR_STALE = frozenset({"skipped", "closed", "replied", "stale"})
MUST_HAVE_REQUEST = frozenset({"drafted", "needs_contact", "requested", "followed_up"})

# Holds the state database locked for argv[2] seconds, or until a line arrives on stdin.
_LOCKER = (
    "import select, sqlite3, sys\n"
    "db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
    "db.execute('BEGIN EXCLUSIVE')\n"
    "print('locked', flush=True)\n"
    "select.select([sys.stdin], [], [], float(sys.argv[2]))\n"
    "db.execute('COMMIT')\n"
)


class Kind(StrEnum):
    NONE = "none"
    KILL_AFTER_APPEND = "kill_after_append"
    KILL_RANDOM = "kill_random"
    DOVECOT_DOWN = "dovecot_down"
    DOVECOT_RESTART_MID_CYCLE = "dovecot_restart_mid_cycle"
    CUT_AFTER_BYTES = "cut_after_bytes"
    DROP_ALL_TIMER = "drop_all_timer"
    DROP_ON_FETCH = "drop_on_fetch"
    DROP_ON_APPEND = "drop_on_append"
    STALL_TIMER = "stall_timer"
    STALL_ON_APPEND = "stall_on_append"
    REFUSE = "refuse_connections"
    DB_LOCKED_WAIT = "db_locked_wait"
    DB_LOCKED_TIMEOUT = "db_locked_timeout"
    DISK_FULL_INJECTED = "disk_full_injected"
    DISK_FULL_TMPFS = "disk_full_tmpfs"


# The share of cycles that get each fault (at least MIN_PER_KIND each); the rest run clean.
SHARES: dict[Kind, float] = {
    Kind.KILL_AFTER_APPEND: 0.03,
    Kind.KILL_RANDOM: 0.03,
    Kind.DOVECOT_DOWN: 0.02,
    Kind.DOVECOT_RESTART_MID_CYCLE: 0.02,
    Kind.CUT_AFTER_BYTES: 0.07,
    Kind.DROP_ALL_TIMER: 0.04,
    Kind.DROP_ON_FETCH: 0.03,
    Kind.DROP_ON_APPEND: 0.04,
    Kind.STALL_TIMER: 0.015,
    Kind.STALL_ON_APPEND: 0.015,
    Kind.REFUSE: 0.015,
    Kind.DB_LOCKED_WAIT: 0.03,
    Kind.DB_LOCKED_TIMEOUT: 0.02,
    Kind.DISK_FULL_INJECTED: 0.06,
    Kind.DISK_FULL_TMPFS: 0.025,
}
MIN_PER_KIND = 2
SUBPROCESS_KINDS = frozenset({Kind.KILL_AFTER_APPEND, Kind.KILL_RANDOM})
# A fresh rejection is delivered right before these, so that a draft is owed in the cycle.
WANTS_A_DRAFT = frozenset({Kind.KILL_AFTER_APPEND, Kind.DROP_ON_APPEND, Kind.STALL_ON_APPEND})
# The cycle must fail, and fail cleanly.
MUST_FAIL = frozenset({Kind.DOVECOT_DOWN, Kind.REFUSE})
DOVECOT_TOUCHED = frozenset({Kind.DOVECOT_DOWN, Kind.DOVECOT_RESTART_MID_CYCLE})


def seed_from_environment() -> int:
    value = os.environ.get(SEED_ENVIRONMENT, "").strip()
    return int(value) if value else DEFAULT_SEED


@dataclass
class Options:
    cycles: int = 200
    seed: int = DEFAULT_SEED
    tmpfs: bool = True  # try a real disk-full on a tmpfs (needs root); else injected only
    in_cycle_delivery: float = 0.15  # share of cycles during which a mail arrives
    # In-process cycles reuse one loaded classifier: loading the 10 MB model costs ~0.3 s a
    # cycle and is not what this tests. Subprocess cycles always load it from the state dir.
    reuse_model: bool = True
    progress_every: int = 25
    log: Callable[[str], None] = print


@dataclass
class Attempt:
    """How one `nextround once` ended."""

    code: int | None  # exit code; a negative signal number for a killed subprocess
    out: str = ""
    err: str = ""
    crash: str = ""  # an exception escaped an in-process run: its traceback
    seconds: float = 0.0

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL

    @property
    def succeeded(self) -> bool:
        return self.code == 0 and not self.crash

    @property
    def failed_cleanly(self) -> bool:
        lines = self.err.strip().splitlines()
        return (
            self.code == 1
            and not self.crash
            and len(lines) == 1
            and lines[0].startswith("nextround: ")
        )

    def describe(self) -> str:
        if self.crash:
            return f"exception escaped: {self.crash.strip().splitlines()[-1]}"
        return f"exit {self.code}, stderr: {self.err.strip()[-600:]!r}"


@dataclass
class Outcome:
    index: int
    now: datetime
    kind: Kind
    mode: str  # in-process | subprocess
    attempt: Attempt
    fired: bool
    detail: str = ""

    @property
    def result(self) -> str:
        if self.attempt.killed:
            return "killed"
        if self.attempt.succeeded:
            return "succeeded"
        if self.attempt.failed_cleanly:
            return "failed_cleanly"
        return "unclean"


@dataclass
class Report:
    seed: int
    cycles: int = 0
    catch_up_cycles: int = 0
    in_process: int = 0
    subprocesses: int = 0
    results: Counter[str] = field(default_factory=Counter)
    scheduled: Counter[str] = field(default_factory=Counter)
    fired: Counter[str] = field(default_factory=Counter)
    mail: Counter[str] = field(default_factory=Counter)
    applications: Counter[str] = field(default_factory=Counter)
    unclean: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)
    # For each application named in a violation: the timeline lines that mention it.
    evidence: dict[int, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time by kind, and "world"
    tmpfs: bool = False
    sim_days: float = 0.0
    wall_seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "cycles": self.cycles,
            "catch_up_cycles": self.catch_up_cycles,
            "in_process_cycles": self.in_process,
            "subprocess_cycles": self.subprocesses,
            "results": dict(sorted(self.results.items())),
            "faults_scheduled": dict(sorted(self.scheduled.items())),
            "faults_fired": dict(sorted(self.fired.items())),
            "mail": dict(sorted(self.mail.items())),
            "applications_by_state": dict(sorted(self.applications.items())),
            "violation_count": len(self.violations),
            "violations": self.violations,
            "unclean_failures": self.unclean,
            "anomalies": self.anomalies,
            "leftovers": self.leftovers,
            "notes": self.notes,
            "seconds_by_kind": {
                key: round(value, 1) for key, value in sorted(self.seconds.items())
            },
            "evidence": {str(number): lines for number, lines in self.evidence.items()},
            "timeline": self.timeline,
            "real_disk_full_on_tmpfs": self.tmpfs,
            "simulated_days": round(self.sim_days, 1),
            "wall_seconds": round(self.wall_seconds, 1),
        }

    def summary(self) -> str:
        def counts(counter: Counter[str]) -> str:
            return ", ".join(f"{key} {value}" for key, value in sorted(counter.items())) or "-"

        lines = [
            f"fault run: seed {self.seed} (override with {SEED_ENVIRONMENT}), "
            f"{self.cycles} cycles + {self.catch_up_cycles} catch-up "
            f"({self.in_process} in-process, {self.subprocesses} subprocess), "
            f"{self.sim_days:.0f} simulated days, {self.wall_seconds:.0f} s",
            f"results: {counts(self.results)}",
            f"faults fired: {counts(self.fired)}",
            f"faults scheduled: {counts(self.scheduled)}",
            f"mail: {counts(self.mail)}",
            f"applications: {counts(self.applications)}",
            f"real disk-full on tmpfs: {'yes' if self.tmpfs else 'no (injected ENOSPC only)'}",
            "seconds by kind: "
            + ", ".join(f"{k} {v:.0f}" for k, v in sorted(self.seconds.items())),
            f"invariant violations: {len(self.violations)}",
            *(f"  VIOLATION {text}" for text in self.violations),
            f"unclean failures: {len(self.unclean)}",
            *(f"  UNCLEAN {text}" for text in self.unclean),
            f"anomalies (reported, not invariants): {len(self.anomalies)}",
            *(f"  ANOMALY {text}" for text in self.anomalies),
            *(f"  LEFTOVER {text}" for text in self.leftovers),
            *(
                line
                for number, lines in sorted(self.evidence.items())
                for line in [f"timeline of application #{number}:", *lines]
            ),
            *(f"  note: {text}" for text in self.notes),
        ]
        return "\n".join(lines)


# -- the world: mail arriving, the user, the recruiters ----------------------------------------


@dataclass
class Delivered:
    message_id: str
    kind: str  # rejection | closed | other | reply | auto_reply
    at: datetime
    company: str = ""
    role: str = ""
    template: str = ""


@dataclass
class SentCopy:
    message_id: str
    in_reply_to: str
    application: int | None
    step: str | None
    to: str
    subject: str
    at: datetime
    answered: bool = False
    auto_answered: bool = False


class Corpus:
    """Filled-in templates, each checked once with the classifier before it is used: a
    rejection must read as a rejection of that company and role, ordinary mail as other.
    A fault test must not fail because the classifier misread a mail."""

    def __init__(self, model: RejectionModel, identity: str) -> None:
        self.model = model
        self.identity = identity
        self.verdicts: dict[tuple[str, str, str], bool] = {}
        self.discarded = 0

    def usable(
        self, template: mails.Template, company: mails.Company, role: str, expected: str
    ) -> bool:
        key = (template.name, company.name, role)
        if key not in self.verdicts:
            raw, _ = mails.fill(template, company, role, f"Alex Doe <{self.identity}>", T0)
            [analysis] = analyse([parse_message(raw)], self.model, user_addresses=[self.identity])
            good = analysis.label == expected
            if expected == "rejection":
                good = good and analysis.is_rejection
            if expected in ("rejection", "closed"):
                good = (
                    good
                    and company_key(analysis.company) == company_key(company.name)
                    and (analysis.role or "").lower() == role.lower()
                )
            self.verdicts[key] = good
            self.discarded += not good
        return self.verdicts[key]


class KeptUser(MailUser):
    """The user's side of the mailbox over one kept IMAP connection (`MailUser` helpers log
    in for every call, which made up most of the time spent between cycles). `refresh()`
    before each use reconnects after Dovecot was restarted."""

    kept: imapclient.IMAPClient | None = None

    @contextlib.contextmanager
    def _session(self) -> Iterator[imapclient.IMAPClient]:
        if self.kept is None:
            self.kept = self.client()
        yield self.kept

    def refresh(self) -> None:
        if self.kept is not None:
            try:
                self.kept.noop()
            except (imaplib.IMAP4.error, OSError):
                self.close()

    def close(self) -> None:
        kept, self.kept = self.kept, None
        if kept is not None:
            try:
                kept.logout()
            except (imaplib.IMAP4.error, OSError):
                kept.shutdown()


class UserClient(MailClient):
    """The simulated mail client, sending from a listing of Drafts it already fetched
    (`MailClient.send_draft` fetches every draft again to find the one it sends)."""

    listing: dict[int, EmailMessage] | None = None

    def drafts(self) -> dict[int, EmailMessage]:
        return self.listing if self.listing is not None else super().drafts()

    def delete_draft(self, uid: int) -> None:
        with self.user._session() as client:
            client.select_folder("Drafts")
            client.delete_messages([uid])
            client.expunge()


class World:
    """Everything outside nextround: mail arriving, and the user's and recruiters' actions."""

    def __init__(
        self, user: KeptUser, client: UserClient, corpus: Corpus, rng: random.Random
    ) -> None:
        self.user = user
        self.client = client
        self.corpus = corpus
        self.rng = rng
        self.to = f"Alex Doe <{user.username}>"
        self.delivered: list[Delivered] = []
        self.by_id: dict[str, Delivered] = {}
        self.sent: list[SentCopy] = []
        self.last_used: dict[tuple[str, str], datetime] = {}
        self.counts: Counter[str] = Counter()
        self.journal: list[str] = []
        # Every draft nextround ever wrote, as seen before each cycle: (application, step) ->
        # Message-IDs. Only the user deletes drafts, and only after looking at them.
        self.drafts_seen: dict[tuple[int, str], set[str]] = {}
        self.deleted: set[str] = set()  # the Message-IDs of the drafts the user deleted

    # -- deliveries -------------------------------------------------------------------------

    def prepare_rejection(self, at: datetime, fresh: bool) -> tuple[bytes, Delivered]:
        """A rejection: for a company and role not seen for 65 days (`fresh`, so it opens a
        new application), or one seen in the last 30 days (attached to that application)."""
        recent = sorted(
            pair for pair, when in self.last_used.items() if at - when < timedelta(days=30)
        )
        unused = [
            (company.name, role)
            for company in mails.COMPANIES
            for role in mails.ROLES
            if at - self.last_used.get((company.name, role), at - FRESH_AFTER) >= FRESH_AFTER
        ]
        if fresh and unused:
            pool, kind = unused, "rejection"
        elif recent:
            pool, kind = recent, "rejection_repeat"  # attaches to that application
        elif unused:
            pool, kind = unused, "rejection"
        else:  # every pair was used 30-65 days ago: take the oldest (it may attach or not)
            pool, kind = [min(self.last_used, key=lambda pair: self.last_used[pair])], "rejection"
        for _ in range(100):
            name, role = self.rng.choice(pool)
            company = next(c for c in mails.COMPANIES if c.name == name)
            template = self.rng.choice(mails.REJECTIONS)
            if self.corpus.usable(template, company, role, "rejection"):
                raw, message_id = mails.fill(template, company, role, self.to, at)
                return raw, Delivered(message_id, kind, at, company.name, role, template.name)
        raise RuntimeError("no usable rejection found: the classifier misreads the corpus")

    def prepare_closed(self, at: datetime) -> tuple[bytes, Delivered] | None:
        for _ in range(50):
            company = self.rng.choice(mails.COMPANIES)
            role = self.rng.choice(mails.ROLES)
            last = self.last_used.get((company.name, role))
            if last is not None and at - last < FRESH_AFTER:
                continue
            template = self.rng.choice(mails.CLOSED)
            if self.corpus.usable(template, company, role, "closed"):
                raw, message_id = mails.fill(template, company, role, self.to, at)
                return raw, Delivered(message_id, "closed", at, company.name, role, template.name)
        return None

    def prepare_other(self, at: datetime) -> tuple[bytes, Delivered] | None:
        for _ in range(50):
            template = self.rng.choice(mails.OTHERS)
            company = self.rng.choice(mails.COMPANIES)
            role = self.rng.choice(mails.ROLES)
            if self.corpus.usable(template, company, role, "other"):
                raw, message_id = mails.fill(template, company, role, self.to, at)
                return raw, Delivered(message_id, "other", at, company.name, role, template.name)
        return None

    def deliver(self, prepared: tuple[bytes, Delivered] | None) -> None:
        if prepared is None:
            return
        raw, delivered = prepared
        self.client.deliver(raw, delivered.at)
        self.delivered.append(delivered)
        self.by_id[delivered.message_id] = delivered
        if delivered.kind in ("rejection", "rejection_repeat", "closed"):
            pair = (delivered.company, delivered.role)
            if delivered.kind != "rejection_repeat" or pair not in self.last_used:
                self.last_used[pair] = delivered.at
        self.counts[f"delivered_{delivered.kind}"] += 1
        self.journal.append(
            f"delivered {delivered.kind} {delivered.message_id} {delivered.company} / "
            f"{delivered.role} at {delivered.at:%m-%d %H:%M}"
        )

    def deliver_rejection(self, at: datetime, fresh: bool = True) -> None:
        self.deliver(self.prepare_rejection(at, fresh))

    # -- between two cycles ----------------------------------------------------------------

    def act(self, start: datetime, end: datetime) -> None:
        """What happens in (start, end): mail arrives, the user handles drafts, recruiters
        answer sent requests."""

        def moment() -> datetime:
            return start + (end - start) * self.rng.uniform(0.2, 0.95)

        self.refresh()
        if self.rng.random() < 0.45:
            self.deliver_rejection(moment(), fresh=self.rng.random() < 0.85)
        if self.rng.random() < 0.05:
            self.deliver_rejection(moment(), fresh=True)
        if self.rng.random() < 0.03:
            self.deliver(self.prepare_closed(moment()))
        if self.rng.random() < 0.35:
            self.deliver(self.prepare_other(moment()))
        self.handle_drafts(moment)
        self.answer_requests(moment)

    def refresh(self) -> None:
        self.user.refresh()

    def observe(self, draft: EmailMessage) -> None:
        marked = parse_header_value(str(draft.get(HEADER, "")))
        if marked is not None:
            seen = self.drafts_seen.setdefault(marked, set())
            for message_id in message_ids(str(draft.get("Message-ID", ""))):
                if message_id not in seen:
                    seen.add(message_id)
                    self.journal.append(f"new in Drafts: {draft.get(HEADER)} {message_id}")

    def handle_drafts(self, moment: Callable[[], datetime]) -> None:
        listing = self.client.drafts()
        self.client.listing = listing
        try:
            for uid, draft in sorted(listing.items()):
                self.observe(draft)
                roll = self.rng.random()
                if roll < 0.25:
                    self.send(uid, draft, moment())
                elif roll < 0.30:
                    self.client.delete_draft(uid)
                    self.deleted.update(message_ids(str(draft.get("Message-ID", ""))))
                    self.counts["user_deleted_draft"] += 1
                    self.journal.append(f"user deleted draft {draft.get(HEADER)}")
        finally:
            self.client.listing = None

    def send(self, uid: int, draft: EmailMessage, at: datetime) -> None:
        marked = parse_header_value(str(draft.get(HEADER, "")))
        application, step = marked if marked else (None, None)
        answers = str(draft.get("In-Reply-To", "")).strip()
        to = None if draft["To"] else self.recipient_for(application, answers)
        # Gmail drops headers it does not know (the X-Nextround-Application mark included);
        # some clients keep them.
        keep = self.rng.random() < 0.3
        message_id = self.client.send_draft(uid, at, to=to, keep_unknown_headers=keep)
        self.sent.append(
            SentCopy(
                message_id,
                answers,
                application,
                step,
                to or str(draft["To"]),
                str(draft["Subject"]),
                at,
            )
        )
        self.counts[f"user_sent_{step or 'unmarked'}"] += 1
        self.journal.append(
            f"user sent draft {draft.get(HEADER)} as {message_id} at {at:%m-%d %H:%M} "
            f"({'keeping' if keep else 'dropping'} X- headers)"
        )

    def recipient_for(self, application: int | None, answers: str) -> str:
        """The address the user types into a draft that has no recipient."""
        for copy in reversed(self.sent):
            if application is not None and copy.application == application and copy.to:
                return copy.to
        seen: set[str] = set()
        while answers and answers not in seen:
            seen.add(answers)
            delivered = self.by_id.get(answers)
            if delivered is not None and delivered.company:
                company = next(c for c in mails.COMPANIES if c.name == delivered.company)
                return f"hiring@{company.domain}"
            answers = next(
                (copy.in_reply_to for copy in self.sent if copy.message_id == answers), ""
            )
        return "hiring@example.net"

    def answer_requests(self, moment: Callable[[], datetime]) -> None:
        for copy in self.sent:
            if copy.answered or copy.step not in ("request", "follow_up"):
                continue
            roll = self.rng.random()
            if roll < 0.12:
                self.reply(copy, moment(), auto=False)
            elif roll < 0.14 and not copy.auto_answered:
                self.reply(copy, moment(), auto=True)

    def reply(self, copy: SentCopy, at: datetime, auto: bool) -> None:
        delivered = self._rejection_of(copy)
        company = next(
            (c for c in mails.COMPANIES if delivered and c.name == delivered.company),
            mails.COMPANIES[0],
        )
        values = mails.fields(company, delivered.role if delivered else "")
        chain = [delivered.message_id if delivered else "", copy.in_reply_to, copy.message_id]
        references = " ".join(dict.fromkeys(item for item in chain if item))
        subject = copy.subject if copy.subject.lower().startswith("re:") else f"Re: {copy.subject}"
        if auto:
            raw, message_id = mails.compose(
                f"{company.recruiter} <{company.recruiter_email}>",
                self.to,
                f"Automatic reply: {subject}",
                mails.AUTO_REPLY_BODY.format(**values),
                at,
                in_reply_to=copy.message_id,
                references=references,
                headers={"Auto-Submitted": "auto-replied"},
            )
            kind = "auto_reply"
            copy.auto_answered = True
        else:
            raw, message_id = mails.compose(
                copy.to,
                self.to,
                subject,
                self.rng.choice(mails.REPLY_BODIES).format(**values),
                at,
                in_reply_to=copy.message_id,
                references=references,
            )
            kind = "reply"
            for other in self.sent:  # the recruiter answers the conversation once
                if other.application is not None and other.application == copy.application:
                    other.answered = True
            copy.answered = True
        self.client.deliver(raw, at)
        record = Delivered(message_id, kind, at, company.name)
        self.delivered.append(record)
        self.by_id[message_id] = record
        self.counts[f"delivered_{kind}"] += 1
        self.journal.append(f"recruiter {kind} to {copy.message_id} (#{copy.application})")

    def _rejection_of(self, copy: SentCopy) -> Delivered | None:
        answers = copy.in_reply_to
        for _ in range(5):
            delivered = self.by_id.get(answers)
            if delivered is not None:
                return delivered
            answers = next((c.in_reply_to for c in self.sent if c.message_id == answers), "")
        return None


# -- fault machinery ---------------------------------------------------------------------------


class Trigger:
    """A thread that performs one fault action while a cycle runs: after a delay (from the
    start, or from the cycle's first connection), after the cycle's k-th IMAP command, or
    after the n-th occurrence of a named command (plus `then` seconds). The action returns
    whether it hit something (an open connection); `finish()` stops the thread, joins it,
    and tells whether the action ran, and hit, while the cycle was still running."""

    def __init__(
        self,
        proxy: TcpProxy,
        action: Callable[[], bool],
        *,
        after_connect: bool = False,
        delay: float = 0.0,
        after_commands: int = 0,
        command: str = "",
        nth: int = 1,
        then: float = 0.0,
    ) -> None:
        self.proxy = proxy
        self.action = action
        self.after_connect = after_connect
        self.delay = delay
        self.after_commands = after_commands
        self.command = command
        self.nth = nth
        self.then = then
        self.fired = False
        self.at_command = ""
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="fault-trigger", daemon=True)

    def start(self) -> Trigger:
        self._thread.start()
        return self

    def _anchored(self) -> bool:
        if not self.after_commands and not self.command:
            return True
        commands = self.proxy.commands
        if self.command:
            return commands.count(self.command) >= self.nth
        return len(commands) >= self.after_commands

    def _run(self) -> None:
        while self.after_connect and self.proxy.connections == 0:
            if self._stop.wait(0.002):
                return
        if self.delay and self._stop.wait(self.delay):
            return
        while not self._anchored():
            if self._stop.wait(0.002):
                return
        if self.then and self._stop.wait(self.then):
            return
        with self._lock:
            if self._stop.is_set():
                return
            commands = self.proxy.commands
            self.at_command = commands[-1] if commands else "(before connecting)"
            try:
                self.fired = self.action()
            except BaseException as error:  # handed to the main thread by finish()
                self.error = error

    def finish(self) -> bool:
        with self._lock:
            self._stop.set()
        self._thread.join(30)
        if self._thread.is_alive():
            raise RuntimeError("a fault trigger thread did not stop")
        if self.error is not None:
            raise RuntimeError(f"the fault action failed: {self.error!r}") from self.error
        return self.fired


class SeamFault:
    """`OSError(ENOSPC)` inside the `storage_errors` seam at its `fire_at`-th use."""

    def __init__(self, fire_at: int) -> None:
        self.fire_at = fire_at
        self.calls = 0
        self.where = ""

    def wrap(
        self, original: Callable[[str], contextlib.AbstractContextManager[None]]
    ) -> Callable[[str], contextlib.AbstractContextManager[None]]:
        @contextlib.contextmanager
        def faulty(doing: str) -> Iterator[None]:
            self.calls += 1
            with original(doing):
                if self.calls == self.fire_at:
                    self.where = doing
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                yield

        return faulty


@contextlib.contextmanager
def patched(target: object, name: str, value: object) -> Iterator[None]:
    """A minimal monkeypatch (the harness also runs outside pytest)."""
    original = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, original)


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """`nextround --log-level error` reconfigures logging for the whole process: put back
    the levels and handlers of before, for whatever runs next in this process."""
    names = ("", "mailparser", "imapclient")
    levels = {name: logging.getLogger(name).level for name in names}
    handlers = list(logging.getLogger().handlers)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        logging.getLogger().handlers[:] = handlers


def mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def unmount(path: Path) -> None:
    result = subprocess.run(["umount", str(path)], capture_output=True, check=False)
    if result.returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill_disk(directory: Path, leave: int) -> Path:
    """Fill the file system of `directory` up to `leave` free bytes; return the filler."""
    filler = directory / "filler.bin"
    stat = os.statvfs(directory)
    size = max(0, stat.f_bavail * stat.f_frsize - leave)
    descriptor = os.open(filler, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        try:
            os.posix_fallocate(descriptor, 0, size)
        except OSError:
            chunk = b"\0" * (1 << 20)
            written = 0
            with contextlib.suppress(OSError):
                while written < size:
                    written += os.write(descriptor, chunk[: size - written])
    finally:
        os.close(descriptor)
    return filler


def child_processes(exclude: set[int]) -> list[str]:
    """Processes whose parent is this process (zombies included), except `exclude`."""
    me = os.getpid()
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        pid = int(status.parent.name)
        if int(fields.get("PPid", "0").strip()) == me and pid not in exclude:
            found.append(
                f"process {pid} {fields.get('Name', '?').strip()} "
                f"({fields.get('State', '?').strip()})"
            )
    return found


def train_model(state_dir: Path) -> None:
    """Train the classifier into `state_dir` (the bench; tests copy a session model)."""
    get_model(ModelSettings(state_dir=state_dir, threshold=DEFAULT_THRESHOLD))


# -- the run -----------------------------------------------------------------------------------


class FaultRun:
    def __init__(
        self,
        dovecot: Dovecot,
        user: MailUser,
        model_dir: Path,
        workdir: Path,
        options: Options,
    ) -> None:
        if os.environ.get(KILL_AT_ENVIRONMENT):
            raise RuntimeError(f"{KILL_AT_ENVIRONMENT} is set: in-process cycles would die")
        self.dovecot = dovecot
        self.user = user
        self.model_dir = model_dir
        self.workdir = workdir
        self.options = options
        self.rng = random.Random(options.seed)
        self.report = Report(seed=options.seed)
        self.log = options.log
        self.now = T0
        self.procs: list[subprocess.Popen[str]] = []
        # Measured on clean cycles, to aim faults inside a cycle.
        self.seconds: list[float] = [0.3]
        self.bytes_down: list[int] = [4000]
        self.command_counts: list[int] = [12]
        self.seam_calls: list[int] = [40]
        self.lost_answers: set[tuple[int, str, str]] = set()  # (application, step, Message-ID)

    # -- setup and teardown --------------------------------------------------------------

    def run(self) -> Report:
        started = time.monotonic()
        threads_before = {thread.ident for thread in threading.enumerate()}
        self.log(
            f"fault run: seed {self.options.seed} (set {SEED_ENVIRONMENT} to override), "
            f"{self.options.cycles} cycles"
        )
        # Undone in reverse order, each step even if an earlier one fails.
        with contextlib.ExitStack() as cleanup:
            cleanup.enter_context(logging_restored())
            mount = self.workdir / "statefs"
            self.report.tmpfs = self.options.tmpfs and mount_tmpfs(mount, TMPFS_SIZE)
            if self.report.tmpfs:
                cleanup.callback(unmount, mount)
            else:
                self.report.notes.append("no tmpfs (not root, or mount refused): injected only")
            self.state_dir = mount / "state"
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            for model_file in self.model_dir.iterdir():
                if model_file.is_file():
                    shutil.copy2(model_file, self.state_dir / model_file.name)
            self.database = self.state_dir / "state.db"
            self.proxy = TcpProxy(self.dovecot.host, self.dovecot.port_plain).start()
            cleanup.callback(self.proxy.close)
            smtp = SmtpServer().start()
            cleanup.callback(smtp.stop)
            cleanup.callback(self.ensure_dovecot)
            cleanup.callback(self.reap)

            self.config = self.write_config()
            self.model = get_model(
                ModelSettings(state_dir=self.state_dir, threshold=DEFAULT_THRESHOLD)
            )
            corpus = Corpus(self.model, self.user.username)
            kept = KeptUser(self.user.server, self.user.username, self.user.password)
            cleanup.callback(kept.close)
            self.world = World(kept, UserClient(kept, smtp), corpus, self.rng)
            self.cycles()
            self.catch_up()
            self.check_invariants()
            self.report.mail.update(self.world.counts)
            if corpus.discarded:
                self.report.notes.append(
                    f"{corpus.discarded} filled-in templates not used: the classifier misread them"
                )
        self.report.leftovers += child_processes(exclude={self.dovecot.pid or -1})
        for thread in threading.enumerate():
            if thread.ident not in threads_before and thread.is_alive():
                self.report.leftovers.append(f"thread {thread.name}")
        self.report.sim_days = (self.now - T0).total_seconds() / 86400
        self.report.wall_seconds = time.monotonic() - started
        return self.report

    def reap(self) -> None:
        """Every process this run started is gone (SIGKILLed if need be) and waited for."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.communicate(timeout=10)

    def ensure_dovecot(self) -> None:
        if not self.dovecot.running:
            self.dovecot.restart()

    def write_config(self, name: str = "config.toml", timeout: float = IMAP_TIMEOUT) -> Path:
        password_file = self.workdir / "password"
        password_file.write_text(self.user.password + "\n")
        password_file.chmod(0o600)
        path = self.workdir / name
        path.write_text(
            "[imap]\n"
            f'host = "{self.proxy.host}"\n'
            f"port = {self.proxy.port}\n"
            'security = "plain"\n'
            f'username = "{self.user.username}"\n'
            f'password_file = "{password_file}"\n'
            f"timeout = {timeout}\n"
            "\n[identity]\n"
            'name = "Alex Doe"\n'
            f'email = "{self.user.username}"\n'
            "\n[state]\n"
            f'database = "{self.database}"\n',
            encoding="utf-8",
        )
        path.chmod(0o600)
        return path

    # -- the cycles ------------------------------------------------------------------------

    def schedule(self) -> list[Kind]:
        total = self.options.cycles
        kinds: list[Kind] = []
        for kind, share in SHARES.items():
            if kind is Kind.DISK_FULL_TMPFS and not self.report.tmpfs:
                continue
            kinds += [kind] * max(MIN_PER_KIND, round(share * total))
        if len(kinds) > total - 2:
            raise ValueError(f"{total} cycles are too few for every fault kind")
        kinds += [Kind.NONE] * (total - 2 - len(kinds))
        self.rng.shuffle(kinds)
        return [Kind.NONE, Kind.NONE, *kinds]  # two clean cycles first: a baseline

    def step(self) -> timedelta:
        roll = self.rng.random()
        if roll < 0.6:
            return timedelta(minutes=self.rng.uniform(5, 90))
        if roll < 0.9:
            return timedelta(hours=self.rng.uniform(2, 12))
        return timedelta(days=self.rng.uniform(1, 3))

    def cycles(self) -> None:
        schedule = self.schedule()
        attempts: Counter[Kind] = Counter()
        for index, kind in enumerate(schedule):
            previous, self.now = self.now, self.now + self.step()
            started = time.monotonic()
            self.world.act(previous, self.now)
            if kind in WANTS_A_DRAFT:
                self.world.deliver_rejection(self.now - timedelta(seconds=30), fresh=True)
            acted = time.monotonic()
            outcome = self.cycle(index, kind)
            self.note_lost_answers()
            seconds = self.report.seconds
            seconds["world"] = seconds.get("world", 0.0) + acted - started
            seconds[kind] = seconds.get(kind, 0.0) + time.monotonic() - acted
            self.report.timeline += [f"  world: {line}" for line in self.world.journal]
            self.world.journal.clear()
            self.record(outcome)
            attempts[kind] += 1
            if kind is not Kind.NONE and not self.report.fired[kind] and attempts[kind] < 8:
                self.retry(schedule, index, kind)
            if self.options.progress_every and (index + 1) % self.options.progress_every == 0:
                self.log(
                    f"  {index + 1} cycles, {self.now:%Y-%m-%d %H:%M}: "
                    + ", ".join(f"{k} {v}" for k, v in sorted(self.report.results.items()))
                )

    def note_lost_answers(self) -> None:
        """The drafts whose APPEND failed with its answer lost (the engine clears the Drafts
        UIDNEXT it noted): whether they got there, the engine cannot tell from a draft the
        user deleted since, and writes them again (by design: an extra draft rather than a
        lost one)."""
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30)
            ) as db:
                rows = db.execute(
                    "SELECT id, pending_step, pending_message_id FROM applications WHERE "
                    "pending_message_id IS NOT NULL AND pending_drafts_uidnext IS NULL"
                ).fetchall()
        except sqlite3.OperationalError:
            return  # no database yet, or not its tables: no cycle got that far
        self.lost_answers.update((int(number), str(step), str(mid)) for number, step, mid in rows)

    def retry(self, schedule: list[Kind], index: int, kind: Kind) -> None:
        """A fault kind that has not hit a running cycle yet takes the place of a later
        clean cycle (so every kind fires, whatever the seed and the machine's speed)."""
        later = [i for i in range(index + 1, len(schedule)) if schedule[i] is Kind.NONE]
        if later:
            schedule[self.rng.choice(later)] = kind

    def record(self, outcome: Outcome) -> None:
        report = self.report
        report.cycles += 1
        report.results[outcome.result] += 1
        if outcome.kind is not Kind.NONE:
            report.scheduled[outcome.kind] += 1
            if outcome.fired:
                report.fired[outcome.kind] += 1
        if outcome.mode == "subprocess":
            report.subprocesses += 1
        else:
            report.in_process += 1
        where = f"cycle {outcome.index} ({outcome.kind}, {outcome.mode}, {outcome.detail})"
        said = " | ".join(
            line.strip()
            for line in (outcome.attempt.out + outcome.attempt.err).splitlines()
            if line.strip()
        )
        report.timeline.append(
            f"{where} at {outcome.now:%Y-%m-%d %H:%M}: {outcome.result}"
            f"{' (fired)' if outcome.fired else ''}: {said[:4000]}"
        )
        if outcome.result == "unclean":
            report.unclean.append(f"{where}: {outcome.attempt.describe()}")
        elif outcome.kind in MUST_FAIL and outcome.result != "failed_cleanly":
            report.violations.append(f"{where}: expected a clean failure, got {outcome.result}")
        if outcome.kind is Kind.NONE and outcome.result == "succeeded":
            self.seconds = [*self.seconds[-19:], outcome.attempt.seconds]

    def catch_up(self) -> None:
        """Clean cycles, with a patient IMAP timeout: a loaded machine must not fail them."""
        self.config = self.write_config("catch-up.toml", CATCH_UP_TIMEOUT)
        start = self.now
        for offset in CATCH_UP:
            self.now = start + offset
            self.proxy.reset_counters()
            attempt = self.in_process()
            self.report.catch_up_cycles += 1
            said = " | ".join(line.strip() for line in attempt.out.splitlines() if line.strip())
            self.report.timeline.append(f"catch-up cycle at {self.now:%Y-%m-%d %H:%M}: {said}")
            if not attempt.succeeded:
                self.report.violations.append(
                    f"catch-up cycle at {self.now.isoformat()} failed: {attempt.describe()}"
                )

    def cycle(self, index: int, kind: Kind) -> Outcome:
        self.proxy.reset_counters()
        arrival = None
        if (
            kind not in DOVECOT_TOUCHED
            and kind not in SUBPROCESS_KINDS
            and self.rng.random() < self.options.in_cycle_delivery
        ):
            arrival = self.arrival()
        try:
            outcome = self.faulted(index, kind)
        finally:
            if arrival is not None:
                arrival.join(30)
        self.ensure_dovecot()
        stats = self.proxy.stats()
        if kind is Kind.NONE and outcome.result == "succeeded":
            self.bytes_down = [*self.bytes_down[-19:], stats.bytes_down]
            self.command_counts = [*self.command_counts[-19:], len(stats.commands)]
        return outcome

    def arrival(self) -> threading.Thread:
        """Mail that arrives while the cycle runs."""
        at = self.now - timedelta(seconds=5)
        prepared = (
            self.world.prepare_rejection(at, fresh=True)
            if self.rng.random() < 0.5
            else self.world.prepare_other(at)
        )
        delay = self.rng.uniform(0.0, 0.4)
        self.world.refresh()

        def deliver() -> None:
            time.sleep(delay)
            try:
                self.world.deliver(prepared)
            except Exception as error:  # reported; the run goes on
                self.report.notes.append(f"a delivery during a cycle failed: {error!r}")

        thread = threading.Thread(target=deliver, name="fault-arrival", daemon=True)
        thread.start()
        self.world.counts["delivered_during_a_cycle"] += 1
        return thread

    # -- one cycle with its fault ----------------------------------------------------------

    def faulted(self, index: int, kind: Kind) -> Outcome:
        def outcome(attempt: Attempt, fired: bool, detail: str = "") -> Outcome:
            mode = "subprocess" if kind in SUBPROCESS_KINDS else "in-process"
            return Outcome(index, self.now, kind, mode, attempt, fired, detail)

        if kind is Kind.NONE:
            return outcome(self.in_process(), False)
        if kind is Kind.KILL_AFTER_APPEND:
            attempt = self.subprocess({KILL_AT_ENVIRONMENT: "after-append"})
            return outcome(attempt, attempt.killed, "checkpoint after-append")
        if kind is Kind.KILL_RANDOM:
            return self.kill_random(outcome)
        if kind is Kind.DOVECOT_DOWN:
            self.dovecot.stop()
            try:
                attempt = self.in_process()
            finally:
                self.dovecot.restart()
            return outcome(attempt, True, "stopped before the cycle")
        if kind is Kind.DOVECOT_RESTART_MID_CYCLE:

            def restart() -> bool:
                live = self.proxy.open_connections() > 0
                self.dovecot.restart()
                return live

            return self.with_trigger(outcome, restart, self.random_anchor())
        if kind is Kind.CUT_AFTER_BYTES:
            budget = self.rng.randint(1, max(2, int(statistics.median(self.bytes_down) * 1.1)))
            self.proxy.drop_after_bytes_down(budget)
            try:
                attempt = self.in_process()
            finally:
                self.proxy.drop_after_bytes_down(None)
            cut = self.proxy.bytes_down >= budget
            return outcome(attempt, cut, f"after {budget} bytes down")
        if kind is Kind.DROP_ALL_TIMER:
            return self.with_trigger(outcome, self.drop_all, self.random_anchor())
        if kind is Kind.DROP_ON_FETCH:
            anchor = {"command": "UID FETCH", "nth": self.rng.randint(1, 2)}
            return self.with_trigger(outcome, self.drop_all, {**anchor, **self.jitter()})
        if kind is Kind.DROP_ON_APPEND:
            anchor = {"command": "APPEND", "nth": 1}
            return self.with_trigger(outcome, self.drop_all, {**anchor, **self.jitter()})
        if kind is Kind.STALL_TIMER:
            try:
                return self.with_trigger(outcome, self.stall, self.random_anchor())
            finally:
                self.proxy.stall(False)
        if kind is Kind.STALL_ON_APPEND:
            try:
                anchor = {"command": "APPEND", "nth": 1}
                return self.with_trigger(outcome, self.stall, {**anchor, **self.jitter()})
            finally:
                self.proxy.stall(False)
        if kind is Kind.REFUSE:
            self.proxy.refuse(True)
            try:
                attempt = self.in_process()
            finally:
                self.proxy.refuse(False)
            return outcome(attempt, True, "connections refused")
        if kind is Kind.DB_LOCKED_WAIT:
            hold = self.rng.uniform(0.0, 3.0)
            return outcome(*self.locked(hold, busy_timeout_ms=None))
        if kind is Kind.DB_LOCKED_TIMEOUT:
            hold = self.rng.uniform(1.0, 2.0)
            return outcome(*self.locked(hold, busy_timeout_ms=LOWERED_BUSY_TIMEOUT_MS))
        if kind is Kind.DISK_FULL_INJECTED:
            fault = SeamFault(self.rng.randint(1, max(2, max(self.seam_calls))))
            # applications.py imported the same function by name: patch both references.
            faulty = fault.wrap(store_module.storage_errors)
            with (
                patched(store_module, "storage_errors", faulty),
                patched(apps_module, "storage_errors", faulty),
            ):
                attempt = self.in_process()
            if not fault.where:
                self.seam_calls = [*self.seam_calls[-9:], fault.calls]
            detail = f"ENOSPC at storage call {fault.fire_at}: {fault.where or 'not reached'}"
            return outcome(attempt, bool(fault.where), detail)
        if kind is Kind.DISK_FULL_TMPFS:
            leave = self.rng.randint(0, 64 * 1024)
            filler = fill_disk(self.state_dir, leave)
            try:
                attempt = self.in_process()
            finally:
                filler.unlink()
            hit = any(text in attempt.err for text in ("full", "space", "I/O error"))
            return outcome(attempt, True, f"{leave} bytes left; {'hit' if hit else 'not hit'}")
        raise AssertionError(kind)

    def jitter(self) -> dict[str, float]:
        return {"then": self.rng.uniform(0.0, 0.03)}

    def random_anchor(self) -> dict[str, Any]:
        """Half the time a random delay after the cycle connected (up to a typical cycle's
        length); else a random IMAP command of a typical cycle, plus jitter."""
        if self.rng.random() < 0.5:
            delay = self.rng.uniform(0.0, statistics.median(self.seconds))
            return {"after_connect": True, "delay": delay}
        top = max(1, int(statistics.median(self.command_counts)))
        return {"after_commands": self.rng.randint(1, top), **self.jitter()}

    def drop_all(self) -> bool:
        live = self.proxy.open_connections() > 0
        self.proxy.drop_all()
        return live

    def stall(self) -> bool:
        live = self.proxy.open_connections() > 0
        self.proxy.stall(True)
        return live

    def with_trigger(
        self,
        outcome: Callable[[Attempt, bool, str], Outcome],
        action: Callable[[], bool],
        anchor: dict[str, Any],
    ) -> Outcome:
        trigger = Trigger(self.proxy, action, **anchor).start()
        try:
            attempt = self.in_process()
        finally:
            fired = trigger.finish()
        where = ", ".join(
            f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}"
            for key, value in anchor.items()
        )
        return outcome(attempt, fired, f"{where}; at {trigger.at_command or '-'}")

    def kill_random(self, outcome: Callable[[Attempt, bool, str], Outcome]) -> Outcome:
        """SIGKILL after a random delay from the start (bounded), or at a random command."""
        if self.rng.random() < 0.35:
            anchor: dict[str, Any] = {"delay": self.rng.uniform(0.5, 5.0)}
        else:
            top = max(1, int(statistics.median(self.command_counts)))
            anchor = {"after_commands": self.rng.randint(1, top), **self.jitter()}
        proc = self.popen({})
        started = time.monotonic()
        deadline = started + SUBPROCESS_TIMEOUT
        if "delay" in anchor:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=anchor["delay"])
        else:
            while proc.poll() is None and time.monotonic() < deadline:
                if len(self.proxy.commands) >= anchor["after_commands"]:
                    time.sleep(anchor["then"])
                    break
                time.sleep(0.002)
        commands = self.proxy.commands
        at = commands[-1] if commands else "(before connecting)"
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        attempt = self.finish(proc, started)
        detail = ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in anchor.items()
        )
        return outcome(attempt, attempt.killed, f"{detail}; at {at}")

    def locked(self, hold: float, busy_timeout_ms: int | None) -> tuple[Attempt, bool, str]:
        locker = subprocess.Popen(
            [sys.executable, "-c", _LOCKER, str(self.database), f"{hold:.3f}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(locker)
        assert locker.stdout is not None
        line = locker.stdout.readline()
        held = line.strip() == "locked"
        try:
            if busy_timeout_ms is None:
                attempt = self.in_process()
            else:
                with patched(store_module, "BUSY_TIMEOUT_MS", busy_timeout_ms):
                    attempt = self.in_process()
        finally:
            _, err = locker.communicate("release\n", timeout=hold + 30)
        if locker.returncode != 0:
            raise RuntimeError(f"the lock helper failed: {err.strip()}")
        timeout = f"busy timeout {busy_timeout_ms} ms" if busy_timeout_ms else "busy timeout 10 s"
        return attempt, held, f"locked {hold:.2f} s, {timeout}"

    # -- running nextround -----------------------------------------------------------------

    def argv(self) -> list[str]:
        return ["-c", str(self.config), "--log-level", "error", "once", "--now",
                self.now.isoformat()]  # fmt: skip

    def in_process(self) -> Attempt:
        started = time.monotonic()

        def loaded(settings: ModelSettings) -> RejectionModel:
            return self.model

        try:
            if self.options.reuse_model:
                with patched(training_module, "get_model", loaded):
                    result = run_cli(*self.argv())
            else:
                result = run_cli(*self.argv())
        except Exception:
            return Attempt(None, crash=traceback.format_exc(), seconds=time.monotonic() - started)
        return Attempt(result.code, result.out, result.err, seconds=time.monotonic() - started)

    def popen(self, environment: dict[str, str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nextround.daemon.cli", *self.argv()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **environment},
            cwd=self.workdir,
        )
        self.procs.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen[str], started: float) -> Attempt:
        try:
            out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            return Attempt(proc.returncode, out, err, crash="hung: killed after the timeout")
        return Attempt(proc.returncode, out, err, seconds=time.monotonic() - started)

    def subprocess(self, environment: dict[str, str]) -> Attempt:
        started = time.monotonic()
        return self.finish(self.popen(environment), started)

    # -- the invariants --------------------------------------------------------------------

    def check_invariants(self) -> None:
        self.report.notes.append(f"drafts whose APPEND's answer was lost: {len(self.lost_answers)}")
        db = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
        try:
            self._check(db)
        finally:
            db.close()
        for text in self.report.violations + self.report.anomalies:
            match = re.search(r"application #(\d+)", text)
            if match:
                self.report.evidence[int(match.group(1))] = self.mentions(int(match.group(1)))

    def mentions(self, number: int) -> list[str]:
        """The timeline lines that mention application `number` (of a cycle's output, only
        the cycle and the parts about it)."""
        pattern = re.compile(rf"#{number}\b|\b{number}; step=")
        found = []
        for line in self.report.timeline:
            if pattern.search(line):
                head, *parts = line.split(" | ")
                kept = [head[:240], *(part for part in parts if pattern.search(part))]
                found.append("  " + " | ".join(kept))
        return found[:60]

    def _check(self, db: sqlite3.Connection) -> None:
        violations = self.report.violations
        anomalies = self.report.anomalies

        def history(number: int) -> str:
            rows = db.execute(
                "SELECT at, event, detail FROM application_events WHERE application_id = ? "
                "ORDER BY id",
                (number,),
            ).fetchall()
            return "; history: " + ", ".join(
                f"{at[5:16]} {event} {detail[:60]}".strip() for at, event, detail in rows
            )

        [[integrity]] = db.execute("PRAGMA integrity_check").fetchall()
        if integrity != "ok":
            violations.append(f"4: PRAGMA integrity_check: {integrity}")
        for folder, message_id, count in db.execute(
            "SELECT folder, message_id, count(*) FROM messages GROUP BY 1, 2 HAVING count(*) > 1"
        ).fetchall():
            violations.append(f"2: {message_id} recorded {count} times in {folder}")
        for number, count in db.execute(
            "SELECT application_id, count(*) FROM application_events WHERE event IN "
            "('request_drafted', 'request_drafted_no_contact') GROUP BY 1 HAVING count(*) > 1"
        ).fetchall():
            violations.append(
                f"2: application #{number} drafted its request {count} times{history(number)}"
            )
        for folder, message_id, status, error in db.execute(
            "SELECT folder, message_id, status, error FROM messages WHERE status != 'parsed'"
        ).fetchall():
            anomalies.append(f"{folder} {message_id} recorded as {status}: {error}")
        rows = db.execute(
            "SELECT id, state, rejection_message_id, thread, opened_at, "
            "request_sent_message_id, reply_message_id FROM applications ORDER BY id"
        ).fetchall()
        applications = {
            row[0]: {
                "state": row[1],
                "rejection": row[2],
                "thread": set(json.loads(row[3] or "[]")),
                "opened_at": datetime.fromisoformat(row[4]),
                "request_sent": row[5],
                "reply": row[6],
            }
            for row in rows
        }
        self.report.applications.update(Counter(app["state"] for app in applications.values()))

        drafts = {uid: parse(raw) for uid, raw in self.user.fetch_raw("Drafts").items()}
        sent = {uid: parse(raw) for uid, raw in self.user.fetch_raw("Sent").items()}
        marked: Counter[tuple[int, str]] = Counter()
        for uid, draft in drafts.items():
            self.world.observe(draft)
            value = parse_header_value(str(draft.get(HEADER, "")))
            if value is None:
                violations.append(f"1: draft UID {uid} in Drafts carries no {HEADER}")
                continue
            marked[value] += 1
            app = applications.get(value[0])
            if app is None:
                violations.append(f"1: draft UID {uid} is marked for unknown application {value}")
            elif value[1] == "request" and message_ids(str(draft["In-Reply-To"] or "")) != (
                app["rejection"],
            ):
                violations.append(
                    f"1: request draft UID {uid} of #{value[0]} does not answer its rejection"
                )
        answered: Counter[str] = Counter()
        for copy in sent.values():
            for message_id in message_ids(str(copy["In-Reply-To"] or "")):
                answered[message_id] += 1

        for number, app in applications.items():
            state = str(app["state"])
            counts = {
                "request": marked[(number, "request")] + answered[str(app["rejection"])],
                "follow_up": marked[(number, "follow_up")]
                + (answered[str(app["request_sent"])] if app["request_sent"] else 0),
                "thank_you": marked[(number, "thank_you")]
                + (answered[str(app["reply"])] if app["reply"] else 0),
            }
            for step, count in counts.items():
                seen = self.world.drafts_seen.get((number, step), set())
                # Written again by design: the user deleted it before a cycle could tell
                # whether its APPEND, whose answer was lost, got there (`note_lost_answers`).
                excused = {
                    message_id
                    for message_id in seen
                    if (number, step, message_id) in self.lost_answers
                    and message_id in self.world.deleted
                }
                written = len(seen - excused)
                if count > 1 or written > 1:
                    violations.append(
                        f"1: application #{number} ({state}): {len(seen)} distinct {step} "
                        f"drafts written over the run; now {marked[(number, step)]} in Drafts "
                        f"and {count - marked[(number, step)]} sent{history(number)}"
                    )
                elif excused and len(seen) > 1:
                    anomalies.append(
                        f"application #{number}: its {step} draft, whose APPEND's answer was "
                        "lost, was deleted by the user before the next cycle, and written again"
                    )
            if state == "new":
                violations.append(
                    f"1: application #{number} is still new: no draft written{history(number)}"
                )
            elif state in MUST_HAVE_REQUEST and counts["request"] == 0:
                violations.append(
                    f"1: application #{number} ({state}) has no request draft{history(number)}"
                )
            elif state not in TERMINAL_OR_STALE | MUST_HAVE_REQUEST:
                violations.append(f"1: application #{number} in unknown state {state}")
            if state in ("skipped", "stale") and answered[str(app["rejection"])]:
                anomalies.append(
                    f"application #{number} is {state} although its request was sent"
                    + history(number)
                )

        by_rejection = {str(app["rejection"]): number for number, app in applications.items()}
        opened_for = {
            number: self.world.by_id.get(str(app["rejection"]))
            for number, app in applications.items()
        }
        for delivered in self.world.delivered:
            if delivered.kind not in ("rejection", "rejection_repeat", "closed"):
                continue
            if delivered.message_id in by_rejection:
                continue
            attached = [
                number
                for number, app in applications.items()
                if delivered.message_id in app["thread"]
                and (origin := opened_for[number]) is not None
                and (origin.company, origin.role) == (delivered.company, delivered.role)
                and app["opened_at"] >= delivered.at - ATTACH_WINDOW - timedelta(days=1)
            ]
            if not attached:
                violations.append(
                    f"3: {delivered.kind} {delivered.message_id} ({delivered.company} / "
                    f"{delivered.role}, {delivered.at:%Y-%m-%d %H:%M}) opened no application "
                    "and is attached to none"
                )
        self.report.mail["applications_opened"] = len(applications)
        self.report.mail["drafts_left_in_drafts"] = len(drafts)
        self.report.mail["sent_copies"] = len(sent)


def write_json(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
