"""Triage: which cheaply read messages the engine parses in full. A rejection must never be
ruled out; ordinary mail is decided on the spot; sent copies are read for their headers."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from nextround.classifier.corpus import load_corpus
from nextround.classifier.inference import RejectionModel
from nextround.classifier.persist import load_model
from nextround.daemon.config import DEFAULT_THRESHOLD, Config, parse_config
from nextround.daemon.engine import Engine
from nextround.daemon.mailbox import Fetched
from nextround.daemon.parse import parse_quick
from nextround.daemon.store import Store
from nextround.daemon.sync import FolderRef
from nextround.daemon.training import MODEL_FILE
from nextround.daemon.triage import Helper, prefix_predictions

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


def triaged(engine: Engine, store: Store, folder: FolderRef, raws: list[bytes]) -> list[bool]:
    """For each message, whether triage leaves it to the full parse."""
    batch = fetched(raws)
    [(same, ready)] = list(engine.triage(store, folder, iter([batch]), len(batch)))
    assert same == batch
    return [message is None for message in ready]


@pytest.mark.parametrize("raw", [REJECTION, CLOSED], ids=["rejection", "closed"])
def test_job_mail_is_parsed_in_full(engine: Engine, store: Store, raw: bytes) -> None:
    assert triaged(engine, store, INBOX, [raw]) == [True]


def test_every_corpus_rejection_reaches_the_full_parse(engine: Engine, store: Store) -> None:
    """On its first TRIAGE_TEXT characters, no rejection or closed position of the shipped corpus
    scores under the triage floor. (The model has seen these mails: this guards the prefix
    and the floor; bench/classify_eval.py measures the margin on mail it has not seen.)"""
    job = [example.message for example in load_corpus() if example.label != "other"]
    predictions = prefix_predictions(engine.model, job, engine.identity.email)
    readings = list(zip(job, predictions, strict=True))
    batch = [Fetched(uid, b"", 0, 1) for uid in range(1, len(job) + 1)]
    ready = engine.decide(store, INBOX, batch, readings)
    assert len(job) > 1000
    ruled_out = [m.subject for m, r in zip(job, ready, strict=True) if r is not None]
    assert not ruled_out, ruled_out[:5]


def test_ordinary_mail_is_decided_on_the_spot(engine: Engine, store: Store) -> None:
    raw = eml(
        "Garden Weekly <news@gardenweekly.example>",
        "Ten links about tomatoes",
        "This week: compost, ladders and a tomato that grew through a fence.\n",
        List_Unsubscribe="<mailto:leave@gardenweekly.example>",
    )
    message = parse_quick(raw)
    assert message is not None
    assert triaged(engine, store, INBOX, [raw]) == [False]
    analysis = engine.decided[message.message_id][1]
    assert analysis.label == "other" and not analysis.is_rejection


def test_sent_copies_are_read_for_their_headers_only(engine: Engine, store: Store) -> None:
    assert triaged(engine, store, SENT, [REJECTION]) == [False]


# -- the helper process a first sync reads in ------------------------------------------------

ORDINARY = [
    eml(f"Person {n} <person{n}@example.com>", f"Lunch {n}", f"Shall we meet at {n}?\n")
    for n in range(7)
]
BATCHES = [
    [REJECTION, ORDINARY[0], b"not a mail at all\r\n", ORDINARY[1]],
    [ORDINARY[2], CLOSED],
    [ORDINARY[3], ORDINARY[4], ORDINARY[5]],
    [ORDINARY[6]],
]


def run_triage(
    engine: Engine, store: Store, helpers: list[Helper], *, kill_after: int | None = None
) -> list[list[str | None]]:
    """Triage BATCHES; for each message, the Message-ID triage decided on, or None."""
    batches = [fetched(batch) for batch in BATCHES]
    out = []
    for number, (_, ready) in enumerate(engine.triage(store, INBOX, iter(batches), 10)):
        out.append([None if message is None else message.message_id for message in ready])
        if kill_after is not None and number == kill_after:
            helpers[0].process.kill()
    return out


@pytest.fixture
def helpers(monkeypatch: pytest.MonkeyPatch) -> list[Helper]:
    """The helpers started, in order. (Tests set the engine's helper_from with monkeypatch,
    so the module's engine gets its own back.)"""
    started: list[Helper] = []
    start = Helper.start

    def recording(model: RejectionModel, user: str) -> Helper | None:
        helper = start(model, user)
        if helper is not None:
            started.append(helper)
        return helper

    monkeypatch.setattr(Helper, "start", recording)
    return started


def test_a_helper_process_reads_as_this_process_reads(
    engine: Engine, store: Store, helpers: list[Helper], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = run_triage(engine, store, helpers)  # 10 messages: read here
    assert helpers == []
    assert [len([m for m in batch if m]) for batch in expected] == [2, 1, 3, 1]
    monkeypatch.setattr(engine, "helper_from", 1)
    assert run_triage(engine, store, helpers) == expected
    assert len(helpers) == 1 and helpers[0].process.wait(timeout=10) == 0


def test_when_the_helper_dies_this_process_reads_the_rest(
    engine: Engine, store: Store, helpers: list[Helper], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = run_triage(engine, store, helpers)
    monkeypatch.setattr(engine, "helper_from", 1)
    assert run_triage(engine, store, helpers, kill_after=0) == expected
    assert helpers[0].process.poll() is not None


def test_a_stopped_sync_stops_its_helper(
    engine: Engine, store: Store, helpers: list[Helper], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "helper_from", 1)
    triage = engine.triage(store, INBOX, iter([fetched([raw]) for raw in ORDINARY]), 10)
    next(triage)
    triage.close()  # what a stop (or an error) in the cycle does
    assert helpers[0].process.wait(timeout=10) == 0


def test_a_helper_refuses_a_model_retrained_since_the_daemon_loaded_its_own(
    engine: Engine, store: Store, helpers: list[Helper], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = run_triage(engine, store, helpers)
    monkeypatch.setattr(engine, "helper_from", 1)
    # What `nextround train` would change:
    monkeypatch.setattr(engine.model, "fingerprint", "0123456789abcdef")
    assert run_triage(engine, store, helpers) == expected  # read here instead
    assert helpers[0].process.wait(timeout=10) != 0
