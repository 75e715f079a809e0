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
from nextround.daemon.parse import parse_quick
from nextround.daemon.store import Store
from nextround.daemon.sync import FolderRef
from nextround.daemon.training import MODEL_FILE

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


@pytest.mark.parametrize("raw", [REJECTION, CLOSED], ids=["rejection", "closed"])
def test_job_mail_is_parsed_in_full(engine: Engine, store: Store, raw: bytes) -> None:
    message = parse_quick(raw)
    assert message is not None
    assert engine.triage(store, INBOX, [message]) == [True]


def test_every_corpus_rejection_reaches_the_full_parse(engine: Engine, store: Store) -> None:
    """On its first 1,000 characters, no rejection or closed position of the shipped corpus
    scores under the triage floor. (The model has seen these mails: this guards the prefix
    and the floor; bench/classify_eval.py measures the margin on mail it has not seen.)"""
    job = [example.message for example in load_corpus() if example.label != "other"]
    verdicts = engine.triage(store, INBOX, job)
    assert len(job) > 1000
    assert all(verdicts), [m.subject for m, v in zip(job, verdicts, strict=True) if not v][:5]


def test_ordinary_mail_is_decided_on_the_spot(engine: Engine, store: Store) -> None:
    raw = eml(
        "Garden Weekly <news@gardenweekly.example>",
        "Ten links about tomatoes",
        "This week: compost, ladders and a tomato that grew through a fence.\n",
        List_Unsubscribe="<mailto:leave@gardenweekly.example>",
    )
    message = parse_quick(raw)
    assert message is not None
    assert engine.triage(store, INBOX, [message]) == [False]
    analysis = engine.decided[message.message_id][1]
    assert analysis.label == "other" and not analysis.is_rejection


def test_sent_copies_are_read_for_their_headers_only(engine: Engine, store: Store) -> None:
    message = parse_quick(REJECTION)
    assert message is not None
    assert engine.triage(store, SENT, [message]) == [False]
