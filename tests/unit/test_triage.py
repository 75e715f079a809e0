"""Triage: how new mail is read. A rejection must never be ruled out: it is parsed in full and
classified on all its text; ordinary mail is decided on its start; sent copies are read for
their headers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from nextround.classifier.corpus import load_corpus
from nextround.classifier.inference import Prediction, RejectionModel, text_start
from nextround.classifier.message import Address
from nextround.classifier.persist import load_model
from nextround.daemon import applications as apps
from nextround.daemon.config import DEFAULT_THRESHOLD, Config, parse_config
from nextround.daemon.engine import HELPERS, Engine
from nextround.daemon.lifecycle import State
from nextround.daemon.mailbox import Fetched
from nextround.daemon.parse import header_message_id, parse_message, parse_quick
from nextround.daemon.store import Store
from nextround.daemon.sync import FolderRef, FolderResult, Ready, Settled, _process_batch
from nextround.daemon.training import MODEL_FILE
from nextround.daemon.triage import (
    TRIAGE_TEXT,
    Helper,
    Raw,
    floor,
    job_chance,
    prefix_predictions,
    read,
    read_fully,
    screen_floor,
)

INBOX, SENT = FolderRef("inbox", "INBOX", "config"), FolderRef("sent", "Sent", "config")


@pytest.fixture(scope="module")
def engine(trained_model: Path) -> Engine:
    model: RejectionModel = load_model(trained_model / MODEL_FILE)
    model.threshold = DEFAULT_THRESHOLD
    document = {
        "imap": {"host": "imap.example.org", "username": "alex@example.org"},
        "identity": {"name": "Alex Doe", "email": "alex@example.org"},
    }
    config: Config = parse_config(document, Path("/nonexistent/config.toml"))
    return Engine(config, model)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "state.db")


def eml(sender: str, subject: str, body: str, **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "Alex Doe <alex@example.org>"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.test")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message.as_bytes()


REJECTION = eml(
    "Priya Raman <priya.raman@brightloom.io>",
    "Your application for Senior Data Engineer",
    "Hi Alex,\n\nThank you for interviewing with us. After careful consideration we have "
    "decided to move forward with another candidate.\n\nBest,\nPriya\n",
)
CLOSED = eml(
    "Talent <talent@fernhill.example>",
    "Site Reliability Engineer",
    "Hi Alex,\n\nThe Site Reliability Engineer position has been cancelled because of a hiring "
    "freeze, so we are not reviewing applications for it.\n\nThe Fernhill Team\n",
)


def fetched(raws: list[bytes]) -> list[Fetched]:
    """The messages as a sync fetches them, whole."""
    return [Fetched(uid, raw, len(raw), 10_000_000) for uid, raw in enumerate(raws, 1)]


def triaged(engine: Engine, store: Store, folder: FolderRef, raws: list[bytes]) -> list[str]:
    """For each message, how triage read it: "full", "quick", "settled" (quick, and nothing
    left to do but record it), or "left" to the full parse."""
    batch = fetched(raws)
    [(same, ready)] = list(engine.triage(store, folder, iter([batch]), len(batch)))
    assert same == batch
    out = []
    for message in ready:
        if isinstance(message, Settled):
            assert message.message.message_id not in engine.decided
            out.append("settled")
            continue
        decided = None if message is None else engine.decided.get(message.message_id)
        assert message is None or folder == SENT or (decided and decided[0] is message)
        out.append(
            "left" if message is None else "full" if decided and decided[1].full else "quick"
        )
    return out


# Found in review: the quick reading took the empty text/plain part for the text.
EMPTY_TEXT_REJECTION = (
    b"From: Priya Raman <priya.raman@brightloom.io>\r\nTo: Alex Doe <alex@example.org>\r\n"
    b"Subject: Your application for Senior Data Engineer\r\nMessage-ID: <r1@brightloom.io>\r\n"
    b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n--b1\r\n'
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n\r\n--b1\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hi Alex,</p><p>Thank you for "
    b"interviewing with us. After careful consideration we have decided to move forward with "
    b"another candidate.</p><p>Best,<br>Priya</p>\r\n--b1--\r\n"
)


@pytest.mark.parametrize(
    ("raw", "label", "company"),
    [
        (REJECTION, "rejection", "Brightloom"),
        (CLOSED, "closed", "Fernhill"),
        (EMPTY_TEXT_REJECTION, "rejection", "Brightloom"),
    ],
    ids=["rejection", "closed", "empty-text-part"],
)
def test_job_mail_is_parsed_and_classified_in_full(
    engine: Engine, store: Store, raw: bytes, label: str, company: str
) -> None:
    assert triaged(engine, store, INBOX, [raw]) == ["full"]
    [(message, reading)] = engine.decided.values()
    assert message == parse_message(raw)  # what the cycle's own full parse reads
    assert reading.prediction is not None and reading.prediction.label == label
    assert reading.extracted is not None and reading.extracted[0] == company


def test_every_corpus_rejection_reaches_the_full_parse(engine: Engine) -> None:
    """On its first TRIAGE_TEXT characters, no rejection or closed position of the shipped
    corpus is ruled out, by the screen or by the classifier. (The model has seen these mails:
    this guards the prefix and the floors; bench/classify_eval.py measures the margin on mail
    it has not seen.)"""
    job = [example.message for example in load_corpus() if example.label != "other"]
    predictions = prefix_predictions(engine.model, job, engine.identity.email)
    lowest = floor(engine.model.threshold)
    assert len(job) > 1000
    ruled_out = [m.subject for m, p in zip(job, predictions, strict=True) if job_chance(p) < lowest]
    assert not ruled_out, ruled_out[:5]


def test_what_the_screen_passes_is_classified_exactly_as_predict_classifies_it(
    engine: Engine,
) -> None:
    """The classifier reuses the screen's vectors of a batch: its verdicts must be the very
    numbers `predict` gives for the same starts."""
    starts = [text_start(example.message) for example in load_corpus()[::10]]
    lowest = screen_floor(engine.model.threshold)
    chances, classified = engine.model.screened(starts, lowest, [engine.identity.email])
    passed = [index for index, chance in enumerate(chances) if chance >= lowest]
    assert sorted(classified) == passed and 50 < len(passed) < len(starts)
    expected = engine.model.predict([starts[i] for i in passed], [engine.identity.email])
    assert [classified[i] for i in passed] == expected


def test_the_screen_rules_out_ordinary_mail_and_leaves_job_mail_to_the_classifier(
    engine: Engine,
) -> None:
    newsletter = parse_message(
        eml(
            "Garden Weekly <news@gardenweekly.example>",
            "Ten links about tomatoes",
            "This week: compost, ladders and a tomato that grew through a fence.\n" * 40,
            List_Unsubscribe="<mailto:leave@gardenweekly.example>",
        )
    )
    rejection = parse_message(REJECTION)
    chances = engine.model.job_chances([newsletter, rejection])
    assert chances[0] < screen_floor(engine.model.threshold) <= chances[1]
    ruled_out, classified = prefix_predictions(
        engine.model, [newsletter, rejection], engine.identity.email
    )
    # Ruled out by the screen: other mail, scored with the screen's chance of job mail.
    assert ruled_out.label == "other" and ruled_out.score == round(float(chances[0]), 4)
    assert set(ruled_out.probabilities) == {"other"}
    # Left to the classifier, which reads the same start of the text.
    assert classified.probabilities.keys() == {"rejection", "closed", "other"}
    [expected] = engine.model.predict([rejection], [engine.identity.email])
    assert classified.label == "rejection"
    assert classified == expected  # the screen's vectors reused: the very same numbers


def test_ordinary_mail_is_decided_on_the_start_of_its_text(engine: Engine, store: Store) -> None:
    raw = eml(
        "Garden Weekly <news@gardenweekly.example>",
        "Ten links about tomatoes",
        "This week: compost, ladders and a tomato that grew through a fence.\n" * 40,
        List_Unsubscribe="<mailto:leave@gardenweekly.example>",
        In_Reply_To="<earlier@gardenweekly.example>",  # a conversation nextround does not follow
    )
    [reading] = read([(raw, False)], engine.model, engine.identity.email)
    assert reading is not None and reading.prediction is not None and not reading.full
    assert reading.prediction.label == "other"
    assert set(reading.prediction.probabilities) == {"other"}  # the screen ruled it out
    assert reading.message.text == (parse_quick(raw) or reading.message).text[:TRIAGE_TEXT]
    # Nothing is left to do with it but record it: settled, with that verdict.
    [(_, [settled])] = list(engine.triage(store, INBOX, iter([fetched([raw])]), 1))
    assert isinstance(settled, Settled) and not engine.decided
    assert settled.analysis.label == "other" and not settled.analysis.job_mail
    assert settled.analysis.score == reading.prediction.score
    assert settled.message.text == reading.message.text
    assert settled.contacts == ()  # a list's address is nobody to write to
    lunch = fetched([eml("Sam Lee <sam.lee@globexhq.com>", "Lunch?", "Shall we meet at 1?\n")])
    [(_, [personal])] = list(engine.triage(store, INBOX, iter([lunch]), 1))
    assert isinstance(personal, Settled)
    [(writer, key, guessed)] = personal.contacts  # filed under a guess from the domain
    assert (writer.email, key, guessed) == ("sam.lee@globexhq.com", "globexhq", True)


def test_other_mail_read_in_full_is_read_for_a_company_only_while_job_like() -> None:
    message = parse_message(
        eml(
            "Sam Lee <sam.lee@globexhq.com>",
            "Data Analyst role",
            "Hi Alex,\n\nThanks for your interest in joining Initech as a Data Analyst. Could we "
            "talk on Monday?\n\nSam\n",
        )
    )

    def other(job_chance: float) -> Prediction:
        return Prediction(
            label="other", is_rejection=False, score=job_chance, stage=None,
            no_feedback_policy=False,
            probabilities={"rejection": job_chance, "closed": 0.0, "other": 1 - job_chance},
        )  # fmt: skip

    writer = Address("Sam Lee", "sam.lee@globexhq.com")
    job_like = read_fully(message, other(0.3), "alex@example.org", lowest=0.1)
    assert job_like.extracted == ("Initech", None)
    assert job_like.contacts == ((writer, "initech", False),)  # read out of the text
    ruled_out = read_fully(message, other(0.05), "alex@example.org", lowest=0.1)
    assert ruled_out.full and ruled_out.extracted is None
    assert ruled_out.contacts == ((writer, "globexhq", True),)  # a guess from the domain


def test_mail_answering_one_handled_earlier_in_the_batch_is_not_settled(
    engine: Engine, store: Store
) -> None:
    """The rejection opens an application as it is handled; a ruled-out answer to it later in
    the same batch must still reach `handle`, which adds it to that application's thread."""
    rejection_id = header_message_id(REJECTION)
    body = "This week: compost, ladders and a tomato that grew through a fence.\n" * 10

    def newsletter(answers: str) -> bytes:
        return eml("Garden Weekly <news@gardenweekly.example>", "Re: tomatoes", body,
                   In_Reply_To=answers)  # fmt: skip

    answer = newsletter(rejection_id)
    batch = fetched([newsletter("<a@gardenweekly.example>"), REJECTION, answer,
                     newsletter("<b@gardenweekly.example>")])  # fmt: skip
    [(_, ready)] = list(engine.triage(store, INBOX, iter([batch]), len(batch)))
    assert [type(item).__name__ for item in ready] == ["Settled", "Message", "Message", "Settled"]
    now = datetime(2026, 11, 22, tzinfo=UTC)
    _process_batch(store, INBOX, 1, batch, ready, now, engine.handle, FolderResult(INBOX), False)
    [app] = apps.all_applications(store)
    assert app.rejection_message_id == rejection_id
    assert header_message_id(answer) in app.thread


def test_a_reply_in_a_followed_conversation_is_left_to_the_full_parse(
    engine: Engine, store: Store
) -> None:
    thanks = eml(
        "Garden Weekly <news@gardenweekly.example>",
        "Re: tomatoes",
        "Thanks, see you at the allotment.\n",
        In_Reply_To="<request@example.org>",
    )
    assert triaged(engine, store, INBOX, [thanks]) == ["settled"]
    now = datetime(2026, 11, 22, tzinfo=UTC)
    with store.transaction():
        apps.open_application(
            store, now, State.REQUESTED, rejection_message_id="<request@example.org>"
        )
    assert triaged(engine, store, INBOX, [thanks]) == ["left"]


def test_after_mail_only_the_full_parse_reads_answers_are_not_settled(
    engine: Engine, store: Store
) -> None:
    """What a message the quick reading cannot read answers is unknown until it is parsed:
    later mail of the batch in any conversation is handled one by one."""
    body = "This week: compost, ladders and a tomato that grew through a fence.\n" * 10

    def answer() -> bytes:
        return eml("Garden Weekly <news@gardenweekly.example>", "Re: tomatoes", body,
                   In_Reply_To="<a@gardenweekly.example>")  # fmt: skip

    alone = eml("Garden Weekly <news@gardenweekly.example>", "Tomatoes", body)
    raws = [answer(), b"not a mail at all\r\n", answer(), alone]
    assert triaged(engine, store, INBOX, raws) == ["settled", "left", "quick", "settled"]


def _recorded(
    engine: Engine, tmp_path: Path, raws: list[bytes], *, settle: bool, followed: bool
) -> dict[str, list[tuple[object, ...]]]:
    """Every row one batch leaves in the store: triaged, then recorded by the sync."""
    engine = Engine(engine.config, engine.model)  # a fresh one: it keeps the batch's readings
    if not settle:
        engine._settled = lambda message, reading: None  # type: ignore[method-assign]
    store = Store.open(tmp_path / f"{settle}.db")
    now = datetime(2026, 11, 22, tzinfo=UTC)
    if followed:
        with store.transaction():
            apps.open_application(
                store, now, State.REQUESTED, rejection_message_id="<request@example.org>"
            )
    batch = fetched(raws)
    [(_, ready)] = list(engine.triage(store, INBOX, iter([batch]), len(batch)))
    assert any(isinstance(item, Settled) for item in ready) == settle
    _process_batch(store, INBOX, 1, batch, ready, now, engine.handle, FolderResult(INBOX), True)
    tables = ("messages", "contacts", "applications", "application_events")
    rows = {
        table: store.connection.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608
        for table in tables
    }
    rows["messages"] = [row[1:] for row in rows["messages"]]  # not the row id
    return rows


@pytest.mark.parametrize("followed", [False, True], ids=["new", "followed"])
def test_settled_mail_leaves_the_store_as_the_handler_leaves_it(
    engine: Engine, tmp_path: Path, followed: bool
) -> None:
    body = "This week: compost, ladders and a tomato that grew through a fence.\n" * 10
    rejection_id = header_message_id(REJECTION)

    def mail(sender: str = "Garden Weekly <news@gardenweekly.example>", **headers: str) -> bytes:
        return eml(sender, "Re: tomatoes", body, **headers)

    raws = [
        mail(),
        mail("Sam Lee <sam.lee@globexhq.com>"),
        mail("Alex Doe <alex@example.org>"),  # the user's own
        mail(In_Reply_To="<request@example.org>"),  # followed, in the second case
        mail("Sam Lee <sam.lee@globexhq.com>", References="<request@example.org>"),
        REJECTION,
        mail(In_Reply_To=rejection_id),
        mail(References=f"<x@example.org> {rejection_id}"),
        mail("Jo Park <jo@initech.example>", In_Reply_To="<elsewhere@initech.example>"),
    ]
    settled = _recorded(engine, tmp_path, raws, settle=True, followed=followed)
    handled = _recorded(engine, tmp_path, raws, settle=False, followed=followed)
    assert settled == handled
    assert len(settled["messages"]) == len(raws) and settled["applications"]


def test_sent_copies_are_read_for_their_headers_only(engine: Engine, store: Store) -> None:
    assert triaged(engine, store, SENT, [REJECTION]) == ["quick"]


# -- the helper process a first sync reads in ------------------------------------------------

ORDINARY = [
    eml(f"Person {n} <person{n}@example.com>", f"Lunch {n}", f"Shall we meet at {n}?\n")
    for n in range(7)
]
# Enough batches that each reader is sent more after the tests kill one at the second batch:
# a dead reader is then always asked again, whether or not it finished what it held.
BATCHES = [
    [REJECTION, ORDINARY[0], b"not a mail at all\r\n", ORDINARY[1]],
    [ORDINARY[2], CLOSED],
    [ORDINARY[3], ORDINARY[4], ORDINARY[5]],
    [ORDINARY[6]],
    [ORDINARY[0], ORDINARY[2]],
    [ORDINARY[4]],
    [ORDINARY[1], ORDINARY[3], ORDINARY[5]],
]


def run_triage(
    engine: Engine,
    store: Store,
    helpers: list[Helper],
    *,
    kill_after: int | None = None,
    kill: int = 0,
) -> list[list[tuple[str, bool, str] | None]]:
    """Triage BATCHES; for each message triage decided on, its Message-ID, whether it was read
    in full and its label; None for one left to the full parse."""
    batches = [fetched(batch) for batch in BATCHES]
    out = []
    count = sum(map(len, batches))
    for number, (_, ready) in enumerate(engine.triage(store, INBOX, iter(batches), count)):
        out.append([_how_read(engine, item) for item in ready])
        if kill_after is not None and number == kill_after:
            os.kill(reader_pid(helpers, kill), signal.SIGKILL)
    return out


def _how_read(engine: Engine, item: Ready) -> tuple[str, bool, str] | None:
    if isinstance(item, Settled):
        return item.message.message_id, False, item.analysis.label
    reading = None if item is None else engine.decided[item.message_id][1]
    if reading is None or reading.prediction is None:
        return None
    return reading.message.message_id, reading.full, reading.prediction.label


def reader_pid(helpers: list[Helper], number: int) -> int:
    """The process of a reader: the helper process itself, or one it forked (Linux)."""
    pid = helpers[0].process.pid
    if number == 0:
        return pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(sorted(children, key=int)[number - 1])


@pytest.fixture
def helpers(monkeypatch: pytest.MonkeyPatch) -> list[Helper]:
    """The helpers started, in order. (Tests set the engine's helper_from with monkeypatch,
    so the module's engine gets its own back.)"""
    started: list[Helper] = []
    start = Helper.start

    def recording(model: RejectionModel, user: str, readers: int = 1) -> list[Helper]:
        readers_started = start(model, user, readers)
        for reader in readers_started:  # so that they, not this process, read every batch
            with contextlib.suppress(Exception):  # one that fails is a test's own business
                reader.started(wait=60)
        started.extend(readers_started)
        return readers_started

    monkeypatch.setattr(Helper, "start", recording)
    return started


# The daemon's readers, and more: each reader forked after the first must close only the
# pipes still open (closing those of a reader forked before it failed, EBADF).
@pytest.mark.parametrize("readers", [HELPERS, 4])
def test_a_helper_process_reads_as_this_process_reads(
    engine: Engine,
    store: Store,
    helpers: list[Helper],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    readers: int,
) -> None:
    expected = run_triage(engine, store, helpers)  # 16 messages: read here
    assert helpers == []
    assert [[m and m[1:] for m in batch] for batch in expected] == [
        [(True, "rejection"), (False, "other"), None, (False, "other")],
        [(False, "other"), (True, "closed")],
        [(False, "other")] * 3,
        [(False, "other")],
        [(False, "other")] * 2,
        [(False, "other")],
        [(False, "other")] * 3,
    ]
    monkeypatch.setattr(engine, "helper_from", 1)
    monkeypatch.setattr("nextround.daemon.engine.HELPERS", readers)
    assert run_triage(engine, store, helpers) == expected
    assert len(helpers) == readers and all(helper.started() for helper in helpers)
    assert helpers[0].process.wait(timeout=10) == 0
    assert "helper failed" not in caplog.text  # the helper read them, not this process


# With two readers, each of these kills a reader that holds a batch (or has just read it).
@pytest.mark.parametrize(("kill", "kill_after"), [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_when_a_reader_dies_this_process_reads_the_rest(
    engine: Engine,
    store: Store,
    helpers: list[Helper],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    kill: int,
    kill_after: int,
) -> None:
    """Whichever reader dies, at whichever batch: every batch comes, in order, read."""
    expected = run_triage(engine, store, helpers)
    monkeypatch.setattr(engine, "helper_from", 1)
    monkeypatch.setattr("nextround.daemon.engine.HELPERS", 2)
    assert run_triage(engine, store, helpers, kill_after=kill_after, kill=kill) == expected
    assert "helper failed" in caplog.text  # this process read what the dead reader held
    assert all(helper.process.poll() is not None for helper in helpers)  # all closed


def test_batches_that_come_while_the_helper_starts_are_read_here(
    engine: Engine, store: Store, helpers: list[Helper], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = run_triage(engine, store, helpers)
    monkeypatch.setattr(engine, "helper_from", 1)
    # Readers that have not said they are ready get nothing: this process reads meanwhile.
    monkeypatch.setattr(Helper, "started", lambda self, wait=0.0: False)
    assert run_triage(engine, store, helpers) == expected
    assert helpers and helpers[0].process.wait(timeout=10) == 0  # and it is stopped


def test_readers_that_start_during_the_sync_take_the_batches_from_then_on(
    engine: Engine,
    store: Store,
    helpers: list[Helper],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    expected = run_triage(engine, store, helpers)
    monkeypatch.setattr(engine, "helper_from", 1)
    asked: list[Helper] = []
    started = Helper.started

    def late(self: Helper, wait: float = 0.0) -> bool:
        ready = started(self, 60)  # it is ready, but says so only from the second batch on
        if wait:
            return ready  # the fixture waiting for it
        asked.append(self)
        return ready and asked.count(self) > 1

    sent: list[int] = []
    send = Helper.send

    def counted(self: Helper, raws: list[Raw]) -> None:
        sent.append(len(raws))
        send(self, raws)

    monkeypatch.setattr(Helper, "started", late)
    monkeypatch.setattr(Helper, "send", counted)
    assert run_triage(engine, store, helpers) == expected
    assert sent == [len(batch) for batch in BATCHES[1:]]  # the first was read here
    assert "helper failed" not in caplog.text


def test_no_descriptor_is_left_open_when_the_helper_cannot_start(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("no more processes")

    before = len(list(Path("/proc/self/fd").iterdir()))
    monkeypatch.setattr(subprocess, "Popen", refuse)
    assert Helper.start(engine.model, engine.identity.email, 3) == []
    assert len(list(Path("/proc/self/fd").iterdir())) == before


def test_a_stopped_sync_stops_its_helper(
    engine: Engine, store: Store, helpers: list[Helper], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "helper_from", 1)
    monkeypatch.setattr("nextround.daemon.engine.HELPERS", 2)
    triage = engine.triage(store, INBOX, iter([fetched([raw]) for raw in ORDINARY]), 10)
    next(triage)
    forked = reader_pid(helpers, 1)
    triage.close()  # what a stop (or an error) in the cycle does
    assert helpers and helpers[0].process.wait(timeout=10) == 0
    assert gone(forked)


def gone(pid: int) -> bool:
    """Whether a process has ended (a zombie waiting for a reaper has)."""
    for _ in range(100):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_a_helper_refuses_a_model_retrained_since_the_daemon_loaded_its_own(
    engine: Engine, store: Store, helpers: list[Helper], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = run_triage(engine, store, helpers)
    monkeypatch.setattr(engine, "helper_from", 1)
    # What `nextround train` would change:
    monkeypatch.setattr(engine.model, "fingerprint", "0123456789abcdef")
    assert run_triage(engine, store, helpers) == expected  # read here instead
    assert helpers and helpers[0].process.wait(timeout=10) != 0
