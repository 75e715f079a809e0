"""Settled mail: ruled out as job mail, in no conversation. A run of it is recorded in one
statement per table, and must be recorded exactly as the one-message-at-a-time path records
it; a storage failure on the way loses nothing."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nextround.classifier.message import Address, Message
from nextround.classifier.verdict import Analysis
from nextround.daemon import store as store_module
from nextround.daemon.engine import REPORTED_OTHER, CycleReport
from nextround.daemon.errors import StorageError
from nextround.daemon.mailbox import Fetched
from nextround.daemon.store import Store
from nextround.daemon.sync import CycleResult, FolderRef, FolderResult, Settled, _process_batch

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
INBOX = FolderRef("inbox", "INBOX", "config")
SAM = Address("Sam Lee", "sam.lee@globexhq.com")


def settled(n: int, *, writer: Address | None = SAM, key: str = "globexhq") -> Settled:
    message = Message(
        message_id=f"<m{n}@example.test>",
        subject=f"Newsletter {n}",
        from_=writer,
        date=datetime(2026, 11, n % 28 + 1, 8, tzinfo=UTC) if n % 3 else None,
    )
    analysis = Analysis(
        label="other", is_rejection=False, score=0.01 * n, stage=None, company=None,
        role=None, reply_to=None, no_feedback_policy=False,
    )  # fmt: skip
    contacts = ((writer, key, True),) if writer else ()
    return Settled(message, analysis, contacts)


def fetched(n: int) -> Fetched:
    return Fetched(uid=n, raw=b"", size=100 + n, limit=10_000_000)


def table(store: Store, name: str) -> list[tuple[Any, ...]]:
    order = "uid" if name == "messages" else "email"
    rows = store.connection.execute(f"SELECT * FROM {name} ORDER BY {order}").fetchall()  # noqa: S608
    return [row[1:] if name == "messages" else row for row in rows]  # messages: not the id


def test_a_run_is_recorded_as_message_by_message(tmp_path: Path) -> None:
    items = [settled(n) for n in range(1, 6)]
    items[2] = settled(3, writer=Address("", "jo@initech.example"), key="initech")
    items[3] = settled(4, writer=None)
    one_by_one, at_once = Store.open(tmp_path / "a.db"), Store.open(tmp_path / "b.db")
    with one_by_one.transaction():
        for n, item in enumerate(items, 1):
            row = one_by_one.record_message("INBOX", 7, n, 100 + n, NOW, item.message)
            one_by_one.save_analysis(row, item.analysis)
            for address, key, guessed in item.contacts:
                one_by_one.remember_contact(
                    address, key, item.message.message_id, NOW, guessed=guessed
                )
    with at_once.transaction():
        at_once.record_settled(
            "INBOX",
            7,
            [(n, 100 + n, i.message, i.analysis, i.contacts) for n, i in enumerate(items, 1)],
            NOW,
        )
    assert table(at_once, "messages") == table(one_by_one, "messages")
    assert table(at_once, "contacts") == table(one_by_one, "contacts")
    assert len(table(at_once, "messages")) == 5


def test_a_guess_never_replaces_a_company_read_from_a_text(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    with store.transaction():
        store.remember_contact(SAM, "globex", "<a@x>", NOW)
        store.record_settled(
            "INBOX", 7, [(1, 10, settled(1).message, settled(1).analysis, settled(1).contacts)], NOW
        )
    assert store.earlier_contacts("globex", []) == [SAM]


def test_settled_and_handled_mail_of_one_run_are_recorded_in_order(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    handled: list[str] = []

    def handle(store: Store, folder: FolderRef, message: Message, row: int, now: datetime) -> None:
        handled.append(message.message_id)

    batch = [fetched(n) for n in range(1, 7)]
    ready: list[Message | Settled | None] = [
        settled(1),
        settled(2),
        settled(3).message,
        settled(4),
        None,
        settled(6),
    ]
    result = FolderResult(INBOX)
    _process_batch(store, INBOX, 7, batch, ready, NOW, handle, result, True)
    assert handled == ["<m3@example.test>"]  # only what was not settled reaches the handler
    assert (result.recorded, result.read_quickly, result.unparsable) == (5, 5, 1)
    statuses = store.connection.execute("SELECT uid, status, label FROM messages ORDER BY uid")
    assert [row[:2] for row in statuses] == [
        (1, "parsed"),
        (2, "parsed"),
        (3, "parsed"),
        (4, "parsed"),
        (5, "unparsable"),
        (6, "parsed"),
    ]
    position = store.position("INBOX")
    assert position is not None and position.last_uid == 6


def test_a_storage_failure_in_a_settled_run_records_none_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path / "state.db")
    with store.transaction():
        store.set_position("INBOX", "inbox", 7, 0, True, NOW)

    real = store_module.storage_errors

    @contextlib.contextmanager
    def full_disk(doing: str) -> Iterator[None]:
        with real(doing):
            if doing == "recording messages":  # at the seam the fault harness uses
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            yield

    monkeypatch.setattr(store_module, "storage_errors", full_disk)
    batch = [fetched(n) for n in range(1, 4)]
    ready: list[Message | Settled | None] = [settled(1).message, settled(2), settled(3)]
    with pytest.raises(StorageError, match="No space left"):
        _process_batch(store, INBOX, 7, batch, ready, NOW, None, FolderResult(INBOX), True)
    # The run is one transaction: the message before the failure is not kept either, and the
    # position has not moved, so the next cycle fetches all three again.
    assert store.connection.execute("SELECT count(*) FROM messages").fetchone() == (0,)
    position = store.position("INBOX")
    assert position is not None and position.last_uid == 0


def test_a_cycle_report_keeps_all_job_mail_and_a_bounded_number_of_others() -> None:
    report = CycleReport(sync=CycleResult(now=NOW))
    rejection = replace(settled(0).analysis, label="rejection", is_rejection=True)
    for n in range(REPORTED_OTHER + 50):
        report.saw(settled(n).message, settled(n).analysis)
        if n % 60 == 0:
            report.saw(settled(n).message, rejection)
    assert report.other == REPORTED_OTHER + 50 and report.unlisted == 50
    assert sum(a.job_mail for _, a in report.analyses) == 3  # every rejection is kept
    assert len(report.analyses) == REPORTED_OTHER + 3
    assert "3 rejection(s)" in report.summary()
