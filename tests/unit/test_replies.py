"""What is a reply to a request. Automatic answers (out of office, vacation notices) are not:
known by their headers, or by their subject where a client sends no header saying so. Mail
without threading headers from the person asked is, under the request's subject or one
about feedback, unless they were asked about more than one application; if it reads like a
rejection, only under Re:/Fwd: or a subject about feedback, and for the role asked about."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from nextround.classifier.message import Address, Message
from nextround.classifier.verdict import Analysis
from nextround.daemon import applications
from nextround.daemon.engine import Engine, is_auto_reply
from nextround.daemon.lifecycle import State


@pytest.mark.parametrize(
    ("subject", "headers", "automatic"),
    [
        ("Re: Your application", {"auto-submitted": "auto-replied"}, True),
        ("Re: Your application", {"auto-submitted": "no"}, False),
        ("Re: Your application", {"x-autoreply": "yes"}, True),
        ("Re: Your application", {"precedence": "junk"}, True),
        ("Re: Your application", {"precedence": "bulk"}, False),  # an ATS relays people so
        ("Out of Office: Re: Your application", {}, True),
        ("Automatic reply: Your application", {}, True),
        ("Abwesenheitsnotiz: Re: Ihre Bewerbung", {}, True),  # HCL Notes, German
        ("Abwesenheit: Re: Ihre Bewerbung", {}, True),
        ("Automatisk svar: Din ansökan", {}, True),
        ("Risposta automatica: la sua candidatura", {}, True),
        ("Resposta automática: sua candidatura", {}, True),
        ("Réponse automatique : votre candidature", {}, True),
        ("Re: Your application", {}, False),
        ("Feedback on your interview", {}, False),
        ("Re: Presence at the office next week", {}, False),
    ],
)
def test_automatic_answers(subject: str, headers: dict[str, str], automatic: bool) -> None:
    message = Message(message_id="<a@example.com>", subject=subject, headers=headers)
    assert is_auto_reply(message) is automatic


def asked(number: int, role: str) -> Any:
    return SimpleNamespace(
        id=number,
        state=State.REQUESTED,
        contact_email="priya@brightloom.io",
        request_sent_at=datetime(2026, 11, 1, tzinfo=UTC),
        role=role,
        request_subject=f"Re: Your application: {role}",
        rejection_subject=f"Your application: {role}",
    )


@pytest.mark.parametrize(
    ("roles", "subject", "job_role", "answered"),
    [
        (["Data Engineer"], "Re: Your application: Data Engineer", None, [1]),
        (["Data Engineer"], "Your application: Data Engineer", None, [1]),
        (["Data Engineer"], "Feedback on your interview", None, [1]),
        (["Data Engineer"], "Coffee next month?", None, []),
        (["Data Engineer", "ML Engineer"], "Re: Your application: ML Engineer", None, [2]),
        # Asked about two: a new subject cannot say which (found by review in session 12).
        (["Data Engineer", "ML Engineer"], "Feedback: Your application: ML Engineer", None, []),
        (["Data Engineer", "ML Engineer"], "Feedback on your interview", None, []),
        # Words that read like a rejection (job_role: the role it names, "" for none): their
        # answer only under Re:/Fwd: or a subject about feedback, for the role asked about
        # (session 13). Else it is their next rejection, from the ATS under its own subject.
        (["Data Engineer"], "Re: Your application: Data Engineer", "", [1]),
        (["Data Engineer"], "Fwd: Your application: Data Engineer", "Data Engineer", [1]),
        (["Data Engineer"], "Feedback on your interview", "", [1]),
        (["Data Engineer"], "Your application: Data Engineer", "", []),
        (["Data Engineer"], "Feedback on your interview", "ML Engineer", []),
        (["Data Engineer", "ML Engineer"], "Re: Your application: ML Engineer", "ML Engineer", [2]),
        (
            ["Data Engineer", "ML Engineer"],
            "Re: Your application: ML Engineer",
            "Data Engineer",
            [],
        ),
    ],
)
def test_which_application_a_mail_without_threading_headers_answers(
    monkeypatch: pytest.MonkeyPatch,
    roles: list[str],
    subject: str,
    job_role: str | None,
    answered: list[int],
) -> None:
    waiting = [asked(number, role) for number, role in enumerate(roles, 1)]
    monkeypatch.setattr(applications, "in_states", lambda store, states: waiting)
    message = Message(
        message_id="<r@brightloom.io>",
        subject=subject,
        from_=Address("Priya Raman", "priya@brightloom.io"),
        date=datetime(2026, 11, 3, tzinfo=UTC),
    )
    label = "other" if job_role is None else "rejection"
    analysis = Analysis(label, label == "rejection", 0.7, None, "Brightloom", job_role, None, False)
    found = Engine._unthreaded_reply_to(object(), None, message, analysis)  # type: ignore[arg-type]
    assert [app.id for app in found] == answered
