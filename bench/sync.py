"""Sync benchmark: raw IMAP fetch rate, first-sync rate, and the cost of a cycle with nothing new.

Not a test: it prints numbers (and writes them to bench/results/sync.json).

    /work/venv/bin/python bench/sync.py                 # 10,000 and 100,000 messages
    /work/venv/bin/python bench/sync.py --quick         # 1,000 and 5,000: a smoke check
    /work/venv/bin/python bench/sync.py --full          # also first-sync the large mailbox
    /work/venv/bin/python bench/sync.py --profile       # cProfile the first sync (slower!)

A real Dovecot (tests/dovecot.py) serves two users: "small" (--messages) and "large"
(--large), bulk-loaded through the Maildir.  nextround talks to it through a counting
TcpProxy (tests/tcpproxy.py), which counts IMAP commands and bytes in each direction.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.metadata
import io
import json
import os
import platform
import pstats
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import imapclient

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from dovecot import Dovecot, MailUser, find_dovecot_binary  # noqa: E402
from tcpproxy import TcpProxy  # noqa: E402

from nextround.classifier.inference import RejectionModel  # noqa: E402
from nextround.daemon.config import DEFAULT_THRESHOLD, Config, load_config  # noqa: E402
from nextround.daemon.engine import Engine  # noqa: E402
from nextround.daemon.imap import ImapMailbox, untraced  # noqa: E402
from nextround.daemon.mailbox import Fetched, Mailbox  # noqa: E402
from nextround.daemon.session import Session, open_session  # noqa: E402
from nextround.daemon.store import Store  # noqa: E402
from nextround.daemon.sync import CycleResult, run_cycle  # noqa: E402
from nextround.daemon.training import ModelSettings, get_model  # noqa: E402

RESULTS = REPO / "bench" / "results" / "sync.json"
SEED = 20261122
RAW_BATCH = 100
OLD_DAYS = 60  # the large mailbox's mail is this old unless --full
BACKFILL_DAYS = 30
REPEATS = 5  # nothing-new cycles timed per mailbox (commands/bytes are from the first)
MB = 1_000_000

T = TypeVar("T")


# -- message generation ---------------------------------------------------------------------

WORDS = """
the of and to in is you that it he was for on are as with his they at be this have from or one
had by word but not what all were we when your can said there use an each which she do how their
if will up other about out many then them these so some her would make like him into time has
look two more write go see number no way could people my than first water been call who oil its
now find long down day did get come made may part interview position application thank team
candidate role experience schedule feedback offer decision update engineer project review next
week meeting please regards best opportunity process onboarding salary benefits remote office
manager hiring recruiter unfortunately pleased invite availability calendar confirm details
attached resume portfolio reference deadline quarter roadmap release deploy incident customer
""".split()
FIRST_NAMES = (
    "Alex Sam Jordan Taylor Morgan Casey Riley Jamie Avery Quinn Maria José Zoë Björn "
    "Aiko Chen Priya Olu Fatima Lukas Sofia Mateo Hana Ivan Noah Emma Léa Omar"
).split()
LAST_NAMES = (
    "Smith Müller García Chen Kowalski Nguyen Okafor Rossi Dubois Tanaka Silva Novak "
    "Andersen Haddad Kim Jensen Moreau Costa Ivanova Brown"
).split()
COMPANIES = (
    "acme.example globex.example initech.example umbrella.example hooli.example "
    "piedpiper.example wayne.example stark.example tyrell.example cyberdyne.example"
).split()
SUBJECTS = (
    "Your application for {role}",
    "Interview invitation: {role}",
    "Re: {role} - next steps",
    "Update on your application",
    "[{company}] Weekly digest",
    "Thank you for interviewing with us",
    "Re: Re: schedule for {day}",
    "Invoice {num} from {company}",
    "Fwd: notes from {day}",
    "Your order #{num} has shipped",
)
ROLES = ("Senior Engineer", "Data Analyst", "Product Manager", "SRE", "Designer", "QA Lead")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")


def _paragraph_pool(rng: random.Random, count: int = 400) -> list[str]:
    pool = []
    for _ in range(count):
        words = rng.choices(WORDS, k=rng.randint(30, 140))
        sentence_starts = {0, *rng.sample(range(len(words)), k=len(words) // 12)}
        text = " ".join(
            word.capitalize() if i in sentence_starts else word for i, word in enumerate(words)
        )
        if rng.random() < 0.15:
            text += " Grüße, Zoë — café ñ."
        pool.append(textwrap.fill(text + ".", width=76))
    return pool


@dataclass
class Corpus:
    count: int = 0
    bytes: int = 0
    multipart: int = 0
    html_only: int = 0


class MessageFactory:
    """Deterministic, varied mail: 2-20 KB (log-uniform); 40% text/plain, 10% HTML only,
    50% multipart/alternative (text + HTML); Received, DKIM, List-* and threading headers."""

    def __init__(self, seed: int, recipient: str, newest: datetime) -> None:
        self.rng = random.Random(seed)
        self.pool = _paragraph_pool(self.rng)
        self.recipient = recipient
        self.newest = newest
        self.corpus = Corpus()

    def messages(self, count: int) -> Iterator[bytes]:
        for number in range(count):
            raw = self.message(number, count)
            self.corpus.count += 1
            self.corpus.bytes += len(raw)
            yield raw

    def _body(self, size: int) -> str:
        parts: list[str] = []
        total = 0
        while total < size:
            paragraph = self.rng.choice(self.pool)
            parts.append(paragraph)
            total += len(paragraph) + 2
        return "\n\n".join(parts)

    def _html(self, size: int) -> str:
        paragraphs = "\n".join(
            f'<p style="margin:0 0 12px 0;font-family:Arial,sans-serif">{p}</p>'
            for p in self._body(size).split("\n\n")
        )
        return (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            "<style>body{font-size:14px}</style></head>\n<body>\n"
            f'<table width="100%"><tr><td>\n{paragraphs}\n</td></tr></table>\n'
            "</body></html>"
        )

    def message(self, number: int, count: int) -> bytes:
        rng = self.rng
        target = int(2048 * 10 ** rng.random())  # 2 KB .. 20 KB
        company = rng.choice(COMPANIES)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        sender = f"{first.lower()}.{last.lower()}@{company}".encode("ascii", "ignore").decode()
        # Oldest first, a few minutes apart, ending at `newest`.
        when = self.newest - timedelta(minutes=7 * (count - number))
        date_header = format_datetime(when)
        subject = rng.choice(SUBJECTS).format(
            role=rng.choice(ROLES), company=company.split(".")[0].title(),
            day=rng.choice(DAYS), num=rng.randint(1000, 99999),
        )  # fmt: skip
        if rng.random() < 0.1:
            subject = "=?utf-8?q?R=C3=BCckmeldung_zu_Ihrer_Bewerbung?="
        display = f"{first} {last}"
        if not display.isascii():
            display = f"=?utf-8?b?{_b64(display)}?="
        ip = f"203.0.113.{rng.randint(1, 254)}"
        headers = [
            f"Return-Path: <bounces+{number}@mail.{company}>",
            f"Delivered-To: {self.recipient}",
            f"Received: from mail.{company} (mail.{company} [{ip}])\n"
            f"\tby mx.example.org (Postfix) with ESMTPS id {rng.getrandbits(40):010X}\n"
            f"\tfor <{self.recipient}>; {date_header}",
            f"Received: by mail.{company} with SMTP id {rng.getrandbits(64):016x};\n"
            f"\t{date_header}",
            f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={company}; s=s1;\n"
            "\th=from:to:subject:date:message-id:mime-version;\n"
            f"\tbh={_b64(rng.randbytes(32))};\n"
            f"\tb={_b64(rng.randbytes(128))[:76]}\n\t {_b64(rng.randbytes(128))[:96]}",
            f"Message-ID: <{number}.{rng.getrandbits(48):012x}@mail.{company}>",
            f"Date: {date_header}",
            f'From: "{display}" <{sender}>',
            f"To: {self.recipient}",
            f"Subject: {subject}",
            "MIME-Version: 1.0",
        ]
        if rng.random() < 0.3:
            headers.append(f"List-Unsubscribe: <https://{company}/u/{rng.getrandbits(32):08x}>")
            headers.append(f"List-Id: <news.{company}>")
        if number > 0 and rng.random() < 0.4:
            parent = f"<{number - 1}.0@mail.{company}>"
            headers.append(f"In-Reply-To: {parent}")
            headers.append(f"References: {parent}")
        header_size = sum(len(h) + 1 for h in headers)
        body_size = max(target - header_size - 200, 300)
        kind = rng.random()
        if kind < 0.4:
            headers += [
                'Content-Type: text/plain; charset="utf-8"',
                "Content-Transfer-Encoding: 8bit",
            ]
            body = self._body(body_size)
        elif kind < 0.5:
            self.corpus.html_only += 1
            headers += [
                'Content-Type: text/html; charset="utf-8"',
                "Content-Transfer-Encoding: 8bit",
            ]
            body = self._html(body_size * 3 // 5)
        else:
            self.corpus.multipart += 1
            boundary = f"=_b{rng.getrandbits(64):016x}"
            text = self._body(body_size * 2 // 5)
            html = self._html(body_size * 2 // 5)
            headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
            body = (
                f'--{boundary}\nContent-Type: text/plain; charset="utf-8"\n'
                f"Content-Transfer-Encoding: 8bit\n\n{text}\n\n"
                f'--{boundary}\nContent-Type: text/html; charset="utf-8"\n'
                f"Content-Transfer-Encoding: 8bit\n\n{html}\n\n--{boundary}--\n"
            )
        return ("\n".join(headers) + "\n\n" + body + "\n").encode("utf-8")


def _b64(value: str | bytes) -> str:
    import base64

    data = value.encode("utf-8") if isinstance(value, str) else value
    return base64.b64encode(data).decode("ascii")


# -- measuring helpers ------------------------------------------------------------------------


class TimedMailbox(ImapMailbox):
    """The session's ImapMailbox, adding up the time spent inside `fetch` (the IMAP side).

    It takes over the connection of an existing ImapMailbox (its attributes), so it follows
    whatever the adapter grows without this file having to delegate each method.
    """

    def __init__(self, inner: Mailbox) -> None:  # no super().__init__: we take over `inner`
        if not isinstance(inner, ImapMailbox):
            raise TypeError(f"expected an ImapMailbox, not {type(inner).__name__}")
        # The same attribute dict, not a copy: which folder is selected must stay one fact.
        self.__dict__ = inner.__dict__
        self.fetch_seconds = 0.0
        self.fetched = 0
        self.fetched_bytes = 0

    def fetch(self, uids: Sequence[int], max_bytes: int) -> Iterator[Fetched]:
        iterator = super().fetch(uids, max_bytes)
        while True:
            started = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                self.fetch_seconds += time.perf_counter() - started
                return
            self.fetch_seconds += time.perf_counter() - started
            self.fetched += 1
            self.fetched_bytes += len(item.raw)
            yield item


def nothing(*_: object) -> None:
    """The handler: does nothing, so the cycle measures sync alone."""


def timed(action: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    value = action()
    return value, time.perf_counter() - started


@dataclass
class Traffic:
    commands: list[str]
    bytes_up: int
    bytes_down: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "commands": len(self.commands),
            "command_names": self.commands,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "ms": round(self.seconds * 1000, 2),
        }


def traffic(proxy: TcpProxy, action: Callable[[], object]) -> Traffic:
    """Run `action` with fresh proxy counters; what it sent and received, and how long."""
    proxy.reset_counters()
    _, seconds = timed(action)
    stats = proxy.stats()
    return Traffic(list(stats.commands), stats.bytes_up, stats.bytes_down, seconds)


def write_config(
    directory: Path, user: MailUser, host: str, port: int, backfill_days: int
) -> Config:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    password_file = directory / "password"
    password_file.write_text(user.password + "\n")
    password_file.chmod(0o600)
    path = directory / "config.toml"
    path.write_text(
        "[imap]\n"
        f'host = "{host}"\n'
        f"port = {port}\n"
        'security = "plain"\n'
        f'username = "{user.username}"\n'
        f'password_file = "{password_file}"\n'
        "timeout = 120.0\n\n"
        "[identity]\n"
        'name = "Bench User"\n'
        f'email = "{user.username}"\n\n'
        "[sync]\n"
        f"backfill_days = {backfill_days}\n\n"
        "[state]\n"
        f'database = "{directory / "state" / "state.db"}"\n',
        encoding="utf-8",
    )
    path.chmod(0o600)
    return load_config(path)


def client_for(
    user: MailUser, host: str, port: int, *, traced: bool = False
) -> imapclient.IMAPClient:
    """A plain imapclient client; `traced` keeps imaplib's protocol trace, which imapclient
    turns on (it formats every response, message bodies included, even when nobody logs it)."""
    client = imapclient.IMAPClient(host, port=port, ssl=False, timeout=120)
    if not traced:
        untraced(client)
    client.login(user.username, user.password)
    return client


def search_counts(user: MailUser, since: date) -> tuple[int, int]:
    """(all, since `since`) in INBOX, straight from Dovecot."""
    with user.client() as client:
        client.select_folder("INBOX", readonly=True)
        return len(client.search("ALL")), len(client.search(["SINCE", since]))


def raw_fetch(user: MailUser, host: str, port: int, *, traced: bool = False) -> dict[str, Any]:
    """FETCH BODY.PEEK[] of every INBOX message, RAW_BATCH UIDs per command."""
    with client_for(user, host, port, traced=traced) as client:
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search("ALL"))
        total = 0
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        for start in range(0, len(uids), RAW_BATCH):
            batch = uids[start : start + RAW_BATCH]
            for data in client.fetch(batch, [b"BODY.PEEK[]"]).values():
                total += len(data[b"BODY[]"])
        seconds = time.perf_counter() - started
        cpu = {key: round(value - cpu_before[key], 2) for key, value in cpu_seconds().items()}
    return {
        "cpu_seconds": {key: value for key, value in cpu.items() if key != "helpers"},
        "messages": len(uids),
        "bytes": total,
        "seconds": round(seconds, 3),
        "messages_per_s": round(len(uids) / seconds, 1),
        "mb_per_s": round(total / MB / seconds, 2),
    }


def reset_peak_memory() -> None:
    """Start VmHWM (peak resident memory) afresh (Linux: /proc/self/clear_refs)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb() -> float | None:
    """This process's peak resident memory since `reset_peak_memory`, in MB."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def cpu_seconds() -> dict[str, float]:
    """CPU time so far: nextround's threads (the cycle and its fetch), the proxy's thread,
    the finished child processes (triage helpers), and every Dovecot process."""
    proxy = sum(
        _task_cpu(thread.native_id)
        for thread in threading.enumerate()
        if thread.name.startswith("tcpproxy-") and thread.native_id is not None
    )
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "nextround": time.process_time() - proxy,
        "proxy": proxy,
        "helpers": children.ru_utime + children.ru_stime,
        "dovecot": _dovecot_cpu(),
    }


def _task_cpu(native_id: int) -> float:
    """One thread of this process's CPU seconds (Linux: /proc/self/task/ID/stat)."""
    return _stat_cpu(Path(f"/proc/self/task/{native_id}/stat"))[1]


def _stat_cpu(stat: Path) -> tuple[str, float]:
    """A /proc stat file's process (or thread) name and CPU seconds (utime + stime); a
    process gone meanwhile has none."""
    try:
        text = stat.read_text()
    except OSError:
        return "", 0.0
    head, _, rest = text.rpartition(") ")  # the name may hold ") " itself
    fields = rest.split()
    return head.partition(" (")[2], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


DOVECOT_PROCESSES = ("imap", "dovecot", "imap-login", "auth", "config", "anvil", "log")


def _dovecot_cpu() -> float:
    return sum(
        seconds
        for name, seconds in map(_stat_cpu, Path("/proc").glob("[0-9]*/stat"))
        if name in DOVECOT_PROCESSES
    )


def best(runs: Iterator[dict[str, Any]]) -> dict[str, Any]:
    return max(runs, key=lambda run: float(run["messages_per_s"]))


def dovecot_status_ms(user: MailUser) -> float:
    """Median time of a bare STATUS INBOX straight to Dovecot: the server's share of (c).

    Sent is selected first, as it is on nextround's open session after a cycle.
    """
    with user.client() as client:
        client.select_folder("Sent", readonly=True)
        times = [
            timed(lambda: client.folder_status("INBOX", [b"UIDNEXT", b"UIDVALIDITY"]))[1]
            for _ in range(REPEATS)
        ]
    return round(statistics.median(times) * 1000, 2)


def run(session: Session, store: Store, config: Config) -> CycleResult:
    return run_cycle(
        session.mailbox, store, session.folders, config.sync, datetime.now(UTC), nothing
    )


def steady_state(
    proxy: TcpProxy, session: Session, store: Store, config: Config, user: MailUser
) -> dict[str, Any]:
    """(c): nothing new on the open session, a fresh session, and one new message."""
    run(session, store, config)  # settle
    idle = traffic(proxy, lambda: run(session, store, config))
    times = [timed(lambda: run(session, store, config))[1] for _ in range(REPEATS - 1)]
    idle_ms = statistics.median([idle.seconds, *times]) * 1000
    server_ms = dovecot_status_ms(user)  # right away, so Dovecot is in the same state

    def fresh_cycle() -> CycleResult:
        fresh = open_session(config)
        try:
            return run(fresh, store, config)
        finally:
            fresh.close()

    fresh = traffic(proxy, fresh_cycle)
    # One new message: APPENDed straight to Dovecot, so the proxy sees only nextround.
    factory = MessageFactory(SEED + 99, user.username, datetime.now(UTC))
    user.append("INBOX", factory.message(0, 1))
    result: list[CycleResult] = []
    one_new = traffic(proxy, lambda: result.append(run(session, store, config)))
    assert result[0].recorded == 1, f"expected 1 new message, got {result[0]}"
    return {
        "dovecot_status_ms": server_ms,
        "nothing_new": {**idle.as_dict(), "ms": round(idle_ms, 2)},
        "fresh_session": fresh.as_dict(),
        "one_new_message": one_new.as_dict(),
    }


def age_maildir(user: MailUser, days: int) -> int:
    """Set every INBOX file's mtime (= Dovecot's INTERNALDATE for Maildir) `days` back."""
    when = time.time() - days * 86400
    count = 0
    for entry in os.scandir(user.folder_path("INBOX") / "cur"):
        os.utime(entry.path, (when, when))
        count += 1
    return count


def measure(
    label: str,
    server: Dovecot,
    proxy: TcpProxy,
    workdir: Path,
    count: int,
    model: RejectionModel,
    *,
    full: bool,
    profile: bool,
) -> dict[str, Any]:
    """Seed one user and run (a)-(c) on it; `full` = first-sync everything through nextround."""
    user = server.add_user(f"bench-{label}@example.org")
    today = datetime.now(UTC)
    age = 0 if full else OLD_DAYS
    factory = MessageFactory(SEED + count, user.username, today - timedelta(days=age))
    print(f"\n== mailbox {label!r}: {count:,} messages ==", flush=True)
    _, seconds = timed(lambda: user.seed_maildir("INBOX", factory.messages(count)))
    corpus = factory.corpus
    print(
        f"seeded {corpus.count:,} messages, {corpus.bytes / MB:.1f} MB "
        f"(mean {corpus.bytes / corpus.count / 1000:.1f} KB, "
        f"{corpus.multipart / corpus.count:.0%} multipart/alternative, "
        f"{corpus.html_only / corpus.count:.0%} HTML only) in {seconds:.1f} s"
    )
    if not full:
        aged, seconds = timed(lambda: age_maildir(user, OLD_DAYS))
        print(f"set the mtime (INTERNALDATE) of {aged:,} files to {OLD_DAYS} days ago")
    since = (today - timedelta(days=BACKFILL_DAYS)).date()
    (all_count, since_count), seconds = timed(lambda: search_counts(user, since))
    print(
        f"Dovecot indexed INBOX in {seconds:.1f} s: SEARCH ALL {all_count:,}, "
        f"SEARCH SINCE {since:%d-%b-%Y} ({BACKFILL_DAYS} days) {since_count:,}"
    )
    expected_new = count if full else 0
    assert all_count == count, f"Dovecot sees {all_count} messages, seeded {count}"
    assert since_count == expected_new, f"{since_count} messages since {since}, not {expected_new}"
    out: dict[str, Any] = {
        "messages": count,
        "bytes": corpus.bytes,
        "multipart_share": round(corpus.multipart / count, 3),
        "html_only_share": round(corpus.html_only / count, 3),
        "internaldate_days_ago": age,
        "backfill_days": BACKFILL_DAYS,
        "index_seconds": round(seconds, 2),
    }

    if full:
        print(f"(a) raw FETCH BODY.PEEK[], {RAW_BATCH} UIDs per command, plain imapclient ...")
        # The first pass is Dovecot's first read of these messages; the later ones are warm,
        # as nextround's first sync (b) will be.
        out["raw_cold_direct"] = raw_fetch(user, server.host, server.port_plain)
        # Best of two passes each: the machine may be shared.
        out["raw_direct"] = best(raw_fetch(user, server.host, server.port_plain) for _ in "12")
        out["raw_proxied"] = best(raw_fetch(user, proxy.host, proxy.port) for _ in "12")
        # For comparison with figures up to session 4, which took imapclient as it comes.
        out["raw_proxied_traced"] = best(
            raw_fetch(user, proxy.host, proxy.port, traced=True) for _ in "12"
        )
        for key in ("raw_cold_direct", "raw_direct", "raw_proxied", "raw_proxied_traced"):
            raw = out[key]
            print(
                f"    {key.removeprefix('raw_').replace('_', ' '):>14}: "
                f"{raw['messages_per_s']:>8,.0f} msg/s "
                f"{raw['mb_per_s']:>7.1f} MB/s ({raw['seconds']:.1f} s)"
            )

    config = write_config(workdir / label, user, proxy.host, proxy.port, BACKFILL_DAYS)
    store = Store.open(config.database_path)
    session = open_session(config)
    try:
        timed_box = TimedMailbox(session.mailbox)
        profiler = cProfile.Profile() if profile and full else None
        proxy.reset_counters()
        now = datetime.now(UTC)

        def first(
            store: Store = store, box: TimedMailbox = timed_box, at: Session = session
        ) -> CycleResult:
            if profiler is not None:
                profiler.enable()
            try:
                if not full:
                    return run_cycle(box, store, at.folders, config.sync, now, nothing)
                # End to end: what the daemon's first cycle does (triage, parse, classify,
                # record, lifecycle), not the sync alone.
                engine = Engine(config, model)
                return engine.poll_once(box, store, at.folders, now).sync
            finally:
                if profiler is not None:
                    profiler.disable()

        # Through the proxy, which counts its commands and bytes, into the state database
        # that (c) goes on with. Then, unless profiled, the measured passes: straight to
        # Dovecot, as the raw reference, and best of two, each into a database of its own.
        cpu_before = cpu_seconds()
        reset_peak_memory()
        result, proxied_seconds = timed(first)
        peak_mb = peak_memory_mb()
        cpu = {key: round(value - cpu_before[key], 2) for key, value in cpu_seconds().items()}
        stats = proxy.stats()
        inbox = next(folder for folder in result.folders if folder.folder.role == "inbox")
        assert inbox.recorded == expected_new, f"first sync: {result.summary()}"
        position = store.position("INBOX")
        assert position is not None and position.backfilled and position.last_uid >= count
        direct_runs: list[float] = []
        imap_s = timed_box.fetch_seconds
        if full and profiler is None:
            direct_config = write_config(
                workdir / label / "direct", user, server.host, server.port_plain, BACKFILL_DAYS
            )
            direct = open_session(direct_config)
            try:
                direct_box = TimedMailbox(direct.mailbox)
                for run in "12":
                    scratch = Store.open(workdir / label / f"direct-{run}.db")
                    direct_box.fetch_seconds = 0.0
                    cpu_before = cpu_seconds()
                    reset_peak_memory()
                    try:
                        ran, seconds = timed(partial(first, scratch, direct_box, direct))
                    finally:
                        scratch.close()
                    if not direct_runs or seconds < min(direct_runs):  # the best run's figures
                        peak_mb = peak_memory_mb()
                        cpu = {k: round(v - cpu_before[k], 2) for k, v in cpu_seconds().items()}
                        imap_s = direct_box.fetch_seconds
                    done = next(f for f in ran.folders if f.folder.role == "inbox")
                    assert done.recorded == count, f"first sync: {ran.summary()}"
                    direct_runs.append(seconds)
            finally:
                direct.close()
        seconds = min(direct_runs, default=proxied_seconds)
        names = stats.commands
        first_sync: dict[str, Any] = {
            "recorded": inbox.recorded,
            "seconds": round(seconds, 3),
            "commands": len(names),
            "command_counts": {name: names.count(name) for name in sorted(set(names))},
            "bytes_up": stats.bytes_up,
            "bytes_down": stats.bytes_down,
            "position_last_uid": position.last_uid,
            "profiled": profiler is not None,
            "cpu_seconds": cpu,
            "peak_rss_mb": peak_mb,
        }
        if full:
            rate = count / seconds
            proxied_rate = count / proxied_seconds
            first_sync |= {
                "runs_seconds": [round(x, 3) for x in direct_runs],
                "proxied_seconds": round(proxied_seconds, 3),
                "messages_per_s": round(rate, 1),
                "mb_per_s": round(corpus.bytes / MB * rate / count, 2),
                "proxied_messages_per_s": round(proxied_rate, 1),
                # Each to its like: straight to Dovecot, and through the proxy, whose Python
                # thread limits the raw fetch by up to half.
                "ratio_to_raw_direct": round(rate / out["raw_direct"]["messages_per_s"], 3),
                "ratio_proxied_to_raw_proxied": round(
                    proxied_rate / out["raw_proxied"]["messages_per_s"], 3
                ),
                "ratio_to_raw_proxied_traced": round(
                    rate / out["raw_proxied_traced"]["messages_per_s"], 3
                ),
                "fetch_seconds": round(imap_s, 3),
                "fetch_messages_per_s": round(count / imap_s, 1),
            }
            runs = " and ".join(f"{x:.1f} s" for x in first_sync["runs_seconds"])
            print(
                f"(b) first sync end to end (Engine.poll_once: triage, parse, classify, record), "
                f"straight to Dovecot: {rate:,.0f} msg/s (best of {runs}) = "
                f"{first_sync['ratio_to_raw_direct']:.2f} x raw (direct), "
                f"{first_sync['ratio_to_raw_proxied_traced']:.2f} x raw with imaplib's trace"
                + ("  [PROFILED]" if profiler else "")
            )
            print(
                f"    through the proxy (its commands and bytes below): {proxied_rate:,.0f} msg/s "
                f"({proxied_seconds:.1f} s) = {first_sync['ratio_proxied_to_raw_proxied']:.2f} x "
                "raw (proxied)"
            )
            print(
                f"    time inside Mailbox.fetch (IMAP, in the cycle's fetch thread, overlapping "
                f"the rest): {imap_s:.1f} s ({count / imap_s:,.0f} msg/s)"
            )
            print(
                "    CPU seconds: "
                + ", ".join(f"{key} {value:.1f}" for key, value in cpu.items())
                + "; raw fetch via proxy: "
                + ", ".join(f"{k} {v:.1f}" for k, v in out["raw_proxied"]["cpu_seconds"].items())
            )
            print(
                "    peak resident memory of this process (the cycle, its fetch thread, the "
                f"proxy): {peak_mb} MB"
            )
        else:
            print(
                f"(b) first sync with backfill_days = {BACKFILL_DAYS} on mail {OLD_DAYS} days old: "
                f"fetched {inbox.recorded} in {seconds:.2f} s ({len(names)} commands, "
                f"{stats.bytes_down:,} bytes down); position set to UID {position.last_uid:,}"
            )
        out["first_sync"] = first_sync
        if profiler is not None:
            out["profile"] = report_profile(profiler, label)

        steady = steady_state(proxy, session, store, config, user)
        out |= steady
    finally:
        session.close()
        store.close()
    for key, title in (
        ("nothing_new", "(c) nothing new, open session"),
        ("fresh_session", "    nothing new, fresh session (login .. logout)"),
        ("one_new_message", "    one new message, open session"),
    ):
        row = out[key]
        print(
            f"{title}: {row['commands']} commands {row['command_names']}, "
            f"{row['bytes_up']:,} B up / {row['bytes_down']:,} B down, {row['ms']:.1f} ms"
        )
    print(
        f"    for reference: a bare STATUS INBOX straight to Dovecot takes "
        f"{out['dovecot_status_ms']:.1f} ms with Sent selected (server time; on Maildir it grows "
        "with the folder's size)"
    )
    return out


def report_profile(profiler: cProfile.Profile, label: str) -> str:
    path = RESULTS.with_name(f"sync-first-{label}.prof")
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(path)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(25)
    print(text.getvalue())
    return str(path)


# -- reporting ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    version = subprocess.run(
        [find_dovecot_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "dovecot": version,
        "imapclient": importlib.metadata.version("imapclient"),
        "mail_parser": importlib.metadata.version("mail-parser"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def table(results: dict[str, Any]) -> str:
    labels = [label for label in ("small", "large") if label in results]
    head = ["measure"] + [f"{results[label]['messages']:,} msgs" for label in labels]
    rows: list[list[str]] = []

    def row(name: str, value: Callable[[dict[str, Any]], str | None]) -> None:
        cells = [value(results[label]) for label in labels]
        if any(cell is not None for cell in cells):
            rows.append([name, *(cell if cell is not None else "-" for cell in cells)])

    def get(*path: str) -> Callable[[dict[str, Any]], Any]:
        def read(data: dict[str, Any]) -> Any:
            for key in path:
                if not isinstance(data, dict) or key not in data:
                    return None
                data = data[key]
            return data

        return read

    def fmt(path: tuple[str, ...], spec: str) -> Callable[[dict[str, Any]], str | None]:
        def show(data: dict[str, Any]) -> str | None:
            value = get(*path)(data)
            return None if value is None else format(value, spec)

        return show

    row("(a) raw FETCH cold, direct, msg/s", fmt(("raw_cold_direct", "messages_per_s"), ",.0f"))
    row("(a) raw FETCH direct, msg/s", fmt(("raw_direct", "messages_per_s"), ",.0f"))
    row("(a) raw FETCH direct, MB/s", fmt(("raw_direct", "mb_per_s"), ".1f"))
    row("(a) raw FETCH via proxy, msg/s", fmt(("raw_proxied", "messages_per_s"), ",.0f"))
    row("(a) raw FETCH via proxy, MB/s", fmt(("raw_proxied", "mb_per_s"), ".1f"))
    row(
        "(a) raw via proxy, imaplib trace on, msg/s",
        fmt(("raw_proxied_traced", "messages_per_s"), ",.0f"),
    )
    row("(b) first sync, msg/s", fmt(("first_sync", "messages_per_s"), ",.0f"))
    row("(b) first sync, MB/s", fmt(("first_sync", "mb_per_s"), ".1f"))
    row("(b) first sync / raw direct", fmt(("first_sync", "ratio_to_raw_direct"), ".2f"))
    row(
        "(b) via proxy / raw via proxy",
        fmt(("first_sync", "ratio_proxied_to_raw_proxied"), ".2f"),
    )
    row("(b) first sync / raw, trace on", fmt(("first_sync", "ratio_to_raw_proxied_traced"), ".2f"))
    row("(b) inside Mailbox.fetch, msg/s", fmt(("first_sync", "fetch_messages_per_s"), ",.0f"))
    row("(b) first sync, s", fmt(("first_sync", "seconds"), ".2f"))
    row("(b) first sync, messages fetched", fmt(("first_sync", "recorded"), ","))
    row("(b) first sync, commands", fmt(("first_sync", "commands"), ","))
    row("Dovecot alone: STATUS INBOX, ms", fmt(("dovecot_status_ms",), ".1f"))
    for key, name in (
        ("nothing_new", "(c) nothing new, open session"),
        ("fresh_session", "(c) nothing new, fresh session"),
        ("one_new_message", "    one new message, open session"),
    ):
        row(f"{name}: commands", fmt((key, "commands"), "d"))
        row(f"{name}: bytes up", fmt((key, "bytes_up"), ","))
        row(f"{name}: bytes down", fmt((key, "bytes_down"), ","))
        row(f"{name}: ms", fmt((key, "ms"), ".1f"))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(
            cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(r)
        )
        for r in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=10_000, help="small mailbox size")
    parser.add_argument("--large", type=int, default=100_000, help="large mailbox size")
    parser.add_argument("--quick", action="store_true", help="1,000 and 5,000 messages")
    parser.add_argument(
        "--full", action="store_true", help="first-sync the large mailbox too (minutes)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile each full first sync (slows it down)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.large = 1_000, 5_000

    info = machine()
    print(
        f"machine: nproc {info['nproc']}, Python {info['python']}, Dovecot {info['dovecot']}, "
        f"imapclient {info['imapclient']}, mail-parser {info['mail_parser']}\n"
        f"         {info['platform']}; load average at start "
        + " ".join(f"{value:.2f}" for value in info["loadavg_at_start"])
    )
    print(
        "setup: Dovecot (tests/dovecot.py, Maildir, loopback) <- TcpProxy (tests/tcpproxy.py, "
        "in this process) <- nextround; mail is bulk-loaded into the Maildir."
    )
    results: dict[str, Any] = {"machine": info, "args": vars(args)}
    with (
        tempfile.TemporaryDirectory(prefix="nextround-bench-") as tmp,
        Dovecot.start(ssl=False) as server,
        TcpProxy(server.host, server.port_plain) as proxy,
    ):
        workdir = Path(tmp)
        model = get_model(ModelSettings(state_dir=workdir / "model", threshold=DEFAULT_THRESHOLD))
        results["small"] = measure(
            "small", server, proxy, workdir, args.messages, model, full=True, profile=args.profile
        )
        if not args.full:
            print(
                f"\nThe large mailbox is not first-synced through nextround (use --full): its "
                f"mail gets an INTERNALDATE {OLD_DAYS} days back (Maildir file mtime), so a first "
                f"cycle with backfill_days = {BACKFILL_DAYS} fetches nothing but still sets the "
                "position to the highest UID, as a finished backfill would."
            )
        results["large"] = measure(
            "large", server, proxy, workdir, args.large, model, full=args.full, profile=args.profile
        )

    results["machine"]["loadavg_at_end"] = [round(value, 2) for value in os.getloadavg()]
    print("\n" + table(results))
    print(
        "load average at end: "
        + " ".join(f"{value:.2f}" for value in results["machine"]["loadavg_at_end"])
        + " (with 2 cores, anything above ~0.5 before the run means the numbers are shared)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
