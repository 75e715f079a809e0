"""The SQLite state store: numbered migrations, WAL, a busy timeout, and the few queries we need.

Every write happens inside `transaction()`, so a message, its results and the folder position
that follows it are committed together or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from nextround.classifier.message import Address, Message
from nextround.classifier.persist import private_directory
from nextround.classifier.verdict import Analysis
from nextround.daemon import stopping
from nextround.daemon.errors import BusyError, ConstraintError, StorageError

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Position:
    folder: str
    role: str
    uidvalidity: int
    last_uid: int
    backfilled: bool
    synced_at: str


@dataclass(frozen=True)
class FolderCounts:
    folder: str
    role: str
    uidvalidity: int
    last_uid: int
    messages: int
    skipped: int  # unparsable or failed, recorded with the reason
    synced_at: str


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every shipped migration, in order."""
    found = []
    for entry in resources.files("nextround.daemon").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [version for version, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise StorageError(f"migrations are not numbered 1..n: {versions}")
    return found


@contextlib.contextmanager
def storage_errors(doing: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as error:
        raise ConstraintError(f"state database: {doing}: {error}") from None
    except sqlite3.Error as error:
        raise StorageError(f"state database: {doing}: {error}") from None
    except OSError as error:
        raise StorageError(f"state database: {doing}: {error.strerror or error}") from None


@contextlib.contextmanager
def cycle_lock(database: Path, wait: float) -> Iterator[None]:
    """Held for a whole cycle: two cycles on one state at once (the service, and `nextround
    once` run by hand) would each write the same draft. An flock on a file beside the
    database, which the kernel releases when the process ends: a crash never leaves it
    held. Waits up to `wait` seconds for another cycle to end, then raises BusyError; a stop
    requested meanwhile ends the wait (stopping.ShutdownRequested)."""
    path = database.with_name(database.name + ".lock")
    with storage_errors(f"opening {path}"):
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                stopping.check()  # systemd waits 15 s for a stop, not a minute
                if time.monotonic() >= deadline:
                    raise BusyError(
                        f"another nextround cycle is running on {database} (the service, or "
                        "`nextround once`); try again when it has finished"
                    ) from None
                time.sleep(0.1)
            except OSError as error:
                raise StorageError(f"state database: locking {path}: {error}") from None
        yield
    finally:
        os.close(descriptor)  # and the lock with it


class Store:
    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Store:
        with storage_errors(f"opening {path}"):
            _prepare_files(path)
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        store = cls(connection, path)
        try:
            with storage_errors(f"configuring {path}"):
                connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                connection.execute("PRAGMA journal_mode = WAL")
                # NORMAL in WAL mode survives a process crash; power loss may roll back the
                # last commits, which the idempotent drafting step tolerates.
                connection.execute("PRAGMA synchronous = NORMAL")
                connection.execute("PRAGMA foreign_keys = ON")
            store.migrate()
        except BaseException:
            connection.close()
            raise
        return store

    def close(self) -> None:
        self.connection.close()

    def migrate(self) -> None:
        with storage_errors("migrating"):
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            applied = {
                row[0] for row in self.connection.execute("SELECT version FROM schema_migrations")
            }
            shipped = migrations()
            if applied and max(applied) > len(shipped):
                # Written by a newer nextround: this one would misread what it does not know.
                raise StorageError(
                    f"{self.path}: written by a newer nextround (database schema "
                    f"{max(applied)}, this version knows up to {len(shipped)}); upgrade it"
                )
            for version, name, sql in shipped:
                if version in applied:
                    continue
                logger.info("applying database migration %s", name)
                # One script, one transaction: the schema change and its version row land
                # together or not at all.
                script = (
                    f"BEGIN IMMEDIATE;\n{sql}\n"
                    "INSERT INTO schema_migrations (version, name, applied_at) "
                    f"VALUES ({version}, '{name}', datetime('now'));\nCOMMIT;"
                )
                try:
                    self.connection.executescript(script)
                except sqlite3.Error:
                    if self.connection.in_transaction:
                        self.connection.execute("ROLLBACK")
                    raise

    def schema_version(self) -> int:
        row = self.connection.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with storage_errors("starting a transaction"):
            self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.connection.execute("ROLLBACK")
            raise
        with storage_errors("committing"):
            self.connection.execute("COMMIT")

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[sqlite3.Connection]:
        """Inside a transaction: what the block writes is undone if it raises, and the
        transaction goes on without it."""
        with storage_errors("starting a savepoint"):
            self.connection.execute("SAVEPOINT unit")
        try:
            yield self.connection
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.connection.execute("ROLLBACK TO unit")
                self.connection.execute("RELEASE unit")
            raise
        with storage_errors("releasing a savepoint"):
            self.connection.execute("RELEASE unit")

    def _one(self, sql: str, *args: Any) -> Any:
        with storage_errors("reading"):
            return self.connection.execute(sql, args).fetchone()

    # -- folders -------------------------------------------------------------------------

    def position(self, folder: str) -> Position | None:
        row = self._one(
            "SELECT name, role, uidvalidity, last_uid, backfilled, synced_at "
            "FROM folders WHERE name = ?",
            folder,
        )
        if row is None:
            return None
        name, role, uidvalidity, last_uid, backfilled, synced_at = row
        return Position(name, role, uidvalidity, last_uid, bool(backfilled), synced_at)

    def set_position(
        self,
        folder: str,
        role: str,
        uidvalidity: int,
        last_uid: int,
        backfilled: bool,
        now: datetime,
    ) -> None:
        with storage_errors("saving the sync position"):
            self.connection.execute(
                "INSERT INTO folders (name, role, uidvalidity, last_uid, backfilled, synced_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET role = excluded.role, "
                "uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, "
                "backfilled = excluded.backfilled, synced_at = excluded.synced_at",
                (folder, role, uidvalidity, last_uid, int(backfilled), now.isoformat()),
            )

    def looked_at(self, folder: str, now: datetime) -> None:
        """A cycle found nothing new in `folder`: it was synced, as of `now`."""
        with storage_errors("saving when a folder was looked at"):
            self.connection.execute(
                "UPDATE folders SET synced_at = ? WHERE name = ?", (now.isoformat(), folder)
            )

    # -- messages ------------------------------------------------------------------------

    def known_uids(self, folder: str, uidvalidity: int, above: int = 0) -> set[int]:
        """The UIDs above `above` recorded for a folder in this UIDVALIDITY: one query, not
        one per UID (a first sync resumed on a large mailbox asks about each of them)."""
        with storage_errors("reading the recorded messages"):
            rows = self.connection.execute(
                "SELECT uid FROM messages WHERE folder = ? AND uidvalidity = ? AND uid > ?",
                (folder, uidvalidity, above),
            ).fetchall()
        return {int(uid) for (uid,) in rows}

    def note_refusal(
        self, folder: str, uidvalidity: int, uid: int, reason: str, now: datetime
    ) -> tuple[int, datetime]:
        """One more cycle in which the server would not give this message: in how many it
        has been, and since when."""
        with storage_errors("noting a message the server would not give"):
            self.connection.execute(
                "INSERT INTO refusals (folder, uidvalidity, uid, times, first_at, reason) "
                "VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (folder, uidvalidity, uid) DO UPDATE "
                "SET times = times + 1, reason = excluded.reason",
                (folder, uidvalidity, uid, now.isoformat(), reason),
            )
            times, since = self.connection.execute(
                "SELECT times, first_at FROM refusals "
                "WHERE folder = ? AND uidvalidity = ? AND uid = ?",
                (folder, uidvalidity, uid),
            ).fetchone()
        return int(times), datetime.fromisoformat(since)

    def rebind(self, folder: str, message_id: str, uidvalidity: int, uid: int) -> bool:
        """After a UIDVALIDITY change: give a known message its new UID. False if unknown."""
        with storage_errors("re-identifying a message"):
            cursor = self.connection.execute(
                "UPDATE messages SET uidvalidity = ?, uid = ? WHERE id = ("
                "SELECT id FROM messages WHERE folder = ? AND message_id = ? "
                "AND uidvalidity != ? ORDER BY id LIMIT 1)",
                (uidvalidity, uid, folder, message_id, uidvalidity),
            )
            if cursor.rowcount:
                return True
            # Seen already under the new UIDVALIDITY (a duplicate copy of the same message).
            row = self.connection.execute(
                "SELECT 1 FROM messages WHERE folder = ? AND message_id = ? AND uidvalidity = ?",
                (folder, message_id, uidvalidity),
            ).fetchone()
            return row is not None

    def record_message(
        self,
        folder: str,
        uidvalidity: int,
        uid: int,
        size: int,
        now: datetime,
        message: Message | None = None,
        *,
        message_id: str = "",
        error: str | None = None,
        status: str = "unparsable",
    ) -> int:
        """Record a message as seen: parsed (`message`) or unparsable (`error`)."""
        if message is not None:
            values: tuple[Any, ...] = (*_message_values(message), "parsed", None)
        else:
            values = (message_id, "", "", "", "", None, "", status, error)
        with storage_errors("recording a message"):
            cursor = self.connection.execute(
                "INSERT INTO messages (folder, uidvalidity, uid, message_id, in_reply_to, refs, "
                "sender, subject, sent_at, recipient, status, error, size, seen_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (folder, uidvalidity, uid, *values, size, now.isoformat()),
            )
        return int(cursor.lastrowid or 0)

    def record_settled(
        self,
        folder: str,
        uidvalidity: int,
        settled: Sequence[tuple[int, int, Message, Analysis, Sequence[Contact]]],
        now: datetime,
    ) -> None:
        """Record many messages with their analysis and remember their writers, a statement
        each for all of them: what `record_message`, `save_analysis` and `remember_contact`
        write, for mail that needs nothing else. Items: (uid, size, message, analysis,
        contacts)."""
        seen = now.isoformat()
        rows = [
            (folder, uidvalidity, uid, *_message_values(message), size, seen,
             *_analysis_values(analysis))
            for uid, size, message, analysis, _ in settled
        ]  # fmt: skip
        contacts = [
            _contact_values(contact, message.message_id, seen)
            for _, _, message, _, writers in settled
            for contact in writers
        ]
        with storage_errors("recording messages"):
            self.connection.executemany(
                "INSERT INTO messages (folder, uidvalidity, uid, message_id, in_reply_to, refs, "
                "sender, subject, sent_at, recipient, status, error, size, seen_at, label, score, "
                "stage, company, role, reply_to, no_feedback) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'parsed', NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self.connection.executemany(_REMEMBER_CONTACT, contacts)

    def sent_answer(
        self, message_id: str
    ) -> tuple[str, datetime | None, tuple[Address, ...]] | None:
        """The first sent copy recorded that answers `message_id` (its In-Reply-To or
        References name it): its Message-ID, date, and whom it went to."""
        with storage_errors("looking for a sent answer"):
            row = self.connection.execute(
                "SELECT m.message_id, m.sent_at, m.recipient FROM messages m JOIN folders f "
                "ON f.name = m.folder WHERE f.role = 'sent' AND m.status = 'parsed' AND ("
                "instr(' ' || m.in_reply_to || ' ', ' ' || ?1 || ' ') > 0 "
                "OR instr(' ' || m.refs || ' ', ' ' || ?1 || ' ') > 0) "
                "ORDER BY m.sent_at, m.id LIMIT 1",
                (message_id,),
            ).fetchone()
        if row is None:
            return None
        return (
            row[0],
            datetime.fromisoformat(row[1]) if row[1] else None,
            addresses_from_json(row[2]),
        )

    def save_analysis(self, row_id: int, analysis: Analysis) -> None:
        with storage_errors("recording a classification"):
            self.connection.execute(
                "UPDATE messages SET label = ?, score = ?, stage = ?, company = ?, role = ?, "
                "reply_to = ?, no_feedback = ? WHERE id = ?",
                (*_analysis_values(analysis), row_id),
            )

    def remember_contact(
        self,
        address: Address,
        company_key: str,
        message_id: str,
        now: datetime,
        *,
        guessed: bool = False,
    ) -> None:
        """`guessed`: the company key comes from the domain, not from the mail's text, and
        never replaces one that did."""
        with storage_errors("recording a contact"):
            self.connection.execute(
                _REMEMBER_CONTACT,
                _contact_values((address, company_key, guessed), message_id, now.isoformat()),
            )

    def contact(self, email: str) -> Address | None:
        row = self._one("SELECT name, email FROM contacts WHERE email = ?", email)
        return Address(name=row[0], email=row[1]) if row else None

    def earlier_contacts(self, company_key: str, domains: Sequence[str]) -> list[Address]:
        """People who wrote before about this company (or from its domain), newest first."""
        if not company_key and not domains:
            return []
        with storage_errors("reading contacts"):
            rows = self.connection.execute(
                "SELECT name, email FROM contacts WHERE (company_key != '' AND company_key = ?1) "
                "OR (?1 != '' AND company_key IN (SELECT ?1 || value FROM json_each(?3))) "
                "OR domain IN (SELECT value FROM json_each(?2)) "
                "ORDER BY last_seen_at DESC, rowid DESC LIMIT 5",
                (company_key, json.dumps(list(domains)), _DOMAIN_WORDS),
            ).fetchall()
        return [Address(name=name, email=email) for name, email in rows]

    def folder_counts(self) -> list[FolderCounts]:
        with storage_errors("reading folder counts"):
            rows = self.connection.execute(
                "SELECT f.name, f.role, f.uidvalidity, f.last_uid, "
                "count(m.id), coalesce(sum(m.status != 'parsed'), 0), f.synced_at "
                "FROM folders f LEFT JOIN messages m ON m.folder = f.name "
                "GROUP BY f.name ORDER BY f.role, f.name"
            ).fetchall()
        return [FolderCounts(*row) for row in rows]

    def unparsable(self, limit: int = 20) -> list[tuple[str, int, str, str]]:
        with storage_errors("reading unparsable messages"):
            rows = self.connection.execute(
                "SELECT folder, uid, message_id, error FROM messages "
                "WHERE status != 'parsed' ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [tuple(row) for row in rows]


_SQLITE_HEADER = b"SQLite format 3\0"


def _prepare_files(path: Path) -> None:
    """Directories 0700 when we create them; the database file 0600 before SQLite opens it.
    What is there and is no database (a directory, another file of the user's) is refused
    as it is, its mode untouched."""
    private_directory(path.parent)
    if not path.exists():
        descriptor = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(descriptor)
    elif not path.is_file():
        raise StorageError(f"state database: {path}: not a file")
    else:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_HEADER))
        if head and head != _SQLITE_HEADER:
            raise StorageError(f"state database: {path}: not a SQLite database")
    path.chmod(0o600)


# Words a company's domain often adds to its name (globexhq.com for Globex): a key guessed
# from such a domain is the company's. Any other longer key is another company's (metabase is
# not Meta), and a request must never go to someone there.
_DOMAIN_WORDS = json.dumps(
    "hq inc co corp group app apps labs io ai tech team teams jobs careers hr hiring talent "
    "recruiting global mail online digital software systems studio studios".split()
)

# Whom a message names (its writers), the company key to file each under, and whether that
# key is a guess from the domain (one that never replaces a key read from a mail's text).
Contact = tuple[Address, str, bool]

_REMEMBER_CONTACT = (
    "INSERT INTO contacts (email, name, company_key, domain, last_seen_at, message_id) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (email) DO UPDATE SET "
    "name = excluded.name, company_key = CASE WHEN excluded.company_key != '' "
    "AND (?7 = 0 OR contacts.company_key = '') "
    "THEN excluded.company_key ELSE contacts.company_key END, "
    "last_seen_at = excluded.last_seen_at, message_id = excluded.message_id"
)


MAX_RECIPIENTS = 10  # of a message's To kept: whom a sent request went to is among the first


def addresses_json(addresses: Sequence[Address]) -> str:
    """Addresses as the state keeps them: JSON [[name, address], ...], "" for none. A display
    name may hold anything, an address included: the two are kept apart, never parsed."""
    return json.dumps([[address.name, address.email] for address in addresses]) if addresses else ""


def addresses_from_json(text: str | None) -> tuple[Address, ...]:
    """What `addresses_json` wrote; () for anything else (an older version wrote a reply's
    sender as "name <email>", which cannot be told apart from a name with an address in it)."""
    try:
        pairs = json.loads(text or "[]")
    except ValueError:
        return ()
    if not isinstance(pairs, list):
        return ()
    return tuple(
        Address(pair[0], pair[1])
        for pair in pairs
        if isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)
    )


def _message_values(message: Message) -> tuple[Any, ...]:
    """message_id, in_reply_to, refs, sender, subject, sent_at, recipient (its To, as JSON):
    a parsed message's columns."""
    return (
        message.message_id,
        " ".join(message.in_reply_to),
        " ".join(message.references),
        message.from_.email if message.from_ else "",
        message.subject,
        message.date.isoformat() if message.date else None,
        addresses_json(message.to[:MAX_RECIPIENTS]),
    )


def _analysis_values(analysis: Analysis) -> tuple[Any, ...]:
    """label, score, stage, company, role, reply_to, no_feedback."""
    return (
        analysis.label,
        analysis.score,
        analysis.stage,
        analysis.company,
        analysis.role,
        analysis.reply_to,
        int(analysis.no_feedback_policy),
    )


def _contact_values(contact: Contact, message_id: str, seen: str) -> tuple[Any, ...]:
    address, company_key, guessed = contact
    return (address.email, address.name, company_key, address.domain, seen, message_id, guessed)
