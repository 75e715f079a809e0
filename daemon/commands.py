"""What each CLI command does: load, call the core, print. Parsing lives in cli.py."""

from __future__ import annotations

import argparse
import email
import email.message
import email.policy
import errno
import json
import logging
import os
import sqlite3
import sys
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nextround.classifier.persist import private_directory
from nextround.daemon import applications as apps
from nextround.daemon.config import (
    DEFAULT_THRESHOLD,
    Config,
    default_config_path,
    default_state_dir,
    load_config,
)
from nextround.daemon.credentials import describe_password_source
from nextround.daemon.errors import (
    ConfigError,
    NextroundError,
    StorageError,
    TemplateError,
    UsageError,
)
from nextround.daemon.lifecycle import (
    LATE_STATES,
    Event,
    InvalidTransition,
    Timing,
    next_action,
)
from nextround.daemon.mailbox import Fetched, FolderInfo, FolderStatus, Mailbox
from nextround.daemon.store import Store, cycle_lock
from nextround.daemon.training import ModelSettings

logger = logging.getLogger(__name__)
ROLE_ORDER = {"inbox": 0, "drafts": 1, "sent": 2}

EXIT_OK, EXIT_FAILURE = 0, 1


def load(args: argparse.Namespace) -> Config:
    path: Path = args.config or default_config_path()
    return load_config(path.expanduser())


def load_optional(args: argparse.Namespace) -> Config | None:
    """The config when one was named or exists; commands that work offline accept none."""
    if args.config is not None or os.environ.get("NEXTROUND_CONFIG"):
        return load(args)
    path = default_config_path()
    return load_config(path) if path.exists() else None


def model_settings(config: Config | None) -> ModelSettings:
    if config is None:
        return ModelSettings(state_dir=default_state_dir(), threshold=DEFAULT_THRESHOLD)
    extra = config.classifier.extra_examples
    return ModelSettings(
        state_dir=config.state_dir,
        threshold=config.classifier.threshold,
        extra_examples=Path(extra) if extra else None,
    )


def open_store(config: Config) -> Store:
    return Store.open(config.database_path)


def check_config(args: argparse.Namespace) -> int:
    from nextround.daemon.drafts import Renderer
    from nextround.daemon.session import open_session

    config = load(args)
    imap = config.imap
    print(f"config       {config.path}")
    if config.templates.dir:
        if not Path(config.templates.dir).is_dir():
            raise ConfigError(
                f"{config.path}: [templates] dir: {config.templates.dir} is not a directory"
            )
        try:
            Renderer(Path(config.templates.dir)).check()
        except TemplateError as error:
            raise ConfigError(f"{config.path}: [templates] dir: {error}") from None
        print(f"templates    {config.templates.dir} (each renders)")
    print(f"server       {imap.host}:{imap.effective_port} ({imap.security})")
    print(f"password     from {describe_password_source(imap)}")
    session = open_session(config)
    try:
        print(f"login        ok as {imap.username}")
        for folder in sorted(session.folders.values(), key=lambda ref: ROLE_ORDER[ref.role]):
            status = session.mailbox.status(folder.name)
            print(f"{folder.role:<12} {folder.name} ({folder.how}; {status.messages} messages)")
    finally:
        session.close()
    print(f"state        {config.database_path}")
    return EXIT_OK


def once(args: argparse.Namespace) -> int:
    from nextround.daemon.engine import Engine
    from nextround.daemon.session import open_session
    from nextround.daemon.training import get_model

    config = load(args)
    now: datetime = args.now or datetime.now(UTC)
    model = get_model(model_settings(config))
    with (
        cycle_store(config, dry_run=args.dry_run) as store,
        # A dry run writes nothing and works on a copy of the state: no other cycle minds it.
        nullcontext() if args.dry_run else cycle_lock(config.database_path, args.wait),
    ):
        session = open_session(config)
        try:
            mailbox = DryRunMailbox(session.mailbox) if args.dry_run else session.mailbox
            engine = Engine(config, model, dry_run=args.dry_run)
            report = engine.poll_once(mailbox, store, session.folders, now)
        finally:
            session.close()
    print(f"cycle at {now.isoformat()}: {report.summary()}")
    for message, analysis in report.analyses:
        if analysis.label != "other":
            print(
                f"  {analysis.label} ({analysis.score:.2f}, {analysis.stage or '-'}) "
                f"{analysis.company or '?'} / {analysis.role or '?'}: {message.subject}"
            )
    for change in report.events:
        print(f"  {change}")
    for draft in report.drafts:
        verb = "found existing" if draft.reused else "would draft" if args.dry_run else "drafted"
        print(f"  {verb} #{draft.application_id} {draft.step} to {draft.to or '(nobody yet)'}")
        if args.dry_run and not draft.reused:
            print("\n".join(f"    | {line}" for line in _readable(draft.raw).splitlines()))
    return EXIT_OK


@contextmanager
def cycle_store(config: Config, dry_run: bool) -> Iterator[Store]:
    """The real store, or for a dry run a throwaway copy of it (so nothing is written)."""
    if not dry_run:
        store = open_store(config)
        try:
            yield store
        finally:
            store.close()
        return
    with tempfile.TemporaryDirectory(prefix="nextround-dry-run-") as directory:
        copy = Path(directory) / "state.db"
        if config.database_path.exists():
            try:
                source = sqlite3.connect(f"file:{config.database_path}?mode=ro", uri=True)
                target = sqlite3.connect(copy)
                source.backup(target)
                source.close()
                target.close()
            except sqlite3.Error as error:
                raise StorageError(f"state database: copying for a dry run: {error}") from None
        store = Store.open(copy)
        try:
            yield store
        finally:
            store.close()


def _readable(raw: bytes) -> str:
    """A draft as a person reads it: its main headers and its decoded text."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)  # noqa: S101 - the policy's class
    names = ("From", "To", "Subject", "In-Reply-To")
    lines = [f"{name}: {message[name]}" for name in names if message[name] is not None]
    return "\n".join(lines) + "\n\n" + str(message.get_content())


class DryRunMailbox:
    """Reads pass through; APPEND is refused quietly, so a dry run writes nothing to IMAP."""

    def __init__(self, inner: Mailbox) -> None:
        self.inner = inner

    def list_folders(self) -> list[FolderInfo]:
        return self.inner.list_folders()

    def status(self, folder: str) -> FolderStatus:
        return self.inner.status(folder)

    def select(self, folder: str) -> FolderStatus:
        return self.inner.select(folder)

    def uids_after(self, last_uid: int) -> list[int]:
        return self.inner.uids_after(last_uid)

    def uids_since(self, day: Any) -> list[int]:
        return self.inner.uids_since(day)

    def fetch(self, uids: Sequence[int], max_bytes: int) -> Iterator[Fetched]:
        return self.inner.fetch(uids, max_bytes)

    def fetch_headers(self, uids: Sequence[int]) -> dict[int, bytes]:
        return self.inner.fetch_headers(uids)

    def search_header(self, folder: str, name: str, value: str) -> dict[int, bytes]:
        return self.inner.search_header(folder, name, value)

    def folder_headers(self, folder: str) -> dict[int, bytes]:
        return self.inner.folder_headers(folder)

    def headers_of(self, folder: str, uids: Sequence[int]) -> dict[int, bytes]:
        return self.inner.headers_of(folder, uids)

    def append(self, folder: str, raw: bytes, flags: Sequence[str], when: datetime) -> int | None:
        logger.debug("dry run: not saving a %d-byte message to %s", len(raw), folder)
        return None

    def noop(self) -> None:
        self.inner.noop()

    def logout(self) -> None:
        self.inner.logout()


def timing(config: Config) -> Timing:
    lifecycle = config.lifecycle
    return Timing(lifecycle.follow_up_delay, lifecycle.close_delay, lifecycle.send_delay)


def application_rows(config: Config, store: Store) -> list[dict[str, Any]]:
    rows = []
    for app in apps.all_applications(store):
        action, when = next_action(app.state, app.clock, timing(config))
        rows.append(
            {
                "id": app.id,
                "company": app.company,
                "role": app.role,
                "stage": app.stage,
                "state": app.state.value,
                "contact": app.contact_email,
                "next_action": action,
                "next_action_at": when.isoformat() if when else None,
                "opened_at": app.opened_at.isoformat(),
                "subject": app.rejection_subject,
                "note": app.note,
            }
        )
    return rows


def status(args: argparse.Namespace) -> int:
    config = load(args)
    store = open_store(config)
    try:
        folders = [
            {
                "folder": row.folder,
                "role": row.role,
                "uidvalidity": row.uidvalidity,
                "last_uid": row.last_uid,
                "messages": row.messages,
                "skipped": row.skipped,
                "synced_at": row.synced_at,
            }
            for row in store.folder_counts()
        ]
        skipped = store.unparsable()
        rows = application_rows(config, store)
    finally:
        store.close()
    if args.json:
        print(json.dumps(folders if args.folders else rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    if args.folders:
        print_folders(folders, skipped)
        return EXIT_OK
    if not rows:
        print("no applications yet" + ("" if folders else ": run `nextround once`"))
        return EXIT_OK
    for line in application_table(rows):
        print(line)
    return EXIT_OK


def application_table(rows: list[dict[str, Any]]) -> list[str]:
    """`status`'s table of applications, a line each after the heading."""
    # As wide as the longest value on a terminal (CJK characters take two columns, combining
    # accents none); company and role cut (marked) past a limit, never the contact, an
    # address the user may need to copy.
    cells = [
        (row, _cut(row["company"] or "?", 30), _cut(row["role"] or "?", 40), row["contact"] or "-")
        for row in rows
    ]
    company = max([len("COMPANY"), *(_columns(cell[1]) for cell in cells)])
    role = max([len("ROLE"), *(_columns(cell[2]) for cell in cells)])
    contact = max([len("CONTACT"), *(_columns(cell[3]) for cell in cells)])
    lines = [
        f"{'ID':>3} {'COMPANY':<{company}} {'ROLE':<{role}} {'STAGE':<11} {'STATE':<13} "
        f"{'CONTACT':<{contact}} NEXT"
    ]
    for row, company_cell, role_cell, contact_cell in cells:
        when = (
            f" at {row['next_action_at'][:16].replace('T', ' ')}" if row["next_action_at"] else ""
        )
        lines.append(
            f"{row['id']:>3} {_pad(company_cell, company)} {_pad(role_cell, role)} "
            f"{row['stage'] or '-':<11} {row['state']:<13} {_pad(contact_cell, contact)} "
            f"{row['next_action']}{when}"
        )
    return lines


def _columns(text: str) -> int:
    """How many terminal columns `text` takes."""
    return sum(map(_column_width, text))


def _column_width(ch: str) -> int:
    # Marks and format characters (Thai vowels, a zero-width non-joiner) sit on the one
    # before them; so do Hangul medial and final jamo.
    if unicodedata.category(ch) in ("Mn", "Me", "Cf") or "\u1160" <= ch <= "\u11ff":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _columns(text))


def _cut(text: str, width: int) -> str:
    """`text` in at most `width` columns, marked with an ellipsis when cut."""
    if _columns(text) <= width:
        return text
    kept: list[str] = []
    used = 0
    for ch in text:
        columns = _column_width(ch)
        if columns and used + columns > width - 1:
            break
        kept.append(ch)  # a mark stays with the character it belongs to
        used += columns
    return "".join(kept) + "\u2026"


def print_folders(folders: list[dict[str, Any]], skipped: list[tuple[str, int, str, str]]) -> None:
    if not folders:
        print("nothing synced yet: run `nextround once`")
        return
    print(f"{'ROLE':<8} {'FOLDER':<20} {'MESSAGES':>8} {'SKIPPED':>8}  LAST SYNC")
    for folder in folders:
        print(
            f"{folder['role']:<8} {folder['folder']:<20} {folder['messages']:>8} "
            f"{folder['skipped']:>8}  {folder['synced_at']}"
        )
    if skipped:
        print("\nskipped messages (newest first):")
        for folder_name, uid, message_id, error in skipped:
            print(f"  {folder_name} UID {uid} {message_id}: {error}")


def _user_event(args: argparse.Namespace, event: Event, verb: str, done: str) -> int:
    config = load(args)
    store = open_store(config)
    now = datetime.now(UTC)
    try:
        # Between cycles only: a cycle acts on what it read at its start, and would write
        # over the user's word (a draft gone, a close due) with its own.
        with cycle_lock(config.database_path, args.wait), store.transaction():
            app = apps.get(store, args.id)
            if app is None:
                raise UsageError(f"no application #{args.id} (see `nextround status`)")
            try:
                if app.state in LATE_STATES and not apps.ended_by_daemon(store, app):
                    raise InvalidTransition(app.state)  # the user's own end, or never begun
                apps.apply_event(store, app, event, now, "by the user")
            except InvalidTransition:
                raise UsageError(
                    f"application #{app.id} is {app.state.value}: nothing to {verb}"
                ) from None
    finally:
        store.close()
    print(f"#{args.id} {done}: nothing more will be drafted for it")
    return EXIT_OK


def skip(args: argparse.Namespace) -> int:
    return _user_event(args, Event.USER_SKIPPED, "skip", "skipped")


def close(args: argparse.Namespace) -> int:
    return _user_event(args, Event.USER_CLOSED, "close", "closed")


def label(args: argparse.Namespace) -> int:
    """Fetch the message from INBOX and file it as an example; `train` (or the next start)
    picks it up. The message stays where it is."""
    from nextround.daemon.session import open_session

    config = load(args)
    settings = model_settings(config)
    message_id = args.message_id.strip()
    if not message_id.startswith("<"):
        message_id = f"<{message_id}>"
    session = open_session(config)
    try:
        found = session.mailbox.search_header(
            session.folders["inbox"].name, "Message-ID", message_id
        )
        raw = b""
        for fetched in session.mailbox.fetch(sorted(found), config.sync.max_message_bytes):
            raw = fetched.raw
            break
    finally:
        session.close()
    if not raw:
        raise NextroundError(f"{message_id}: not found in {session.folders['inbox'].name}")
    folder = settings.corrections_dir / args.label
    name = "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in message_id.strip("<>"))
    path = folder / f"{name}.eml"
    try:
        private_directory(folder)
        for other in ("rejection", "closed", "other"):
            (settings.corrections_dir / other / f"{name}.eml").unlink(missing_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(raw)
        path.chmod(0o600)  # it may have existed, with another mode
    except OSError as error:
        raise NextroundError(f"{path}: cannot write it: {error.strerror or error}") from None
    store = open_store(config)
    try:
        with store.transaction():
            store.connection.execute(
                "UPDATE messages SET corrected_label = ? WHERE message_id = ?",
                (args.label, message_id),
            )
    finally:
        store.close()
    print(f"{message_id} filed as {args.label}: {path}")
    print("the classifier retrains with it on its next use (or run `nextround train`)")
    return EXIT_OK


def classify(args: argparse.Namespace) -> int:
    from nextround.classifier.analyse import analyse
    from nextround.daemon.parse import parse_message
    from nextround.daemon.training import get_model

    config = load_optional(args)
    model = get_model(model_settings(config))
    user = [config.identity.email] if config else []
    paths: list[str] = args.paths
    if paths.count("-") > 1:
        raise UsageError("- (stdin) can be given once")
    rows: list[dict[str, Any]] = []
    # Chunks keep memory bounded for thousands of files while still predicting in batches.
    for start in range(0, len(paths), 256):
        chunk = paths[start : start + 256]
        parsed: list[tuple[int, Any]] = []
        results: list[dict[str, Any]] = []
        for index, path in enumerate(chunk):
            try:
                if path == "-" and sys.stdin is None:  # started with its input closed
                    raise OSError(errno.EBADF, "no standard input")
                raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
                parsed.append((index, parse_message(raw)))
                results.append({"path": path})
            except OSError as error:
                results.append({"path": path, "error": f"cannot read: {error.strerror}"})
            except NextroundError as error:
                results.append({"path": path, "error": str(error)})
        analyses = analyse([message for _, message in parsed], model, user_addresses=user)
        for (index, message), analysis in zip(parsed, analyses, strict=True):
            results[index].update(analysis.as_json())
            if args.explain:
                results[index]["explain"] = [
                    [name, round(weight, 4)] for name, weight in model.explain(message)
                ]
        rows.extend(results)
        if args.json:
            for row in results:
                print(json.dumps(row, ensure_ascii=False))
    if not args.json:
        print_classification_table(rows, args.explain)
    return EXIT_OK


def print_classification_table(rows: list[dict[str, Any]], explain: bool) -> None:
    print(f"{'LABEL':<10} {'SCORE':>5} {'STAGE':<11} {'COMPANY':<22} {'REPLY-TO':<28} PATH")
    for row in rows:
        if "error" in row:
            print(f"{'error':<10} {'':>5} {'':<11} {'':<22} {'':<28} {row['path']}: {row['error']}")
            continue
        print(
            f"{row['label']:<10} {row['score']:>5.2f} {row['stage'] or '-':<11} "
            f"{(row['company'] or '-')[:22]:<22} {(row['reply_to'] or '-')[:28]:<28} {row['path']}"
        )
        if row["role"]:
            print(f"{'':<10} {'':>5} role: {row['role']}")
        if row["no_feedback_policy"]:
            print(f"{'':<10} {'':>5} says it gives no individual feedback")
        if explain:
            for name, weight in row["explain"]:
                print(f"{'':<10} {'':>5}   {weight:+.3f}  {name}")


def train(args: argparse.Namespace) -> int:
    from nextround.daemon.training import train_and_save

    _, report = train_and_save(model_settings(load_optional(args)))
    labels = ", ".join(f"{count} {label}" for label, count in report.by_label.items())
    print(f"trained on {report.examples} examples ({labels}) in {report.seconds:.1f} s")
    print(f"your own examples: {report.user_examples}; skipped: {len(report.skipped)}")
    for problem in report.skipped:
        print(f"  skipped {problem}")
    print(f"model: {report.path} (fingerprint {report.fingerprint})")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    from nextround.daemon.service import Service

    path: Path = args.config or default_config_path()
    return Service(path.expanduser()).run()


def init(args: argparse.Namespace) -> int:
    from nextround.daemon.init import terminal_ask, write_config

    path: Path = (args.config or default_config_path()).expanduser()
    values: dict[str, str | None] = {
        key: getattr(args, key)
        for key in (
            "host",
            "username",
            "name",
            "email",
            "security",
            "port",
            "password_command",
            "password_file",
        )
    }
    given = values["password_file"]
    if given and not given.startswith(("/", "~")):
        # Relative to where the user typed it, not to the config file's folder, against
        # which the config reads a relative path.
        values["password_file"] = str(Path.cwd() / given)
    written = write_config(path, values, terminal_ask())
    print(f"wrote {written} (mode 0600)")
    if not (values["password_command"] or values["password_file"]):
        print(
            "next: tell nextround where your IMAP password is: set password_file or "
            f"password_command in {written} (its comments show how), or the environment "
            "variable NEXTROUND_IMAP_PASSWORD; then run: nextround check-config"
        )
    else:
        print("next: nextround check-config")
    return EXIT_OK
