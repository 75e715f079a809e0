"""One sync cycle: fetch only what is new in each watched folder, parse it, record it.

Position is kept per (folder, UIDVALIDITY, last UID). A cycle with nothing new costs one
STATUS per folder. The first run looks back `backfill_days` only. After a UIDVALIDITY change,
messages are re-identified by Message-ID so none is processed twice.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import traceback
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from nextround.classifier.message import Message
from nextround.classifier.verdict import Analysis
from nextround.daemon import stopping
from nextround.daemon.config import Config, SyncConfig
from nextround.daemon.errors import (
    FolderError,
    MailboxError,
    MessageParseError,
    NextroundError,
    RefusedError,
    StorageError,
    UnreadableError,
)
from nextround.daemon.mailbox import Fetched, Mailbox, choose_folder, choose_folders
from nextround.daemon.parse import header_message_id, parse_message
from nextround.daemon.store import Contact, Store

logger = logging.getLogger(__name__)

# Called inside the transaction that records the message: whatever it writes to the store
# commits together with the message and the new sync position.
# Arguments: the store, the folder, the parsed message, its row id in `messages`, and now.
Handler = Callable[[Store, "FolderRef", Message, int, datetime], None]


@dataclass(frozen=True)
class Settled:
    """A message triage settled with nothing left to do but record it: its analysis, and its
    writers to remember. A run of them is recorded in one statement (`Store.record_settled`)
    instead of a handler call and five statements each: most of a first sync's mail."""

    message: Message
    analysis: Analysis
    contacts: tuple[Contact, ...] = ()


class Triage(Protocol):
    """Reads the fetched batches cheaply (headers and the start of the text) and yields each
    batch with, per message, the Message as read when that is all it needs, Settled when
    nothing but recording it is left, or None: a full parse. Mail-parser is most of a first
    sync's time, and most mail needs no more than this. It may read ahead of the cycle;
    `count` is how many messages the batches hold in all."""

    def __call__(
        self, store: Store, folder: FolderRef, batches: Iterator[list[Fetched]], count: int
    ) -> Triaged: ...


Ready = Message | Settled | None
Triaged = Generator[tuple[list[Fetched], list[Ready]], None, None]


# Messages triaged together: bounded by count and by bytes, so memory stays bounded.
# A message the server will not give is recorded as failed, and passed, only after this
# many cycles over this long; over a day if the server gave no other message meanwhile.
REFUSED_CYCLES = 3
REFUSED_FOR = timedelta(hours=1)
REFUSED_UNWITNESSED_FOR = timedelta(hours=24)
TRIAGE_MESSAGES = 200
TRIAGE_BYTES = 16_000_000

# A sync of this many messages says how far it got every PROGRESS_EVERY: a first run over a
# slow server takes minutes, and nothing else is logged meanwhile.
PROGRESS_FROM = 1_000
PROGRESS_EVERY = 5_000

WATCHED_ROLES = ("inbox", "sent")
T = TypeVar("T")


@dataclass(frozen=True)
class FolderRef:
    role: str  # inbox | drafts | sent
    name: str
    how: str  # config | special-use | common name


@dataclass
class FolderResult:
    folder: FolderRef
    new: int = 0
    recorded: int = 0
    unparsable: int = 0
    failed: int = 0
    rebound: int = 0
    read_quickly: int = 0  # recorded as triage read them, without a full parse
    uidvalidity_changed: bool = False

    def add(self, other: FolderResult) -> None:
        """Count in what `other` recorded for the same folder."""
        self.recorded += other.recorded
        self.unparsable += other.unparsable
        self.failed += other.failed
        self.read_quickly += other.read_quickly


@dataclass
class CycleResult:
    now: datetime
    folders: list[FolderResult] = field(default_factory=list)

    @property
    def recorded(self) -> int:
        return sum(result.recorded for result in self.folders)

    def summary(self) -> str:
        parts = [
            f"{result.folder.role} +{result.recorded}"
            + (f" ({result.unparsable} unparsable)" if result.unparsable else "")
            for result in self.folders
        ]
        return ", ".join(parts) or "nothing watched"


def resolve_folders(mailbox: Mailbox, config: Config) -> dict[str, FolderRef]:
    """INBOX, Drafts and Sent: config override, then SPECIAL-USE, then common names."""
    listed = mailbox.list_folders()
    names = {folder.name for folder in listed}
    inbox = config.imap.inbox
    if inbox not in names and inbox.upper() != "INBOX":
        raise FolderError(f"[imap] inbox = {inbox!r}: no such folder on the server")
    folders = {"inbox": FolderRef("inbox", inbox, "config")}
    drafts = choose_folder("drafts", listed, config.imap.drafts)
    folders["drafts"] = FolderRef("drafts", drafts.name, drafts.how)
    # Every folder marked \Sent is watched: "sent" is the first, the others "sent:<name>".
    for index, sent in enumerate(choose_folders("sent", listed, config.imap.sent)):
        key = "sent" if index == 0 else f"sent:{sent.name}"
        folders[key] = FolderRef("sent", sent.name, sent.how)
    return folders


def watched(folders: dict[str, FolderRef], role: str) -> list[FolderRef]:
    """The folders of `role` (inbox, sent): a server may mark more than one \\Sent."""
    return [folder for folder in folders.values() if folder.role == role]


def run_cycle(
    mailbox: Mailbox,
    store: Store,
    folders: dict[str, FolderRef],
    sync: SyncConfig,
    now: datetime,
    handle: Handler | None = None,
    triage: Triage | None = None,
) -> CycleResult:
    result = CycleResult(now=now)
    for role in WATCHED_ROLES:
        for folder in watched(folders, role):
            result.folders.append(sync_folder(mailbox, store, folder, sync, now, handle, triage))
    return result


def sync_folder(
    mailbox: Mailbox,
    store: Store,
    folder: FolderRef,
    sync: SyncConfig,
    now: datetime,
    handle: Handler | None = None,
    triage: Triage | None = None,
) -> FolderResult:
    result = FolderResult(folder)
    position = store.position(folder.name)
    status = mailbox.status(folder.name)
    if position and position.backfilled and position.uidvalidity == status.uidvalidity:
        if status.uidnext - 1 <= position.last_uid:
            # Nothing new: one STATUS was all it took. When it was looked at is how late a
            # sent copy that comes next may have reached the folder (`Engine.on_sent`).
            with store.transaction():
                store.looked_at(folder.name, now)
            return result
        selected = mailbox.select(folder.name)
        if selected.uidvalidity == position.uidvalidity:
            validity = selected.uidvalidity
            # Past the position only a message the server would not give can be recorded
            # (`_process`): it is not asked for again.
            known = store.known_uids(folder.name, validity, above=position.last_uid)
            uids = [uid for uid in mailbox.uids_after(position.last_uid) if uid not in known]
            result.new = len(uids)
            _process(mailbox, store, folder, validity, uids, sync, now, result, handle, triage)
            settled = max([selected.uidnext - 1, position.last_uid, *uids])
            with store.transaction():
                store.set_position(
                    folder.name, folder.role, selected.uidvalidity, settled, True, now
                )
            return result
    return _backfill(mailbox, store, folder, sync, now, result, handle, triage)


def _backfill(
    mailbox: Mailbox,
    store: Store,
    folder: FolderRef,
    sync: SyncConfig,
    now: datetime,
    result: FolderResult,
    handle: Handler | None,
    triage: Triage | None,
) -> FolderResult:
    """First run, an interrupted first run, or a UIDVALIDITY change."""
    position = store.position(folder.name)
    selected = mailbox.select(folder.name)
    validity = selected.uidvalidity
    if position is None or position.uidvalidity != validity:
        if position is not None:
            result.uidvalidity_changed = True
            logger.warning(
                "UIDVALIDITY of %s changed from %d to %d: re-identifying messages by Message-ID",
                folder.name,
                position.uidvalidity,
                validity,
            )
        with store.transaction():
            store.set_position(folder.name, folder.role, validity, 0, False, now)
    since = (now - timedelta(days=sync.backfill_days)).date()
    candidates = mailbox.uids_since(since)
    known = store.known_uids(folder.name, validity)
    uids = [uid for uid in candidates if uid not in known]
    if uids and _has_earlier_generation(store, folder.name, validity):
        headers = mailbox.fetch_headers(uids)
        fresh = []
        for uid in uids:
            message_id = header_message_id(headers.get(uid, b""))
            with store.transaction():
                if store.rebind(folder.name, message_id, validity, uid):
                    result.rebound += 1
                    continue
            fresh.append(uid)
        uids = fresh
    result.new = len(uids)
    _process(
        mailbox, store, folder, validity, uids, sync, now, result, handle, triage, advance=False
    )
    settled = max([selected.uidnext - 1, *candidates, 0])
    with store.transaction():
        store.set_position(folder.name, folder.role, validity, settled, True, now)
    if result.uidvalidity_changed:
        logger.warning(
            "%s re-synced: %d messages known by Message-ID, %d new",
            folder.name,
            result.rebound,
            result.new,
        )
    return result


def _has_earlier_generation(store: Store, folder: str, validity: int) -> bool:
    row = store.connection.execute(
        "SELECT 1 FROM messages WHERE folder = ? AND uidvalidity != ? LIMIT 1", (folder, validity)
    ).fetchone()
    return row is not None


def _process(
    mailbox: Mailbox,
    store: Store,
    folder: FolderRef,
    validity: int,
    uids: Sequence[int],
    sync: SyncConfig,
    now: datetime,
    result: FolderResult,
    handle: Handler | None,
    triage: Triage | None,
    *,
    advance: bool = True,
) -> None:
    if not uids:
        return
    gone = threading.Event()  # set when the cycle stops taking batches
    batches = fetched_ahead(_batches(mailbox.fetch(uids, sync.max_message_bytes), gone), gone)
    triaged = _untriaged(batches) if triage is None else triage(store, folder, batches, len(uids))
    total, done = len(uids), 0
    loud = total >= PROGRESS_FROM
    if loud:
        logger.info("%s: %s new messages to read", folder.name, f"{total:,}")
    # Closed in reverse: triage's read-ahead, then the fetch thread, joined here, before an
    # error reaches a caller that logs out (its traceback would keep the thread's generator).
    try:
        with contextlib.closing(batches), contextlib.closing(triaged):
            for batch, ready in triaged:
                _process_batch(store, folder, validity, batch, ready, now, handle, result, advance)
                before, done = done, done + len(batch)
                if loud and done < total and done // PROGRESS_EVERY > before // PROGRESS_EVERY:
                    logger.info("%s: %s of %s read", folder.name, f"{done:,}", f"{total:,}")
    except UnreadableError as error:
        # The mail before it that this cycle did not record is fetched again. Our own stop
        # shuts the connection too: that says nothing of the message.
        if not stopping.STOP.is_set() and _refused_for_good(
            store, folder, validity, error.uid, str(error), now, witnessed=error.witnessed
        ):
            with store.transaction():
                _record_refused(store, folder, validity, error.uid, 0, str(error), now)
            result.failed += 1
        raise


def _untriaged(batches: Iterator[list[Fetched]]) -> Triaged:
    for batch in batches:
        yield batch, [None] * len(batch)


def _process_batch(
    store: Store,
    folder: FolderRef,
    validity: int,
    batch: list[Fetched],
    ready: list[Ready],
    now: datetime,
    handle: Handler | None,
    result: FolderResult,
    advance: bool,
) -> None:
    start = 0
    while start < len(batch):
        if ready[start] is None:
            _process_one(
                store, folder, validity, batch[start], now, handle, result, advance,
                atomic=store.transaction,
            )  # fmt: skip
            start += 1
        else:
            # Mail read quickly is committed a run at a time, each message under its own
            # savepoint (or, settled mail, a run of it at once): a commit per message was a
            # fifth of a first sync's time.
            end = next((i for i in range(start, len(batch)) if ready[i] is None), len(batch))
            done = FolderResult(folder)
            with store.transaction():
                run = zip(batch[start:end], ready[start:end], strict=True)
                for _, grouped in itertools.groupby(run, lambda item: isinstance(item[1], Settled)):
                    group = list(grouped)
                    settled = [(got, item) for got, item in group if isinstance(item, Settled)]
                    if settled:  # a group is all Settled or none
                        _record_settled(store, folder, validity, settled, now, done, advance)
                        continue
                    for fetched, message in group:
                        assert isinstance(message, Message)  # noqa: S101 - grouped so above
                        _process_one(
                            store, folder, validity, fetched, now, handle, done, advance,
                            message, atomic=store.savepoint,
                        )  # fmt: skip
            result.add(done)
            start = end
        stopping.check()  # after the commit: a stop never leaves a message half-done


def _record_settled(
    store: Store,
    folder: FolderRef,
    validity: int,
    settled: list[tuple[Fetched, Settled]],
    now: datetime,
    result: FolderResult,
    advance: bool,
) -> None:
    """Inside the caller's transaction: a storage error fails the run, which is fetched
    again; nothing else can fail here (no handler is called)."""
    store.record_settled(
        folder.name,
        validity,
        [
            (fetched.uid, fetched.size, item.message, item.analysis, item.contacts)
            for fetched, item in settled
        ],
        now,
    )
    if advance:
        store.set_position(folder.name, folder.role, validity, settled[-1][0].uid, True, now)
    result.recorded += len(settled)
    result.read_quickly += len(settled)


def fetched_ahead(
    items: Iterator[T], gone: threading.Event | None = None
) -> Generator[T, None, None]:
    """`items`, taken by a thread of its own one ahead of the caller: the server sends the
    next batch while the cycle records this one (it waited for each before: over a quarter
    of a first sync's time). Until this generator ends (done, failed or closed) only that
    thread touches what `items` reads, the connection; it ends with it, after the item in hand.
    `gone` is set then, for `items` to stop early. An error it meets is raised here, after
    the items before it, as if met here."""
    # An item as a 1-tuple, then None at the end or the error that ended it.
    handed: queue.SimpleQueue[tuple[T] | BaseException | None] = queue.SimpleQueue()
    room = threading.Semaphore(1)  # one item taken ahead of the caller's, no more (memory)
    gone = gone or threading.Event()

    def take() -> None:
        try:
            while True:
                while not room.acquire(timeout=0.1):
                    if gone.is_set():
                        return
                if gone.is_set():
                    return
                try:
                    item = next(items)
                except StopIteration:
                    handed.put(None)
                    return
                handed.put((item,))
        except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
            handed.put(error)

    thread = threading.Thread(target=take, name="nextround-fetch", daemon=True)
    thread.start()
    try:
        while (got := handed.get()) is not None:
            if isinstance(got, BaseException):
                raise got
            room.release()  # the next is fetched while the caller works on this one
            yield got[0]
    finally:
        gone.set()
        thread.join()
        if isinstance(items, Generator):
            items.close()


def _batches(
    fetched: Iterable[Fetched], gone: threading.Event | None = None
) -> Iterator[list[Fetched]]:
    """The fetched messages in batches bounded by count and bytes. Once `gone` is set it asks
    for no more: a stop waits for the FETCH in flight, not for a batch to fill."""
    batch: list[Fetched] = []
    size = 0
    for item in fetched:
        batch.append(item)
        size += len(item.raw)
        if len(batch) >= TRIAGE_MESSAGES or size >= TRIAGE_BYTES:
            yield batch
            batch, size = [], 0
        if gone is not None and gone.is_set():
            return
    if batch:
        yield batch


def with_thread(message: Message, fetched: Fetched) -> Message:
    """The message with the server's conversation id, when the server keeps one."""
    if not fetched.thread:
        return message
    return replace(message, conversation=fetched.thread)


def _refused_for_good(
    store: Store,
    folder: FolderRef,
    validity: int,
    uid: int,
    reason: str,
    now: datetime,
    *,
    witnessed: bool,
) -> bool:
    """One more cycle in which the server would not give this message; True once that has
    lasted REFUSED_CYCLES cycles over REFUSED_FOR at least, or over REFUSED_UNWITNESSED_FOR
    when the server gave no other message either (its trouble, perhaps). A server's passing
    trouble (a lock, a restart) fails cycles for a while: it must not cost a message. Until
    then the cycle stops there, and the mail after it waits."""
    with store.transaction():
        times, since = store.note_refusal(folder.name, validity, uid, reason, now)
    span = REFUSED_FOR if witnessed else REFUSED_UNWITNESSED_FOR
    return times >= REFUSED_CYCLES and now - since >= span


def _record_refused(
    store: Store, folder: FolderRef, validity: int, uid: int, size: int, reason: str, now: datetime
) -> None:
    """A message the server would not give, recorded as failed with its reason: the cycles go
    on past it, and `status --folders` counts and shows it."""
    logger.warning("%s UID %d recorded as failed: the server would not give it", folder.name, uid)
    store.record_message(
        folder.name,
        validity,
        uid,
        size,
        now,
        message_id=f"<uid-{uid}-refused@nextround.invalid>",
        error=f"the server would not give it: {reason}",
        status="failed",
    )


def _process_one(
    store: Store,
    folder: FolderRef,
    validity: int,
    fetched: Fetched,
    now: datetime,
    handle: Handler | None,
    result: FolderResult,
    advance: bool,
    triaged: Message | None = None,
    *,
    atomic: Callable[[], AbstractContextManager[object]],
) -> None:
    """Record one message and hand it to `handle` inside `atomic` (a transaction, or a
    savepoint within the caller's); a message that fails is recorded as failed instead."""

    def settle() -> None:
        if advance:
            store.set_position(folder.name, folder.role, validity, fetched.uid, True, now)

    if fetched.refused:
        uid, reason, witnessed = fetched.uid, fetched.refused, fetched.witnessed
        if not _refused_for_good(store, folder, validity, uid, reason, now, witnessed=witnessed):
            raise RefusedError(
                f"{folder.name} UID {fetched.uid}: the server would not give it "
                f"({fetched.refused}); asked again next cycle"
            )
        with atomic():
            _record_refused(
                store, folder, validity, fetched.uid, fetched.size, fetched.refused, now
            )
            settle()
        result.failed += 1
        return
    try:
        message = triaged or with_thread(
            parse_message(fetched.raw, truncated=fetched.truncated), fetched
        )
    except MessageParseError as error:
        message_id = header_message_id(fetched.raw)
        logger.warning(
            "skipping unparsable message %s (%s UID %d): %s",
            message_id,
            folder.name,
            fetched.uid,
            error,
        )
        with atomic():
            store.record_message(
                folder.name,
                validity,
                fetched.uid,
                fetched.size,
                now,
                message_id=message_id,
                error=str(error),
            )
            settle()
        result.unparsable += 1
        return
    try:
        with atomic():
            row_id = store.record_message(
                folder.name, validity, fetched.uid, fetched.size, now, message
            )
            if handle is not None:
                handle(store, folder, message, row_id, now)
            settle()
        result.recorded += 1
        result.read_quickly += triaged is not None
    except (MailboxError, StorageError):
        raise  # the cycle stops here; the message was not committed and is fetched again
    except (NextroundError, Exception) as error:  # noqa: BLE001 - one bad message never stops the cycle
        logger.error(
            "failed to process %s (%s UID %d): %s\n%s",
            message.message_id,
            folder.name,
            fetched.uid,
            error,
            traceback.format_exc(),
        )
        with atomic():
            store.record_message(
                folder.name,
                validity,
                fetched.uid,
                fetched.size,
                now,
                message_id=message.message_id,
                error=f"processing failed: {type(error).__name__}: {error}",
                status="failed",
            )
            settle()
        result.failed += 1
