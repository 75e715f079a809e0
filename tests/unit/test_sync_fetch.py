"""How the sync fetches. fetched_ahead: the fetch runs in a thread one batch ahead of the
cycle. What the cycle sees must not change: the same items in the same order, the same error
after the same items, and nothing touching the connection once the cycle has stopped taking
them. And a long sync says how far it got."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from nextround.classifier.message import Message
from nextround.daemon import sync
from nextround.daemon.config import SyncConfig
from nextround.daemon.errors import MailboxError, StorageError
from nextround.daemon.mailbox import Fetched, FolderStatus
from nextround.daemon.store import Store
from nextround.daemon.sync import FolderRef, _batches, fetched_ahead, sync_folder

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
INBOX = FolderRef("inbox", "INBOX", "config")


class Source:
    """A generator of numbers that says which thread took each and whether it was closed."""

    def __init__(self, count: int, fail_after: int | None = None) -> None:
        self.count, self.fail_after = count, fail_after
        self.threads: set[int] = set()
        self.taken = 0
        self.closed = False

    def __iter__(self) -> Iterator[int]:
        try:
            for number in range(self.count):
                if number == self.fail_after:
                    raise MailboxError("the connection dropped")
                self.threads.add(threading.get_ident())
                self.taken += 1
                yield number
        finally:
            self.closed = True


def fetching_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "nextround-fetch"]


def test_every_item_arrives_in_order_taken_by_another_thread() -> None:
    source = Source(1000)
    assert list(fetched_ahead(iter(source))) == list(range(1000))
    assert source.threads and threading.get_ident() not in source.threads
    assert source.closed
    assert not fetching_threads()


def test_an_error_comes_after_the_items_before_it() -> None:
    source = Source(10, fail_after=3)
    got = []
    with pytest.raises(MailboxError, match="the connection dropped"):
        for item in fetched_ahead(iter(source)):
            got.append(item)
    assert got == [0, 1, 2]
    assert not fetching_threads()


def test_a_caller_that_stops_ends_the_thread_and_closes_the_source() -> None:
    source = Source(1000)
    ahead = fetched_ahead(iter(source))
    assert next(ahead) == 0
    ahead.close()
    # Nothing reads the connection once the caller stops: the thread is gone, the source is
    # closed, and one item at most was taken ahead of the caller's (memory stays bounded).
    assert not fetching_threads()
    assert source.closed
    assert source.taken <= 2


def test_an_error_in_the_caller_ends_the_thread_too() -> None:
    source = Source(1000)

    def cycle() -> None:
        for item in fetched_ahead(iter(source)):
            if item == 5:
                raise OSError("the disk is full")

    with pytest.raises(OSError, match="the disk is full"):
        cycle()
    assert not fetching_threads()
    assert source.closed
    assert source.taken <= 7


def test_nothing_to_fetch() -> None:
    source = Source(0)
    assert list(fetched_ahead(iter(source))) == []
    assert source.closed


def test_the_callers_event_says_it_stopped() -> None:
    gone = threading.Event()
    ahead = fetched_ahead(iter(Source(1000)), gone)
    next(ahead)
    assert not gone.is_set()
    ahead.close()
    assert gone.is_set()


def test_batches_ask_for_no_more_once_the_caller_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop waits for the FETCH in flight, not for the batch being filled to fill."""
    monkeypatch.setattr(sync, "TRIAGE_MESSAGES", 10)
    gone = threading.Event()
    pulled = 0

    def fetched() -> Iterator[Fetched]:
        nonlocal pulled
        for uid in range(1, 1000):
            pulled += 1
            if uid == 15:
                gone.set()
            yield Fetched(uid, raw(uid), 100, 1000)

    batches = list(_batches(fetched(), gone))
    assert [len(batch) for batch in batches] == [10]
    assert pulled == 15


def raw(uid: int) -> bytes:
    return (
        f"From: a{uid}@example.com\r\nTo: me@example.org\r\nSubject: s{uid}\r\n"
        f"Message-ID: <m{uid}@example.com>\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n\r\nhi\r\n"
    ).encode()


class RecordingMailbox:
    """A mailbox of `count` messages that notes which fetch threads were alive at logout."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.alive_at_logout: list[threading.Thread] | None = None

    def status(self, folder: str) -> FolderStatus:
        return FolderStatus(1, self.count + 1, self.count)

    def select(self, folder: str) -> FolderStatus:
        return FolderStatus(1, self.count + 1, self.count)

    def uids_since(self, day: date) -> list[int]:
        return list(range(1, self.count + 1))

    def fetch(self, uids: Sequence[int], max_bytes: int) -> Iterator[Fetched]:
        for uid in uids:
            yield Fetched(uid, raw(uid), 100, max_bytes)

    def logout(self) -> None:
        self.alive_at_logout = fetching_threads()


def test_the_thread_has_ended_when_an_error_reaches_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`once` and the service log out as a failed cycle's error passes: the error's traceback
    holds the cycle's generators, so the thread must end before it leaves the sync."""
    monkeypatch.setattr(sync, "TRIAGE_MESSAGES", 2)
    store = Store.open(tmp_path / "state.db")
    mailbox = RecordingMailbox(40)

    def handle(store: Store, folder: FolderRef, message: Message, row: int, now: datetime) -> None:
        if message.message_id == "<m3@example.com>":
            raise StorageError("the disk is full")

    try:
        sync_folder(mailbox, store, INBOX, SyncConfig(), NOW, handle)  # type: ignore[arg-type]
    except StorageError:
        mailbox.logout()  # as Runner.cycle does, with the error (and its traceback) in hand
    finally:
        store.close()
    assert mailbox.alive_at_logout == []


def test_a_long_sync_says_how_far_it_got(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sync, "TRIAGE_MESSAGES", 2)
    monkeypatch.setattr(sync, "PROGRESS_FROM", 10)
    monkeypatch.setattr(sync, "PROGRESS_EVERY", 4)
    store = Store.open(tmp_path / "state.db")
    try:
        sent = FolderRef("sent", "Sent", "config")
        with caplog.at_level(logging.INFO, logger="nextround.daemon.sync"):
            for folder, count in ((INBOX, 12), (sent, 9)):  # 9: too few to say anything
                mailbox: Any = RecordingMailbox(count)
                sync_folder(mailbox, store, folder, SyncConfig(), NOW)
    finally:
        store.close()
    said = [record.getMessage() for record in caplog.records if record.name == sync.__name__]
    assert said == [
        "INBOX: 12 new messages to read",
        "INBOX: 4 of 12 read",
        "INBOX: 8 of 12 read",
    ]
