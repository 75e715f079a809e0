"""Drafts: the templates as ETIQUETTE.md asks, proper MIME, and nothing from a mail evaluated."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from nextround.classifier.message import Address
from nextround.daemon.drafts import (
    HEADER,
    NEEDS_CONTACT_MARK,
    DraftSpec,
    Renderer,
    build_draft,
    draft_variables,
    first_name,
    local_date,
    normalised_subject,
    parse_header_value,
    reply_subject,
    template_name,
)
from nextround.daemon.errors import TemplateError

ME = Address("Alex Doe", "alex@example.org")
NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
TEMPLATES = [
    ("request", "interview"),
    ("request", "application"),
    ("follow_up", "interview"),
    ("thank_you", "application"),
]


def render(step: str, stage: str, **overrides: object) -> str:
    values: dict[str, object] = {
        "contact": Address("Jane Smith", "jane@acme.com"),
        "company": "Acme Robotics",
        "role": "Backend Engineer",
        "no_feedback_policy": False,
    }
    values.update(overrides)
    variables = draft_variables(
        ME,
        values["contact"],  # type: ignore[arg-type]
        values["company"],  # type: ignore[arg-type]
        values["role"],  # type: ignore[arg-type]
        stage,
        bool(values["no_feedback_policy"]),
        rejected_on=date(2026, 11, 20),
        request_date=date(2026, 11, 21),
    )
    return Renderer().render(template_name(step, stage), variables)


@pytest.mark.parametrize(("step", "stage"), TEMPLATES)
@pytest.mark.parametrize("known", [True, False])
def test_templates_follow_the_etiquette(step: str, stage: str, known: bool) -> None:
    if known:
        text = render(step, stage)
    else:
        text = render(step, stage, contact=None, company=None, role=None)
    words = len(text.split())
    assert 30 < words < 150, f"{words} words"
    assert text.rstrip().endswith("Alex Doe"), "signed with the identity's name"
    assert "Thank" in text or "thank" in text, "grateful"
    assert "\n\n\n" not in text
    lowered = text.lower()
    for argument in ("reconsider", "why was i", "weakness", "unfair", "disagree", "another chance"):
        assert argument not in lowered
    if known:
        assert text.startswith("Hi Jane,")
        assert "Acme Robotics" in text
    else:
        assert text.startswith("Hello,")
        assert "None" not in text and "{{" not in text


def test_request_asks_a_small_bounded_forward_looking_question() -> None:
    interview = render("request", "interview")
    assert "one to three things" in interview
    assert "in the future" in interview
    application = render("request", "application")
    assert "kept me in mind" in application and "future" in application
    soft = render("request", "interview", no_feedback_policy=True)
    assert "may not be able to give individual feedback" in soft


def test_mail_content_is_never_evaluated_as_template_code() -> None:
    hostile = "{{ 7*7 }}{% for x in range(3) %}X{% endfor %}{{ cycler.__init__.__globals__ }}"
    text = render("request", "interview", company=hostile, role="{{ identity.email }}")
    assert hostile in text
    assert "{{ identity.email }}" in text
    assert "49" not in text and "XXX" not in text


def test_override_directory_wins_and_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "thank_you.txt.j2").write_text("Thanks, {{ company }}!\n{{ identity.name }}\n")
    renderer = Renderer(tmp_path)
    variables = draft_variables(ME, None, "Acme", None, None, False)
    assert renderer.render("thank_you.txt.j2", variables) == "Thanks, Acme!\nAlex Doe\n"
    assert "Hello," in renderer.render("follow_up.txt.j2", variables)  # falls back to shipped
    (tmp_path / "follow_up.txt.j2").write_text("{{ no_such_variable }}")
    with pytest.raises(TemplateError, match=r"follow_up\.txt\.j2.*no_such_variable"):
        Renderer(tmp_path).render("follow_up.txt.j2", variables)
    (tmp_path / "follow_up.txt.j2").write_text("{% if %}")
    with pytest.raises(TemplateError, match=r"follow_up\.txt\.j2:1"):
        Renderer(tmp_path).render("follow_up.txt.j2", variables)


def spec(**overrides: object) -> DraftSpec:
    values: dict[str, object] = {
        "application_id": 12,
        "step": "request",
        "identity": ME,
        "to": Address("Jane Smith", "jane@acme.com"),
        "subject": reply_subject("Your application"),
        "answers": "<rejection@acme.com>",
        "references": ("<ack@acme.com>",),
        "variables": {},
    }
    values.update(overrides)
    return DraftSpec(**values)  # type: ignore[arg-type]


def test_draft_is_a_proper_threaded_reply() -> None:
    raw, message_id = build_draft(spec(), "Hello there,\nthanks.\n", NOW)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["From"] == "Alex Doe <alex@example.org>"
    assert parsed["To"] == "Jane Smith <jane@acme.com>"
    assert parsed["Subject"] == "Re: Your application"
    assert parsed["In-Reply-To"] == "<rejection@acme.com>"
    assert parsed["References"] == "<ack@acme.com> <rejection@acme.com>"
    assert parsed["Message-ID"] == message_id and message_id.endswith("@example.org>")
    assert parsed["Date"] == "Sun, 22 Nov 2026 09:30:00 +0000"
    assert parsed[HEADER] == "12; step=request"
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    assert parsed.get_content().replace("\r\n", "\n") == "Hello there,\nthanks.\n"


def test_a_made_up_message_id_is_never_written() -> None:
    """A rejection without a Message-ID has one made up (at nextround.invalid): the draft
    answers nothing then, and names no such id (found in review, session 13)."""
    made_up = "<3f2a9c@nextround.invalid>"
    raw, _ = build_draft(
        spec(answers=made_up, references=(made_up, "<ack@acme.com>")), "Hi,\n", NOW
    )
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert b"nextround.invalid" not in raw
    assert parsed["In-Reply-To"] is None and parsed["References"] is None


def test_no_contact_means_empty_to_and_a_marked_first_line() -> None:
    raw, _ = build_draft(spec(to=None), "Hello,\n", NOW)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["To"] is None
    assert parsed.get_content().startswith(NEEDS_CONTACT_MARK)


@pytest.mark.parametrize(
    "evil",
    [
        "Hi\r\nBcc: victim@evil.org",
        "Hi\nBcc: victim@evil.org",
        "Hi\rBcc: victim@evil.org",
        "=?utf-8?q?Hi=0D=0ABcc:_victim@evil.org?=",
        "Hi\u2028Bcc: x",
    ],
)
def test_values_from_mail_cannot_reach_a_header_line(evil: str) -> None:
    raw, _ = build_draft(
        spec(
            to=Address(f"Jane{evil}", "jane@acme.com"),
            subject=reply_subject(evil),
            answers="<a@b>\r\nBcc: x@evil.org",
        ),
        "body\n",
        NOW,
    )
    header_block = raw.split(b"\r\n\r\n", 1)[0].decode()
    lines = header_block.split("\r\n")
    assert not any(line.lower().startswith("bcc") for line in lines)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Jane Smith", "Jane"),
        ("Smith, Jane", "Jane"),
        ("Dr. Maria Garcia", "Maria"),
        ("jörg müller", "Jörg"),
        ("Acme Recruiting", None),
        ("Talent Acquisition Team", None),
        ("", None),
        ("The Hiring Team at Acme", None),
    ],
)
def test_first_name(name: str, expected: str | None) -> None:
    assert first_name(Address(name, "x@acme.com")) == expected


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("Your application", "Re: Your application"),
        ("RE: Re: Your application", "Re: Your application"),
        ("AW: Ihre Bewerbung", "Re: Ihre Bewerbung"),
        ("Ré : Votre candidature", "Re: Votre candidature"),  # as French clients write it
        ("", "Re: your message"),
    ],
)
def test_reply_subject(original: str, expected: str) -> None:
    assert reply_subject(original) == expected
    assert normalised_subject(expected) == normalised_subject(original or "your message")


def test_header_value_round_trip() -> None:
    assert parse_header_value("12; step=follow_up") == (12, "follow_up")
    assert parse_header_value("112; step=request") == (112, "request")
    assert parse_header_value("12; step=request; extra") is None


# Microsoft 365 and Amazon SES (which many applicant-tracking systems send through) write
# Message-IDs of 80 to 90 characters.
OUTLOOK_ID = (
    "<PH0PR11MB5095A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6@PH0PR11MB5095.namprd11.prod.outlook.com>"
)
SES_ID = "<0100018c1e2b3c4d-5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b-000000@email.amazonses.com>"


@pytest.mark.parametrize("answers", [OUTLOOK_ID, SES_ID])
def test_a_draft_answering_a_long_message_id_keeps_it_literally(answers: str) -> None:
    """The email package writes a token longer than its 78-character lines as RFC 2047
    encoded-words, which no client reads as a msg-id: the draft would not be threaded."""
    spec = DraftSpec(
        1, "request", Address("Alex Doe", "alex@example.com"),
        Address("Jane", "jane@acme.example"), "Re: Your application", answers, (answers,), {},
    )  # fmt: skip
    raw, _ = build_draft(spec, "Hello\n", datetime(2026, 11, 2, tzinfo=UTC))
    head = raw.split(b"\r\n\r\n")[0].decode()
    unfolded = head.replace("\r\n ", " ")
    lines = {
        line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in unfolded.split("\r\n")
    }
    assert lines["In-Reply-To"] == answers, lines["In-Reply-To"]
    assert lines["References"] == answers, lines["References"]


LATE_EVENING_IN_NEW_YORK = datetime(2026, 11, 4, 3, 30, tzinfo=UTC)  # 3 November, 22:30 there


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        (ZoneInfo("America/New_York"), date(2026, 11, 3)),
        (ZoneInfo("Europe/Berlin"), date(2026, 11, 4)),
        (UTC, date(2026, 11, 4)),
    ],
)
def test_dates_in_drafts_are_days_where_the_user_is(zone: tzinfo, day: date) -> None:
    assert local_date(LATE_EVENING_IN_NEW_YORK, zone) == day
    variables = draft_variables(
        Address("Alex Doe", "me@example.org"), None, "Acme", None, "interview", False,
        request_date=local_date(LATE_EVENING_IN_NEW_YORK, zone),
    )  # fmt: skip
    assert variables["request_date"] == f"{day.day} November"
