"""Automatic answers to a request (out of office, vacation notices) are no reply: known by
their headers, or by their subject where a client sends no header saying so."""

from __future__ import annotations

import pytest

from nextround.classifier.message import Message
from nextround.daemon.engine import is_auto_reply


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
