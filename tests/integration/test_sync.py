"""Sync against a real Dovecot: only what is new, once, with the position kept per UIDVALIDITY."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import imapclient
import pytest
from dovecot import Dovecot, MailUser
from support import ConfigWriter, run_cli
from tcpproxy import TcpProxy

from nextround.classifier.message import Message
from nextround.daemon import imap
from nextround.daemon.config import Config, load_config
from nextround.daemon.errors import ConnectError, StorageError
from nextround.daemon.imap import ImapMailbox, untraced
from nextround.daemon.mailbox import Fetched
from nextround.daemon.parse import parse_message
from nextround.daemon.session import Session, open_session
from nextround.daemon.store import Store
from nextround.daemon.sync import FolderRef, Triage, Triaged, run_cycle

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def mail(number: int, subject: str = "Hello", size: int = 0) -> bytes:
    message = EmailMessage()
    message["From"] = f"Person {number} <person{number}@example.com>"
    message["To"] = "alex@example.org"
    message["Subject"] = f"{subject} {number}"
    message["Message-ID"] = f"<msg-{number}@example.com>"
    message["Date"] = "Sat, 21 Nov 2026 10:00:00 +0000"
    message.set_content(f"Body of message {number}.\n" + "x" * size)
    return message.as_bytes()


class Recorder:
    """A handler that remembers what the cycle handed it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(
        self, store: Store, folder: FolderRef, message: Message, row_id: int, now: datetime
    ) -> None:
        self.seen.append((folder.role, message.message_id))


@pytest.fixture
def setup(
    mailbox_user: MailUser, write_config: ConfigWriter
) -> Iterator[tuple[Config, Store, MailUser]]:
    config = load_config(write_config(mailbox_user))
    store = Store.open(config.database_path)
    yield config, store, mailbox_user
    store.close()


def cycle(
    config: Config,
    store: Store,
    handler: Recorder,
    now: datetime = NOW,
    triage: Triage | None = None,
) -> None:
    session: Session = open_session(config)
    try:
        run_cycle(session.mailbox, store, session.folders, config.sync, now, handler, triage)
    finally:
        session.close()


def everything_quick(
    store: Store, folder: FolderRef, batches: Iterator[list[Fetched]], count: int
) -> Triaged:
    """A triage that reads every message quickly: they commit a run at a time."""
    for batch in batches:
        yield batch, [parse_message(item.raw) for item in batch]


class CrashOnMessage2(Recorder):
    """A handler whose store fails on the third message."""

    def __call__(
        self, store: Store, folder: FolderRef, message: Message, row_id: int, now: datetime
    ) -> None:
        if message.message_id == "<msg-2@example.com>":
            raise StorageError("disk full (injected)")
        super().__call__(store, folder, message, row_id, now)


def recorded(store: Store, folder: str = "INBOX") -> list[str]:
    rows = store.connection.execute(
        "SELECT message_id FROM messages WHERE folder = ? ORDER BY uid", (folder,)
    )
    return [row[0] for row in rows]


def test_cycle_fetches_new_mail_once(setup: tuple[Config, Store, MailUser]) -> None:
    config, store, user = setup
    for number in range(3):
        user.append("INBOX", mail(number))
    user.append("Sent", mail(100))
    handler = Recorder()
    cycle(config, store, handler)
    assert handler.seen == [
        ("inbox", "<msg-0@example.com>"),
        ("inbox", "<msg-1@example.com>"),
        ("inbox", "<msg-2@example.com>"),
        ("sent", "<msg-100@example.com>"),
    ]
    cycle(config, store, handler)
    assert len(handler.seen) == 4, "a second cycle with nothing new fetched something"

    user.append("INBOX", mail(3))
    cycle(config, store, handler)
    assert handler.seen[4:] == [("inbox", "<msg-3@example.com>")]
    assert recorded(store) == [f"<msg-{n}@example.com>" for n in range(4)]
    position = store.position("INBOX")
    assert position is not None and position.backfilled
    assert position.last_uid == max(user.uids("INBOX"))


def test_fetching_does_not_mark_mail_as_read(setup: tuple[Config, Store, MailUser]) -> None:
    config, store, user = setup
    user.append("INBOX", mail(1))
    cycle(config, store, Recorder())
    with user.client() as client:
        client.select_folder("INBOX", readonly=True)
        flags = client.get_flags(client.search(["ALL"]))
    assert all(b"\\Seen" not in value for value in flags.values())


def test_first_run_looks_back_backfill_days_only(setup: tuple[Config, Store, MailUser]) -> None:
    config, store, user = setup
    user.append("INBOX", mail(1), date=NOW - timedelta(days=45))
    user.append("INBOX", mail(2), date=NOW - timedelta(days=2))
    handler = Recorder()
    cycle(config, store, handler)
    assert handler.seen == [("inbox", "<msg-2@example.com>")]
    # The old message is behind the position now: it is never fetched later either.
    cycle(config, store, handler)
    assert len(handler.seen) == 1


def test_uidvalidity_change_resyncs_by_message_id(setup: tuple[Config, Store, MailUser]) -> None:
    config, store, user = setup
    for number in range(3):
        user.append("Sent", mail(number))
    handler = Recorder()
    cycle(config, store, handler)
    old_validity = user.uidvalidity("Sent")

    # The server loses its index: the folder comes back with new UIDs and one new message.
    user.delete_folder("Sent")
    user.create_folder("Sent", special_use="\\Sent")
    for number in (0, 1, 2, 3):
        user.append("Sent", mail(number))
    assert user.uidvalidity("Sent") != old_validity

    cycle(config, store, handler)
    sent = [message_id for role, message_id in handler.seen if role == "sent"]
    assert sent == [f"<msg-{n}@example.com>" for n in (0, 1, 2, 3)], "a message was processed twice"
    position = store.position("Sent")
    assert position is not None and position.uidvalidity == user.uidvalidity("Sent")
    assert len(recorded(store, "Sent")) == 4

    cycle(config, store, handler)
    assert len(handler.seen) == 4


def test_unparsable_message_is_recorded_and_skipped(
    setup: tuple[Config, Store, MailUser],
) -> None:
    config, store, user = setup
    user.append("INBOX", mail(1))
    user.append("INBOX", b"this is not a mail at all, just a line of text\r\n")
    user.append("INBOX", mail(2))
    handler = Recorder()
    cycle(config, store, handler)
    assert [message_id for _, message_id in handler.seen] == [
        "<msg-1@example.com>",
        "<msg-2@example.com>",
    ]
    row = store.connection.execute(
        "SELECT status, error FROM messages WHERE status != 'parsed'"
    ).fetchone()
    assert row[0] == "unparsable" and "header" in row[1]
    counts = {row.folder: row for row in store.folder_counts()}
    assert counts["INBOX"].messages == 3 and counts["INBOX"].skipped == 1


def test_a_crash_mid_cycle_loses_nothing_and_repeats_nothing(
    setup: tuple[Config, Store, MailUser],
) -> None:
    config, store, user = setup
    for number in range(4):
        user.append("INBOX", mail(number))

    crashing = CrashOnMessage2()
    with pytest.raises(StorageError):
        cycle(config, store, crashing)
    assert crashing.seen == [("inbox", "<msg-0@example.com>"), ("inbox", "<msg-1@example.com>")]
    assert recorded(store) == ["<msg-0@example.com>", "<msg-1@example.com>"]

    handler = Recorder()
    cycle(config, store, handler)
    assert handler.seen == [
        ("inbox", "<msg-2@example.com>"),
        ("inbox", "<msg-3@example.com>"),
    ]
    assert recorded(store) == [f"<msg-{n}@example.com>" for n in range(4)]


def test_a_failing_message_in_a_quickly_read_run_is_recorded_as_failed_alone(
    setup: tuple[Config, Store, MailUser],
) -> None:
    config, store, user = setup
    for number in range(4):
        user.append("INBOX", mail(number))

    class Failing(Recorder):
        def __call__(
            self, store: Store, folder: FolderRef, message: Message, row_id: int, now: datetime
        ) -> None:
            store.remember_contact(message.from_, "acme", message.message_id, now)  # type: ignore[arg-type]
            if message.message_id == "<msg-2@example.com>":
                raise ValueError("a bug in a handler (injected)")
            super().__call__(store, folder, message, row_id, now)

    handler = Failing()
    cycle(config, store, handler, triage=everything_quick)
    assert [message_id for _, message_id in handler.seen] == [
        f"<msg-{n}@example.com>" for n in (0, 1, 3)
    ]
    statuses = dict(store.connection.execute("SELECT message_id, status FROM messages"))
    assert statuses == {
        "<msg-0@example.com>": "parsed",
        "<msg-1@example.com>": "parsed",
        "<msg-2@example.com>": "failed",
        "<msg-3@example.com>": "parsed",
    }
    # What the failing handler wrote before it raised was undone with it.
    contacts = {row[0] for row in store.connection.execute("SELECT email FROM contacts")}
    assert contacts == {f"person{n}@example.com" for n in (0, 1, 3)}
    position = store.position("INBOX")
    assert position is not None and position.last_uid == 4


def test_a_crash_in_a_quickly_read_run_commits_none_of_it_and_repeats_nothing(
    setup: tuple[Config, Store, MailUser],
) -> None:
    config, store, user = setup
    for number in range(4):
        user.append("INBOX", mail(number))

    with pytest.raises(StorageError):
        cycle(config, store, CrashOnMessage2(), triage=everything_quick)
    assert recorded(store) == []  # the run is one transaction
    handler = Recorder()
    cycle(config, store, handler, triage=everything_quick)
    assert [message_id for _, message_id in handler.seen] == [
        f"<msg-{n}@example.com>" for n in range(4)
    ]
    assert recorded(store) == [f"<msg-{n}@example.com>" for n in range(4)]


def test_oversized_message_is_fetched_as_a_bounded_prefix(
    mailbox_user: MailUser, write_config: ConfigWriter
) -> None:
    config = load_config(write_config(mailbox_user, extra="[sync]\nmax_message_bytes = 65536\n"))
    store = Store.open(config.database_path)
    mailbox_user.append("INBOX", mail(1, size=300_000))
    handler = Recorder()
    cycle(config, store, handler)
    assert handler.seen == [("inbox", "<msg-1@example.com>")]
    size = store.connection.execute("SELECT size FROM messages").fetchone()[0]
    assert size > 300_000
    store.close()


def test_large_and_small_messages_come_in_order_with_their_sizes(
    mailbox_user: MailUser, write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only messages over LARGE_MESSAGE have their size asked first (SEARCH LARGER finds
    them); every message comes with its RFC822.SIZE, in UID order, cut at the limit."""
    monkeypatch.setattr(imap, "LARGE_MESSAGE", 50_000)
    monkeypatch.setattr(imap, "FETCH_GROUP_BYTES", 200_000)  # groups of at most 4 small ones
    config = load_config(write_config(mailbox_user))
    lengths = [2_000, 120_000, 3_000, 400_000, 1_000, 10, 20, 30, 40, 50]
    for number, length in enumerate(lengths, 1):
        mailbox_user.append("INBOX", mail(number, size=length))
    with mailbox_user.client() as client:
        client.select_folder("INBOX", readonly=True)
        uids = client.search(["ALL"])
        sizes = client.fetch(uids, ["RFC822.SIZE"])
        expected = {uid: data[b"RFC822.SIZE"] for uid, data in sizes.items()}
    session = open_session(config)
    try:
        session.mailbox.select("INBOX")
        got = list(session.mailbox.fetch(sorted(expected), 300_000))
    finally:
        session.close()
    assert [item.uid for item in got] == sorted(expected)
    assert {item.uid: item.size for item in got} == expected
    assert [item.truncated for item in got] == [length > 290_000 for length in lengths]
    assert [parse_message(item.raw).message_id for item in got[:3]] == [
        "<msg-1@example.com>",
        "<msg-2@example.com>",
        "<msg-3@example.com>",
    ]


def test_fetched_mail_is_never_copied_into_imap_trace_lines(
    mailbox_user: MailUser, write_config: ConfigWriter, caplog: pytest.LogCaptureFixture
) -> None:
    """imapclient turns imaplib's protocol trace on and logs it at DEBUG: imaplib would copy
    every fetched message into a trace line (most of a fetch's CPU, even when the line is
    dropped). The adapter turns it off, so no level of logging shows a body."""
    config = load_config(write_config(mailbox_user))
    mailbox_user.append("INBOX", mail(1, size=10) + b"trace-canary-4711\n")
    caplog.set_level(logging.DEBUG, logger="imapclient")  # the CLI caps it; a test may have run it
    session = open_session(config)
    try:
        session.mailbox.select("INBOX")
        got = list(session.mailbox.fetch(session.mailbox.uids_after(0), 10_000))
    finally:
        session.close()
    assert b"trace-canary-4711" in got[0].raw
    assert "Connected to host" in caplog.text  # imapclient's own DEBUG lines were captured
    assert "trace-canary-4711" not in caplog.text


def test_uid_sets_are_written_as_ranges() -> None:
    assert imap._uid_set([5, 1, 2, 3, 9, 10, 7]) == "1:3,5,7,9:10"
    assert imap._uid_set([4]) == "4"


def test_once_and_status_from_the_command_line(
    mailbox_user: MailUser, write_config: ConfigWriter
) -> None:
    path = write_config(mailbox_user)
    mailbox_user.append("INBOX", mail(1))
    result = run_cli("-c", str(path), "once", "--now", "2026-11-22T09:00:00Z")
    assert result.code == 0, result.err
    assert "inbox +1" in result.out and "sent +0" in result.out
    status = run_cli("-c", str(path), "status", "--folders", "--json")
    assert status.code == 0
    folders = {row["role"]: row for row in json.loads(status.out)}
    assert folders["inbox"]["messages"] == 1
    assert folders["inbox"]["folder"] == "INBOX"
    assert folders["sent"]["messages"] == 0
    state = Path(load_config(path).database_path)
    assert state.stat().st_mode & 0o777 == 0o600
    assert state.parent.stat().st_mode & 0o777 == 0o700


def test_dovecot_fixture_is_real(dovecot: Dovecot) -> None:
    assert dovecot.running


FETCH_BODY = b"From: a@b.example\r\nSubject: hi\r\n\r\n" + b"x" * 20000 + b"\r\n"


def _mailbox(host: str, port: int, user: MailUser) -> ImapMailbox:
    client = imapclient.IMAPClient(host, port=port, ssl=False, timeout=10)
    untraced(client)
    client.login(user.username, user.password)
    return ImapMailbox(client, host)


def test_a_connection_dropped_inside_a_body_is_a_connect_error(mailbox_user: MailUser) -> None:
    uids = [mailbox_user.append("INBOX", FETCH_BODY) for _ in range(3)]
    server = mailbox_user.server
    with TcpProxy(server.host, server.port_plain) as proxy:
        mailbox = _mailbox("127.0.0.1", proxy.port, mailbox_user)
        mailbox.select("INBOX")
        proxy.drop_after_bytes_down(30000)  # inside the second body
        with pytest.raises(ConnectError):
            list(mailbox.fetch(uids, 100000))


def test_an_unsolicited_fetch_of_flags_in_the_answer_loses_no_message(
    mailbox_user: MailUser,
) -> None:
    """Another session flags a message: Dovecot's untagged FETCH (FLAGS) comes with the
    bodies, an answer the adapter leaves to imapclient's parser."""
    uids = [mailbox_user.append("INBOX", FETCH_BODY) for _ in range(2)]
    server = mailbox_user.server
    mailbox = _mailbox(server.host, server.port_plain, mailbox_user)
    mailbox.select("INBOX")
    with mailbox_user.client() as other:
        other.select_folder("INBOX")
        other.add_flags([uids[0]], [b"\\Flagged"])
    got = {item.uid: item.raw for item in mailbox.fetch(uids, 100000)}
    assert sorted(got) == sorted(uids)
    assert all(raw == FETCH_BODY for raw in got.values())
