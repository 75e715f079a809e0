"""The whole lifecycle against a real Dovecot, with the user's mail client simulated over IMAP
and SMTP: draft, send, reply, thank-you; follow-up and close; skip; crash safety."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import pytest
from dovecot import MailUser
from mailclient import MailClient, SmtpServer, parse
from support import INTERVIEW_REJECTION, ConfigWriter, run_cli

from nextround.daemon import applications as apps
from nextround.daemon.commands import model_settings
from nextround.daemon.config import load_config
from nextround.daemon.engine import CycleReport, Engine
from nextround.daemon.errors import MailboxError
from nextround.daemon.imap import ImapMailbox
from nextround.daemon.mailbox import Fetched
from nextround.daemon.session import open_session
from nextround.daemon.store import Store
from nextround.daemon.training import get_model

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

REPLY_BODY = (
    "Hi Alex,\n\nSorry for the slow answer. The panel wanted more depth on streaming systems; "
    "otherwise it was close.\n\nPriya\n"
)


def mail(
    sender: str,
    subject: str,
    body: str,
    when: datetime = T0,
    in_reply_to: str | None = None,
    references: str | None = None,
    **headers: str,
) -> tuple[bytes, str]:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "Alex Doe <{user}>"
    message["Subject"] = subject
    message["Date"] = format_datetime(when)
    message_id = make_msgid(domain="sender.example")
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = references or in_reply_to
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message.as_bytes(), message_id


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


class World:
    """One user's mailbox, nextround's config, and the user's mail client."""

    def __init__(self, user: MailUser, config: Path, client: MailClient) -> None:
        self.user = user
        self.config = config
        self.client = client

    def once(self, now: datetime, *extra: str) -> str:
        result = run_cli("-c", str(self.config), "once", "--now", now.isoformat(), *extra)
        assert result.code == 0, result.err
        return result.out

    def status(self) -> list[dict[str, Any]]:
        result = run_cli("-c", str(self.config), "status", "--json")
        assert result.code == 0, result.err
        rows: list[dict[str, Any]] = json.loads(result.out)
        return rows

    def deliver(self, sender: str, subject: str, body: str, when: datetime, **kw: Any) -> str:
        raw, message_id = mail(sender, subject, body, when, **kw)
        self.client.deliver(raw.replace(b"{user}", self.user.username.encode()), when)
        return message_id

    def request_sent(self) -> tuple[str, str]:
        """A rejection at T0, its request drafted five minutes later, then sent at T0+1 h
        with a copy in Sent: (rejection id, sent id)."""
        rejection_id = self.deliver(*INTERVIEW_REJECTION, when=T0)
        self.once(T0 + timedelta(minutes=5))
        uid, _ = self.only_draft()
        return rejection_id, self.client.send_draft(uid, T0 + timedelta(hours=1))

    def request_sent_without_a_copy(self) -> tuple[str, str]:
        """As `request_sent`, at T0+30 min, from a client that keeps the draft's Message-ID
        and no copy in Sent: (rejection id, sent id)."""
        rejection_id = self.deliver(*INTERVIEW_REJECTION, when=T0)
        self.once(T0 + timedelta(minutes=5))
        uid, draft = self.only_draft()
        sent_id = self.client.send_draft(
            uid, T0 + timedelta(minutes=30), keep_message_id=True, sent_copy=False
        )
        assert sent_id == draft["Message-ID"]
        return rejection_id, sent_id

    def priya_replies(self, when: datetime, in_reply_to: str, references: str | None = None) -> str:
        return self.deliver(
            "Priya Raman <priya.raman@brightloom.io>",
            "Re: Your application for Senior Data Engineer",
            REPLY_BODY,
            when,
            in_reply_to=in_reply_to,
            references=references,
        )

    def only_draft(self) -> tuple[int, EmailMessage]:
        drafts = self.client.drafts()
        assert len(drafts) == 1, [str(d["Subject"]) for d in drafts.values()]
        return next(iter(drafts.items()))


@pytest.fixture
def world(mailbox_user: MailUser, write_config: ConfigWriter, smtp: SmtpServer) -> World:
    return World(mailbox_user, write_config(mailbox_user), MailClient(mailbox_user, smtp))


def test_request_sent_reply_thank_you_and_nothing_after(world: World, smtp: SmtpServer) -> None:
    rejection_id = world.deliver(*INTERVIEW_REJECTION, when=T0)
    world.once(T0 + timedelta(minutes=5))
    uid, draft = world.only_draft()
    assert draft["To"] == "Priya Raman <priya.raman@brightloom.io>"
    assert draft["Subject"] == "Re: Your application for Senior Data Engineer"
    assert draft["In-Reply-To"] == rejection_id
    assert str(draft["X-Nextround-Application"]).endswith("step=request")
    body = draft.get_content()
    assert body.startswith("Hi Priya,") and "Brightloom" in body and "Alex Doe" in body
    [row] = world.status()
    assert row["state"] == "drafted" and row["stage"] == "interview"
    assert row["contact"] == "priya.raman@brightloom.io"

    sent_at = T0 + timedelta(hours=3)
    sent_id = world.client.send_draft(uid, sent_at)
    assert sent_id != draft["Message-ID"]
    assert len(smtp.sink.received) >= 1
    world.once(T0 + timedelta(hours=4))
    [row] = world.status()
    assert row["state"] == "requested"
    assert row["next_action_at"] == (sent_at + timedelta(days=7)).isoformat()

    reply_at = T0 + timedelta(days=2)
    world.deliver(
        "Priya Raman <priya.raman@brightloom.io>",
        "Re: Your application for Senior Data Engineer",
        "Hi Alex,\n\nHappy to share a few thoughts: the panel wanted more depth on streaming "
        "systems, and a concrete example of owning a data platform end to end.\n\nPriya\n",
        reply_at,
        in_reply_to=sent_id,
        references=f"{rejection_id} {sent_id}",
    )
    world.once(reply_at + timedelta(minutes=5))
    [row] = world.status()
    assert row["state"] == "replied"
    uid, thanks = world.only_draft()
    assert str(thanks["X-Nextround-Application"]).endswith("step=thank_you")
    assert thanks["To"] == "Priya Raman <priya.raman@brightloom.io>"
    assert thanks["Subject"] == "Re: Your application for Senior Data Engineer"
    assert thanks.get_content().startswith("Hi Priya,")

    # A week and a month later: no follow-up, nothing more.
    world.once(reply_at + timedelta(days=8))
    world.once(reply_at + timedelta(days=40))
    assert len(world.client.drafts()) == 1
    assert world.status()[0]["state"] == "replied"


def test_no_reply_follow_up_then_closed(world: World) -> None:
    _, sent_id = world.request_sent()
    world.once(T0 + timedelta(hours=2))
    assert world.status()[0]["state"] == "requested"

    world.once(T0 + timedelta(days=8))
    [row] = world.status()
    assert row["state"] == "followed_up"
    uid, follow_up = world.only_draft()
    assert str(follow_up["X-Nextround-Application"]).endswith("step=follow_up")
    assert follow_up["In-Reply-To"] == sent_id, "the follow-up answers the sent request"
    assert follow_up["To"] == "Priya Raman <priya.raman@brightloom.io>"
    world.client.send_draft(uid, T0 + timedelta(days=8, hours=1))
    world.once(T0 + timedelta(days=8, hours=2))

    world.once(T0 + timedelta(days=16))
    [row] = world.status()
    assert row["state"] == "closed"
    world.once(T0 + timedelta(days=30))
    assert world.client.drafts() == {}


def test_deleted_draft_means_skipped_and_never_drafted_again(world: World) -> None:
    world.deliver(*INTERVIEW_REJECTION, when=T0)
    world.once(T0 + timedelta(minutes=5))
    uid, _ = world.only_draft()
    world.client.delete_draft(uid)
    world.once(T0 + timedelta(hours=1))
    world.once(T0 + timedelta(hours=2))
    [row] = world.status()
    assert row["state"] == "skipped"
    world.once(T0 + timedelta(days=10))
    assert world.client.drafts() == {}
    assert world.status()[0]["state"] == "skipped"


def test_ats_rejection_goes_to_the_recruiter_from_earlier_mail(world: World) -> None:
    world.deliver(
        "Tomasz Nowak <tomasz.nowak@kestrelpay.com>",
        "Interview scheduling - Product Designer at Kestrel Pay",
        "Hi Alex,\n\nThanks for applying to the Product Designer role at Kestrel Pay. I'd love "
        "to set up a 45-minute video interview with our design lead. Could you share a few "
        "times that work for you next week?\n\nBest,\nTomasz Nowak\nRecruiter, Kestrel Pay\n",
        T0 - timedelta(days=14),
    )
    world.deliver(
        "Kestrel Pay <no-reply@us.greenhouse-mail.io>",
        "Update on your Kestrel Pay application",
        "Hi Alex,\n\nThank you for interviewing for the Product Designer position at Kestrel "
        "Pay. After careful review, we have decided not to move forward with your candidacy "
        "at this time. We appreciate the time you invested in our process and wish you "
        "success in your search.\n\nKestrel Pay Recruiting\n",
        T0,
    )
    world.once(T0 + timedelta(minutes=5))
    _, draft = world.only_draft()
    assert draft["To"] == "Tomasz Nowak <tomasz.nowak@kestrelpay.com>"
    assert draft.get_content().startswith("Hi Tomasz,")
    [row] = world.status()
    assert row["contact"] == "tomasz.nowak@kestrelpay.com" and row["state"] == "drafted"


def test_no_human_anywhere_gives_a_needs_contact_draft(world: World) -> None:
    world.deliver(
        "Halden Foods <donotreply@myworkday.com>",
        "Your application to Halden Foods",
        "Dear Alex,\n\nThank you for your interest in the Supply Chain Analyst position at "
        "Halden Foods. We have carefully reviewed your application and regret to inform you "
        "that we will not be progressing it further. We wish you every success.\n\n"
        "Halden Foods Talent Acquisition\n",
        T0,
    )
    world.once(T0 + timedelta(minutes=5))
    uid, draft = world.only_draft()
    assert draft["To"] is None
    assert draft.get_content().startswith(">>> nextround: no human contact")
    [row] = world.status()
    assert row["state"] == "needs_contact" and row["contact"] is None
    # The user adds the recipient and sends it: nextround follows the conversation.
    world.client.send_draft(uid, T0 + timedelta(hours=1), to="hr.lead@haldenfoods.com")
    world.once(T0 + timedelta(hours=2))
    assert world.status()[0]["state"] == "requested"


def test_follow_up_due_during_downtime_is_drafted_at_next_start(world: World) -> None:
    world.request_sent()
    world.once(T0 + timedelta(hours=2))
    # The daemon is down from day 1 to day 25: the follow-up fell due on day 7.
    world.once(T0 + timedelta(days=25))
    assert world.status()[0]["state"] == "followed_up"
    _, draft = world.only_draft()
    assert str(draft["X-Nextround-Application"]).endswith("step=follow_up")


def test_acknowledgement_invitation_and_closed_position_open_no_draft(world: World) -> None:
    world.deliver(
        "Orbital Freight Careers <no-reply@hire.lever.co>",
        "Thanks for applying to Orbital Freight",
        "Hi Alex,\n\nThanks for applying for the Operations Analyst role. Our team reviews every "
        "application carefully. Due to the volume we receive, we are unfortunately unable to "
        "reply to every applicant individually; if you are not selected for an interview we "
        "will keep your details on file.\n\nOrbital Freight Talent Team\n",
        T0,
    )
    world.deliver(
        "Sana Iqbal <sana.iqbal@mossgrove.health>",
        "Interview invitation: Clinical Data Manager",
        "Dear Alex,\n\nWe were impressed by your application for the Clinical Data Manager role "
        "and would like to invite you to a first interview with our team. Please use the link "
        "below to choose a slot next week.\n\nKind regards,\nSana Iqbal\nMossgrove Health\n",
        T0,
    )
    world.deliver(
        "Juniper Analytics Recruiting <no-reply@smartrecruiters.com>",
        "Update regarding the Data Analyst position",
        "Hello Alex,\n\nWe are writing to let you know that the Data Analyst position you applied "
        "for has been cancelled due to a change in budget, and we will not be filling the role "
        "this year. This is not a reflection on your application.\n\nJuniper Analytics\n",
        T0,
    )
    world.once(T0 + timedelta(minutes=5))
    assert world.client.drafts() == {}
    rows = world.status()
    assert [row["state"] for row in rows] == ["closed"], rows


def test_dry_run_writes_nothing(world: World) -> None:
    world.deliver(*INTERVIEW_REJECTION, when=T0)
    at = (T0 + timedelta(minutes=5)).isoformat()
    dry = run_cli("-c", str(world.config), "once", "--now", at, "--dry-run")
    assert dry.code == 0, dry.err
    assert "would draft #1 request to Priya Raman <priya.raman@brightloom.io>" in dry.out
    assert "| Subject: Re: Your application for Senior Data Engineer" in dry.out
    # Its log (info, the default) says so too, and never that a draft was written.
    assert "#1: request would be drafted (dry run) to" in dry.err
    assert "request drafted" not in dry.err
    assert world.client.drafts() == {}
    assert world.status() == []
    world.once(T0 + timedelta(minutes=10))
    assert len(world.client.drafts()) == 1


def test_skip_and_close_from_the_command_line(world: World) -> None:
    world.deliver(*INTERVIEW_REJECTION, when=T0)
    world.once(T0 + timedelta(minutes=5))
    assert run_cli("-c", str(world.config), "skip", "1").code == 0
    assert world.status()[0]["state"] == "skipped"
    again = run_cli("-c", str(world.config), "close", "1")
    assert again.code == 2 and "is skipped" in again.err
    missing = run_cli("-c", str(world.config), "close", "99")
    assert missing.code == 2 and "no application #99" in missing.err


def test_killed_between_append_and_commit_gives_exactly_one_draft(world: World) -> None:
    world.deliver(*INTERVIEW_REJECTION, when=T0)
    command = [
        sys.executable,
        "-m",
        "nextround.daemon.cli",
        "-c",
        str(world.config),
        "once",
        "--now",
        (T0 + timedelta(minutes=5)).isoformat(),
    ]
    killed = subprocess.run(
        command,
        env={**os.environ, "NEXTROUND_FAULT_KILL_AT": "after-append"},
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    assert len(world.client.drafts()) == 1, "the APPEND happened before the kill"
    assert world.status() == [] or world.status()[0]["state"] == "new"

    world.once(T0 + timedelta(minutes=10))
    world.only_draft()
    [row] = world.status()
    assert row["state"] == "drafted"
    world.once(T0 + timedelta(minutes=15))
    assert len(world.client.drafts()) == 1


def test_label_files_a_correction_and_train_learns_from_it(world: World, tmp_path: Path) -> None:
    message_id = world.deliver(*INTERVIEW_REJECTION, when=T0)
    world.once(T0 + timedelta(minutes=5))
    result = run_cli("-c", str(world.config), "label", message_id, "other")
    assert result.code == 0, result.err
    saved = list((tmp_path / "state" / "examples" / "other").glob("*.eml"))
    assert len(saved) == 1 and saved[0].stat().st_mode & 0o777 == 0o600
    assert b"Brightloom" in saved[0].read_bytes()
    missing = run_cli("-c", str(world.config), "label", "<nope@nowhere>", "rejection")
    assert missing.code == 1 and "not found" in missing.err
    trained = run_cli("-c", str(world.config), "train")
    assert trained.code == 0, trained.err
    assert "your own examples: 1" in trained.out


def kill_after_append(world: World, now: datetime) -> None:
    command = [sys.executable, "-m", "nextround.daemon.cli", "-c", str(world.config)]
    killed = subprocess.run(
        [*command, "once", "--now", now.isoformat()],
        env={**os.environ, "NEXTROUND_FAULT_KILL_AT": "after-append"},
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr


@pytest.mark.parametrize("user_action", ["send without our header", "send with it", "delete"])
def test_a_crash_then_the_user_acting_on_the_draft_never_yields_a_second(
    world: World, user_action: str
) -> None:
    world.deliver(*INTERVIEW_REJECTION, when=T0)
    kill_after_append(world, T0 + timedelta(minutes=5))
    uid, _ = world.only_draft()
    if user_action == "delete":
        world.client.delete_draft(uid)
    else:
        world.client.send_draft(
            uid, T0 + timedelta(minutes=7), keep_unknown_headers=user_action == "send with it"
        )
    for minutes in (10, 30, 50):
        world.once(T0 + timedelta(minutes=minutes))
    assert world.client.drafts() == {}, "a second draft was written"
    [row] = world.status()
    assert row["state"] == ("skipped" if user_action == "delete" else "requested")


# -- Gmail's conversation ids ---------------------------------------------------------------
# Dovecot has no X-GM-EXT-1, so Gmail's side is played by a mailbox that gives each fetched
# message the conversation id Gmail would (from a table of Message-IDs); IMAP, the sync, the
# engine and the store are the real thing. Reading X-GM-THRID off Gmail's wire format is
# tested in tests/unit/test_gmail_fetch.py.


class GmailLike(ImapMailbox):
    """Dovecot, with Gmail's conversation ids: `threads` maps Message-ID -> conversation."""

    def __init__(self, inner: ImapMailbox, threads: dict[str, int]) -> None:
        super().__init__(inner.client, inner.host)
        self.threads = threads

    def fetch(self, uids: Sequence[int], max_bytes: int) -> Iterator[Fetched]:
        for fetched in super().fetch(uids, max_bytes):
            headers = BytesHeaderParser().parsebytes(fetched.raw)
            conversation = self.threads.get(str(headers.get("Message-ID", "")).strip())
            if conversation is not None:
                fetched = dataclasses.replace(fetched, thread=f"x-gm-thrid:{conversation}")
            yield fetched


def gmail_cycle(world: World, threads: dict[str, int], now: datetime) -> CycleReport:
    config = load_config(world.config)
    model = get_model(model_settings(config))
    session = open_session(config)
    store = Store.open(config.database_path)
    try:
        assert isinstance(session.mailbox, ImapMailbox)
        mailbox = GmailLike(session.mailbox, threads)
        return Engine(config, model).poll_once(mailbox, store, session.folders, now)
    finally:
        store.close()
        session.close()


def test_first_sync_parses_in_full_only_what_may_be_job_mail(world: World) -> None:
    """Triage: ordinary mail is recorded as read cheaply; a rejection is parsed in full and
    drafted for."""
    for number in range(30):
        world.deliver(
            f"News {number} <news{number}@letters.example>",
            f"Weekly digest #{number}: ten links about gardening",
            "This week: tomatoes, compost and a ladder review.\n\nUnsubscribe any time.\n",
            T0 - timedelta(days=1, minutes=number),
        )
    rejection_id = world.deliver(*INTERVIEW_REJECTION, when=T0)
    report = gmail_cycle(world, {}, T0 + timedelta(minutes=5))
    [inbox] = [result for result in report.sync.folders if result.folder.role == "inbox"]
    assert inbox.recorded == 31
    assert inbox.read_quickly >= 25
    assert [a.label for _, a in report.analyses].count("rejection") == 1
    _, draft = world.only_draft()
    assert draft["In-Reply-To"] == rejection_id
    assert world.status()[0]["state"] == "drafted"


def test_a_reply_in_the_same_gmail_conversation_counts_without_references(world: World) -> None:
    threads: dict[str, int] = {}
    rejection_id = world.deliver(*INTERVIEW_REJECTION, when=T0)
    threads[rejection_id] = 1778000000000000001
    gmail_cycle(world, threads, T0 + timedelta(minutes=5))
    uid, _ = world.only_draft()
    sent_id = world.client.send_draft(uid, T0 + timedelta(hours=2))
    threads[sent_id] = 1778000000000000001  # Gmail files the sent copy in the conversation
    gmail_cycle(world, threads, T0 + timedelta(hours=3))
    assert world.status()[0]["state"] == "requested"

    # The recruiter answers from a tool that starts a fresh message: no In-Reply-To, no
    # References. A mail in another conversation first (not a reply), then the one Gmail
    # files in ours.
    body = "Hi Alex,\n\nSure, happy to help: the panel wanted more depth on streaming.\n\nPriya\n"
    sender = INTERVIEW_REJECTION[0]
    elsewhere_id = world.deliver(sender, "Coffee next month?", body, T0 + timedelta(days=1))
    threads[elsewhere_id] = 1778000000000000999
    gmail_cycle(world, threads, T0 + timedelta(days=1, minutes=5))
    assert world.status()[0]["state"] == "requested"

    reply_id = world.deliver(sender, "Feedback", body, T0 + timedelta(days=2))
    threads[reply_id] = 1778000000000000001
    gmail_cycle(world, threads, T0 + timedelta(days=2, minutes=5))
    assert world.status()[0]["state"] == "replied"
    _, thanks = world.only_draft()
    assert str(thanks["X-Nextround-Application"]).endswith("step=thank_you")
    assert thanks["In-Reply-To"] == reply_id


def test_a_second_no_reply_rejection_in_the_same_gmail_conversation_opens_its_own(
    world: World,
) -> None:
    """Gmail files same-subject mail from one sender in one conversation: a second rejection
    there opens its own application and is no reply to the first."""
    threads: dict[str, int] = {}
    sender = "Brightloom Careers <no-reply@brightloom.io>"
    subject = "Your application to Brightloom"
    first = world.deliver(
        sender,
        subject,
        "Hi Alex,\n\nThank you for applying for the Data Engineer role at Brightloom. After "
        "careful review we have decided not to move forward with your application.\n\n"
        "The Brightloom Talent Team\n",
        T0,
    )
    threads[first] = 1778000000000000042
    gmail_cycle(world, threads, T0 + timedelta(minutes=5))
    uid, _ = world.only_draft()
    # No person to write to in a no-reply rejection: the user fills in the recipient.
    sent = world.client.send_draft(uid, T0 + timedelta(hours=1), to="talent@brightloom.io")
    threads[sent] = 1778000000000000042
    gmail_cycle(world, threads, T0 + timedelta(hours=2))

    second = world.deliver(
        sender,
        subject,
        "Hi Alex,\n\nThank you for applying for the Product Designer role at Brightloom. "
        "Unfortunately we will not be progressing your application.\n\n"
        "The Brightloom Talent Team\n",
        T0 + timedelta(days=5),
    )
    threads[second] = 1778000000000000042
    gmail_cycle(world, threads, T0 + timedelta(days=5, minutes=5))
    rows = sorted(world.status(), key=lambda row: int(row["id"]))
    assert [row["state"] for row in rows] == ["requested", "needs_contact"]
    assert [row["role"] for row in rows] == ["Data Engineer", "Product Designer"]


# -- What review found (session 9): sequences the guide answers otherwise ------------------


def answer_by_hand(
    world: World, to: str, text: str, when: datetime, answers: str, references: str | None = None
) -> None:
    """The user's own answer to `answers`, written on another device while nextround was
    down: only its copy in Sent shows it."""
    raw, _ = mail(
        f"Alex Doe <{world.user.username}>",
        "Re: Your application for Senior Data Engineer",
        text,
        when,
        in_reply_to=answers,
        references=references,
    )
    raw = raw.replace(b"To: Alex Doe <{user}>", f"To: {to}".encode())
    world.user.append("Sent", raw, flags=["\\Seen"], date=when)


def send_request(world: World, *, to: str | None = None) -> str:
    world.deliver(*INTERVIEW_REJECTION, when=T0)
    world.once(T0 + timedelta(minutes=5))
    uid, _ = world.only_draft()
    sent_id = world.client.send_draft(uid, T0 + timedelta(hours=1), to=to)
    world.once(T0 + timedelta(hours=2))
    assert world.status()[0]["state"] == "requested"
    return sent_id


def test_follow_up_goes_to_the_recipient_the_user_chose_for_a_needs_contact_request(
    world: World,
) -> None:
    """No human in the rejection: the user adds hr.lead@... and sends. A week later the
    follow-up must answer that person, not be a recipient-less draft claiming that 'no human
    contact was found'."""
    world.deliver(
        "Halden Foods <donotreply@myworkday.com>",
        "Your application to Halden Foods",
        "Dear Alex,\n\nThank you for interviewing for the Supply Chain Analyst position at "
        "Halden Foods. After careful consideration we regret to inform you that we will not "
        "be progressing your application further. We wish you every success.\n\n"
        "Halden Foods Talent Acquisition\n",
        T0,
    )
    world.once(T0 + timedelta(minutes=5))
    uid, _ = world.only_draft()
    world.client.send_draft(uid, T0 + timedelta(hours=1), to="Hana Lee <hr.lead@haldenfoods.com>")
    world.once(T0 + timedelta(hours=2))
    assert world.status()[0]["state"] == "requested"

    world.once(T0 + timedelta(days=8))
    assert world.status()[0]["state"] == "followed_up"
    _, follow_up = world.only_draft()
    body = follow_up.get_content()
    assert follow_up["To"] is not None and "hr.lead@haldenfoods.com" in str(follow_up["To"]), (
        f"follow-up To={follow_up['To']!r}; body starts {body[:120]!r}"
    )


def test_follow_up_goes_to_the_recipient_the_user_replaced(world: World) -> None:
    """The user readdresses the request draft (to the recruiter's manager) and sends it: the
    one follow-up must go to the person who actually got the request."""
    send_request(world, to="Sam Ortiz <sam.ortiz@brightloom.io>")
    world.once(T0 + timedelta(days=8))
    _, follow_up = world.only_draft()
    assert "sam.ortiz@brightloom.io" in str(follow_up["To"]), f"To={follow_up['To']!r}"


def test_thank_you_to_a_reply_relayed_by_an_ats_goes_to_its_reply_to(world: World) -> None:
    """The recruiter answers from the ATS: From is the ATS's no-reply address, Reply-To is
    the recruiter. ETIQUETTE: 'Never a no-reply address.'"""
    sent_id = send_request(world)
    reply_at = T0 + timedelta(days=2)
    world.deliver(
        "Priya Raman <no-reply@us.greenhouse-mail.io>",
        "Re: Your application for Senior Data Engineer",
        "Hi Alex,\n\nHappy to share a couple of thoughts: more depth on streaming systems "
        "would have helped.\n\nPriya\n",
        reply_at,
        in_reply_to=sent_id,
        Reply_To="Priya Raman <priya.raman@brightloom.io>",
    )
    world.once(reply_at + timedelta(minutes=5))
    assert world.status()[0]["state"] == "replied"
    _, thanks = world.only_draft()
    assert "no-reply" not in str(thanks["To"]), f"thank-you To={thanks['To']!r}"


def test_no_follow_up_pressing_for_advice_after_a_no_feedback_note(world: World) -> None:
    """The company says it gives no individual feedback; the request (application stage,
    soft note) tells them 'there is no need to reply'. ETIQUETTE: after an application-stage
    rejection a soft note fits; make it easy to decline, no pressure. A follow-up a week
    later asking 'for a line or two of advice' contradicts both the guide and the user's own
    note."""
    world.deliver(
        "Marta Klein <marta.klein@solventstudio.de>",
        "Your application: Junior Motion Designer",
        "Hi Alex,\n\nThank you for your application for the Junior Motion Designer role at "
        "Solvent Studio. After reviewing your application, we have decided not to invite you "
        "to an interview. Due to the number of applications we receive, we are unable to "
        "provide individual feedback.\n\nWe wish you all the best.\n\nMarta Klein\n"
        "Talent Acquisition, Solvent Studio\n",
        T0,
    )
    world.once(T0 + timedelta(minutes=5))
    uid, request = world.only_draft()
    request_body = request.get_content()
    row = world.status()[0]
    assert row["stage"] == "application", row
    assert "no need to reply" in request_body, request_body
    sent_id = world.client.send_draft(uid, T0 + timedelta(hours=1))
    world.once(T0 + timedelta(hours=2))
    world.once(T0 + timedelta(days=8))
    # No follow-up pressing for what they said they do not give.
    assert world.client.drafts() == {}
    assert world.status()[0]["state"] == "requested"
    # But as long to answer as with one: a late answer is still thanked.
    reply_at = T0 + timedelta(days=10)
    world.deliver(
        "Marta Klein <marta.klein@solventstudio.de>",
        "Re: Your application: Junior Motion Designer",
        "Hi Alex,\n\nOne thing: show more of your process in the portfolio.\n\nMarta\n",
        reply_at,
        in_reply_to=sent_id,
    )
    world.once(reply_at + timedelta(minutes=5))
    assert world.status()[0]["state"] == "replied"
    assert [str(d["X-Nextround-Application"]) for d in world.client.drafts().values()] == [
        "1; step=thank_you"
    ]


def test_precedence_junk_vacation_notice_is_not_the_reply(world: World) -> None:
    """vacation(1)-style responders mark their notice 'Precedence: junk' (or bulk) and keep
    the subject; it is no reply, and must neither draft a thank-you nor cancel the
    follow-up."""
    sent_id = send_request(world)
    world.deliver(
        *INTERVIEW_REJECTION[:1],
        "Re: Your application for Senior Data Engineer",
        "I am travelling until 20 November with limited access to email. For urgent matters "
        "please contact talent@brightloom.io.\n",
        T0 + timedelta(hours=3),
        in_reply_to=sent_id,
        Precedence="junk",
    )
    world.once(T0 + timedelta(hours=4))
    row = world.status()[0]
    assert row["state"] == "requested", f"the vacation notice made it {row['state']}"


def test_rejection_already_answered_by_hand_during_downtime_gets_no_second_request(
    world: World,
) -> None:
    """The laptop is off over the weekend. Saturday: the rejection arrives and the user
    answers it by hand from their phone (the sent copy is in Sent, In-Reply-To the
    rejection). Monday nextround starts: it syncs Sent first (no application yet, so the
    sent copy is dropped), then INBOX opens the application and drafts a feedback request
    the user already sent. ETIQUETTE: only one request, one follow-up."""
    world.once(T0 - timedelta(days=1))  # a normal cycle before the downtime
    rejection_id = world.deliver(*INTERVIEW_REJECTION, when=T0)
    answer_by_hand(
        world,
        "Priya Raman <priya.raman@brightloom.io>",
        "Hi Priya,\n\nThank you for letting me know. Could you share one or two things I "
        "could work on for a role like this?\n\nBest,\nAlex\n",
        T0 + timedelta(hours=2),
        rejection_id,
    )
    world.once(T0 + timedelta(days=2))
    drafts = world.client.drafts()
    rows = world.status()
    assert rows[0]["state"] == "requested", rows
    assert drafts == {}, (
        f"state {rows[0]['state']}: drafted "
        f"{[str(d['X-Nextround-Application']) for d in drafts.values()]}"
    )


def test_first_start_does_not_draft_a_request_for_a_rejection_weeks_old(world: World) -> None:
    """The first run reads back 30 days. ETIQUETTE: ask 'promptly: within about 24 hours of
    the rejection arriving'. A request drafted 25 days after the rejection (and then a
    follow-up) is not what the guide describes."""
    world.deliver(*INTERVIEW_REJECTION, when=T0 - timedelta(days=25))
    world.once(T0)
    assert world.client.drafts() == {}
    row = world.status()[0]
    assert row["state"] == "skipped", row


def test_thank_you_references_keep_the_chain_when_the_reply_has_no_references(
    world: World,
) -> None:
    """RFC 5322 3.6.4: with no References in the parent, the reply's References are the
    parent's In-Reply-To followed by the parent's Message-ID."""
    sent_id = send_request(world)
    reply = EmailMessage()
    reply["From"] = INTERVIEW_REJECTION[0]
    reply["To"] = f"Alex Doe <{world.user.username}>"
    reply["Subject"] = "Re: Your application for Senior Data Engineer"
    reply_at = T0 + timedelta(days=2)
    reply["Date"] = format_datetime(reply_at)
    reply_id = make_msgid(domain="sender.example")
    reply["Message-ID"] = reply_id
    reply["In-Reply-To"] = sent_id
    reply.set_content("Hi Alex,\n\nMore depth on streaming systems would help.\n\nPriya\n")
    world.client.deliver(reply.as_bytes(), reply_at)
    world.once(reply_at + timedelta(minutes=5))
    _, thanks = world.only_draft()
    assert thanks["In-Reply-To"] == reply_id
    assert sent_id in str(thanks["References"]), f"References: {thanks['References']}"


def test_reply_already_thanked_by_hand_during_downtime_gets_no_thank_you_draft(
    world: World,
) -> None:
    """Daemon down from day 1 to day 4. Day 2 the recruiter answers; the user thanks her by
    hand the same evening. On restart Sent is synced first (the application is `requested`,
    which on_sent does not look at), then INBOX: the reply drafts a second thank-you."""
    sent_id = send_request(world)
    reply_at = T0 + timedelta(days=2)
    reply_id = world.deliver(
        *INTERVIEW_REJECTION[:1],
        "Re: Your application for Senior Data Engineer",
        "Hi Alex,\n\nHappy to share a few thoughts: more depth on streaming systems.\n\nPriya\n",
        reply_at,
        in_reply_to=sent_id,
    )
    answer_by_hand(
        world,
        "Priya Raman <priya.raman@brightloom.io>",
        "Hi Priya,\n\nThank you so much, that is really helpful.\n\nAlex\n",
        reply_at + timedelta(hours=5),
        reply_id,
        references=f"{sent_id} {reply_id}",
    )
    world.once(T0 + timedelta(days=4))
    drafts = world.client.drafts()
    assert world.status()[0]["state"] == "replied"
    assert drafts == {}, (
        f"state {world.status()[0]['state']}: drafted "
        f"{[str(d['X-Nextround-Application']) for d in drafts.values()]}"
    )


def test_a_reply_without_threading_headers_from_the_person_asked_is_the_reply(
    world: World,
) -> None:
    """Some tools write no In-Reply-To or References, and outside Gmail there is no
    conversation id: a mail from the person the request went to, under its subject, after it
    was sent, is their reply. No follow-up then asks again; a thank-you is drafted."""
    send_request(world)
    reply_at = T0 + timedelta(days=2)
    world.deliver(
        *INTERVIEW_REJECTION[:1],
        "Re: Your application for Senior Data Engineer",
        "Hi Alex,\n\nHappy to share a few thoughts: the panel wanted more depth on streaming "
        "systems.\n\nPriya\n",
        reply_at,
    )
    world.once(reply_at + timedelta(minutes=5))
    assert world.status()[0]["state"] == "replied"
    world.once(T0 + timedelta(days=8))
    steps = [str(d["X-Nextround-Application"]) for d in world.client.drafts().values()]
    assert steps == ["1; step=thank_you"], steps


def test_the_recruiters_own_note_after_the_ats_one_gives_the_application_a_contact(
    world: World,
) -> None:
    """The ATS's no-reply rejection comes first (a request drafted to nobody), the
    recruiter's own an hour later: the same application, now with someone to write to. The
    request is not drafted twice; `status` names her, and the follow-up would go to her."""
    world.deliver(
        "Brightloom <no-reply@us.greenhouse-mail.io>",
        "Update on your Brightloom application",
        "Hi Alex,\n\nThank you for interviewing for the Senior Data Engineer position at "
        "Brightloom. After careful review, we have decided not to move forward with your "
        "candidacy at this time. We wish you success in your search.\n\nBrightloom Recruiting\n",
        T0,
    )
    world.once(T0 + timedelta(minutes=5))
    assert [row["contact"] for row in world.status()] == [None]
    world.deliver(*INTERVIEW_REJECTION, when=T0 + timedelta(hours=1))
    out = world.once(T0 + timedelta(hours=1, minutes=5))
    [row] = world.status()
    assert row["state"] == "needs_contact" and "priya.raman@brightloom.io" in row["contact"]
    assert "contact found" in out
    assert len(world.client.drafts()) == 1


def test_follow_up_after_a_request_answered_by_hand_goes_to_whom_it_went(world: World) -> None:
    """The rejection comes from the recruiter; the user, before nextround saw it (downtime),
    answers by hand to the hiring manager: the one follow-up goes to the hiring manager."""
    world.once(T0 - timedelta(days=1))
    rejection_id = world.deliver(*INTERVIEW_REJECTION, when=T0)
    answer_by_hand(
        world,
        "Sam Ortiz <sam.ortiz@brightloom.io>",
        "Hi Sam,\n\nThank you for the interviews. Could you share one or two things I could "
        "work on for a role like this?\n\nBest,\nAlex\n",
        T0 + timedelta(hours=2),
        rejection_id,
    )
    world.once(T0 + timedelta(days=1))
    assert world.status()[0]["state"] == "requested"
    world.once(T0 + timedelta(days=9))
    _, follow_up = world.only_draft()
    assert "sam.ortiz@brightloom.io" in str(follow_up["To"]), f"To={follow_up['To']!r}"


def test_the_same_recruiters_next_rejection_under_the_same_subject_is_no_reply(
    world: World,
) -> None:
    """A recruiter rejects for one role, the user asks for feedback; days later the same
    recruiter rejects another role under the ATS's same subject (no threading headers, as
    every fresh rejection). That is a new rejection, not the reply to the request."""
    subject = "Your application to Brightloom"
    world.deliver(INTERVIEW_REJECTION[0], subject, INTERVIEW_REJECTION[2], T0)
    world.once(T0 + timedelta(minutes=5))
    uid, _ = world.only_draft()
    world.client.send_draft(uid, T0 + timedelta(hours=1))
    world.once(T0 + timedelta(hours=2))
    assert world.status()[0]["state"] == "requested"
    second_at = T0 + timedelta(days=3)
    world.deliver(
        INTERVIEW_REJECTION[0],
        subject,
        "Hi Alex,\n\nThank you for interviewing for the Analytics Engineer role at Brightloom. "
        "After careful consideration we have decided to move forward with another candidate "
        "for this position.\n\nWe wish you the best in your search.\n\nBest,\nPriya Raman\n"
        "Talent Partner, Brightloom\n",
        second_at,
    )
    world.once(second_at + timedelta(minutes=5))
    rows = world.status()
    steps = [str(d["X-Nextround-Application"]) for d in world.client.drafts().values()]
    assert len(rows) == 2 and rows[0]["state"] == "requested", (rows, steps)


def test_a_long_display_name_adds_no_recipient_to_the_request(world: World) -> None:
    """The rejection's quoted display name, long enough to fold: its ", evil@..." must not
    become a second recipient of the request."""
    name = "Priya Raman, Brightloom Platform and Analytics Engineering, evil@attacker.example, P"
    body = INTERVIEW_REJECTION[2].replace("\n", "\r\n")
    raw = (
        f'From: "{name}" <priya.raman@brightloom.io>\r\nTo: Alex Doe <{world.user.username}>\r\n'
        f"Subject: {INTERVIEW_REJECTION[1]}\r\nDate: Mon, 02 Nov 2026 09:00:00 +0000\r\n"
        f"Message-ID: <rej-long-name@brightloom.io>\r\n\r\n{body}"
    ).encode()
    world.client.deliver(raw, T0)
    world.once(T0 + timedelta(minutes=5))
    _, draft = world.only_draft()
    assert draft["To"] is not None, (world.status(), draft.as_bytes()[:300])
    to = [a.addr_spec for a in draft["To"].addresses]
    assert to == ["priya.raman@brightloom.io"], (str(draft["To"]), draft.as_bytes()[:300])


def test_a_reply_to_a_request_sent_from_a_client_keeping_no_sent_copy_is_thanked(
    world: World,
) -> None:
    """The draft vanished with no sent copy, so the application was skipped; the reply names
    the draft's own Message-ID (the client kept it), which proves it was sent."""
    rejection_id, sent_id = world.request_sent_without_a_copy()
    world.once(T0 + timedelta(hours=1))
    world.once(T0 + timedelta(hours=2))
    assert world.status()[0]["state"] == "skipped"

    reply_at = T0 + timedelta(days=3)
    reply_id = world.priya_replies(reply_at, sent_id, f"{rejection_id} {sent_id}")
    world.once(reply_at + timedelta(minutes=5))
    [row] = world.status()
    assert row["state"] == "replied"
    _, thanks = world.only_draft()
    assert str(thanks["X-Nextround-Application"]).endswith("step=thank_you")
    assert thanks["In-Reply-To"] == reply_id
    assert thanks["To"] == "Priya Raman <priya.raman@brightloom.io>"
    world.once(reply_at + timedelta(days=20))
    assert len(world.client.drafts()) == 1, "one thank-you, nothing after it"


def test_a_reply_after_the_application_closed_is_thanked(world: World) -> None:
    _, sent_id = world.request_sent()
    world.once(T0 + timedelta(hours=2))
    world.once(T0 + timedelta(days=8))
    uid, _ = world.only_draft()
    follow_up_id = world.client.send_draft(uid, T0 + timedelta(days=8, hours=1))
    world.once(T0 + timedelta(days=8, hours=2))
    world.once(T0 + timedelta(days=16))
    assert world.status()[0]["state"] == "closed"

    reply_at = T0 + timedelta(days=25)
    world.priya_replies(reply_at, follow_up_id, f"{sent_id} {follow_up_id}")
    world.once(reply_at + timedelta(minutes=5))
    assert world.status()[0]["state"] == "replied"
    _, thanks = world.only_draft()
    assert str(thanks["X-Nextround-Application"]).endswith("step=thank_you")


def test_what_the_user_skipped_stays_skipped_whatever_answers_it(world: World) -> None:
    _, sent_id = world.request_sent_without_a_copy()
    assert run_cli("-c", str(world.config), "skip", "1").code == 0
    world.priya_replies(T0 + timedelta(days=1), sent_id)
    world.once(T0 + timedelta(days=1, minutes=5))
    assert world.status()[0]["state"] == "skipped"
    assert world.client.drafts() == {}


def test_a_reply_naming_the_draft_before_it_counted_as_deleted_is_thanked(world: World) -> None:
    """Sent from a client keeping no sent copy, and answered before the draft counted as
    deleted (the daemon was down meanwhile): the reply names the draft, so it was sent."""
    rejection_id, sent_id = world.request_sent_without_a_copy()
    reply_at = T0 + timedelta(days=1)
    world.priya_replies(reply_at, sent_id, f"{rejection_id} {sent_id}")
    world.once(reply_at + timedelta(minutes=5))
    world.once(reply_at + timedelta(hours=1))
    [row] = world.status()
    assert row["state"] == "replied", row
    _, thanks = world.only_draft()
    assert str(thanks["X-Nextround-Application"]).endswith("step=thank_you")


def test_a_second_late_reply_drafts_no_second_thank_you(world: World) -> None:
    rejection_id, sent_id = world.request_sent_without_a_copy()
    world.once(T0 + timedelta(hours=1))
    world.once(T0 + timedelta(hours=2))
    assert world.status()[0]["state"] == "skipped"
    for day in (3, 4):
        world.deliver(
            "Priya Raman <priya.raman@brightloom.io>",
            "Re: Your application for Senior Data Engineer",
            REPLY_BODY,
            T0 + timedelta(days=day),
            in_reply_to=sent_id,
            references=f"{rejection_id} {sent_id}",
        )
        world.once(T0 + timedelta(days=day, minutes=5))
    assert world.status()[0]["state"] == "replied"
    assert len(world.client.drafts()) == 1


def test_the_user_may_end_what_nextround_closed_and_no_late_reply_reopens_it(
    world: World,
) -> None:
    _, sent_id = world.request_sent()
    world.once(T0 + timedelta(hours=2))
    world.once(T0 + timedelta(days=8))
    uid, _ = world.only_draft()
    world.client.delete_draft(uid)
    world.once(T0 + timedelta(days=8, hours=1))
    world.once(T0 + timedelta(days=8, hours=2))
    assert world.status()[0]["state"] == "closed"
    result = run_cli("-c", str(world.config), "skip", "1")
    assert result.code == 0, result.err
    again = run_cli("-c", str(world.config), "close", "1")
    assert again.code == 2 and "is skipped" in again.err  # once is the user's word
    world.priya_replies(T0 + timedelta(days=12), sent_id)
    world.once(T0 + timedelta(days=12, minutes=5))
    assert world.status()[0]["state"] == "skipped"
    assert world.client.drafts() == {}


def test_an_ats_notice_threading_to_the_sent_request_reopens_nothing(world: World) -> None:
    rejection_id, sent_id = world.request_sent()
    world.once(T0 + timedelta(hours=2))
    world.once(T0 + timedelta(days=8))
    world.once(T0 + timedelta(days=16))
    assert world.status()[0]["state"] == "closed"
    world.deliver(
        "Brightloom Careers <no-reply@brightloom.io>",
        "Re: Your application for Senior Data Engineer",
        "This mailbox is not monitored. Please visit our careers site for updates.\n",
        T0 + timedelta(days=20),
        in_reply_to=sent_id,
        references=f"{rejection_id} {sent_id}",
    )
    world.once(T0 + timedelta(days=20, minutes=5))
    assert world.status()[0]["state"] == "closed"
    assert len(world.client.drafts()) == 1  # the unsent follow-up, nothing more


def test_an_out_of_office_naming_the_draft_proves_it_was_sent(world: World) -> None:
    """No thank-you for a notice, but the request was sent: a follow-up is due later."""
    rejection_id, sent_id = world.request_sent_without_a_copy()
    world.deliver(
        "Priya Raman <priya.raman@brightloom.io>",
        "Out of office: Re: Your application for Senior Data Engineer",
        "I am out of the office until Monday and will reply when I am back.\n",
        T0 + timedelta(minutes=31),
        in_reply_to=sent_id,
        references=f"{rejection_id} {sent_id}",
        Auto_Submitted="auto-replied",
    )
    for at in (timedelta(minutes=35), timedelta(hours=1), timedelta(hours=2)):
        world.once(T0 + at)
    assert world.status()[0]["state"] == "requested"
    assert world.client.drafts() == {}
    world.once(T0 + timedelta(days=8))
    _, follow_up = world.only_draft()
    assert str(follow_up["X-Nextround-Application"]).endswith("step=follow_up")


def test_skip_waits_for_a_running_cycle_and_is_never_written_over(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`skip` run while a cycle is between reading the pending drafts and deciding one is
    gone: it waits for the cycle (here: gives up at once), so the cycle cannot write its
    "draft gone" over the user's skip; run again, it ends the application for good."""
    rejection_id, sent_id = world.request_sent_without_a_copy()
    world.once(T0 + timedelta(hours=1))  # the draft is missing from now on
    original = ImapMailbox.folder_headers
    during: list[tuple[int, str]] = []

    def folder_headers(self: ImapMailbox, folder: str) -> dict[int, bytes]:
        if not during:  # the user's command, while this IMAP call is in flight
            result = run_cli("-c", str(world.config), "skip", "1", "--wait", "0")
            during.append((result.code, result.err))
        return original(self, folder)

    monkeypatch.setattr(ImapMailbox, "folder_headers", folder_headers)
    world.once(T0 + timedelta(hours=2))
    monkeypatch.undo()
    assert during and during[0][0] == 1 and "another nextround cycle is running" in during[0][1]
    assert world.status()[0]["state"] == "skipped"  # the cycle's: the draft is gone
    assert run_cli("-c", str(world.config), "skip", "1").code == 0  # now the user's
    world.priya_replies(T0 + timedelta(days=1), sent_id, f"{rejection_id} {sent_id}")
    world.once(T0 + timedelta(days=1, minutes=5))
    assert world.status()[0]["state"] == "skipped", "the user's skip stands"
    assert world.client.drafts() == {}


# -- What review found (session 13) ----------------------------------------------------

SECOND_REJECTION_BODY = (
    "Hi Alex,\n\nThank you for interviewing for the Analytics Engineer role at Brightloom. "
    "After careful consideration we have decided to move forward with another candidate "
    "for this position.\n\nWe wish you the best in your search.\n\nBest,\nPriya Raman\n"
    "Talent Partner, Brightloom\n"
)


def draft_steps(world: World) -> list[str]:
    return sorted(str(d["X-Nextround-Application"]) for d in world.client.drafts().values())


def test_gmail_conversation_second_rejection_from_the_same_recruiter_is_no_reply(
    world: World,
) -> None:
    """Gmail files same-subject mail from one sender in one conversation. Priya rejects the
    user for one role, the user sends the request; three days later Priya rejects another
    role under the same subject (a fresh mail, no threading headers). Gmail puts it in the
    first conversation. It is a new rejection, not Priya's answer to the request: no
    thank-you for it, and the first application keeps waiting (its follow-up is still due)."""
    threads: dict[str, int] = {}
    conversation = 1778000000000000077
    subject = "Your application to Brightloom"
    first = world.deliver(INTERVIEW_REJECTION[0], subject, INTERVIEW_REJECTION[2], T0)
    threads[first] = conversation
    gmail_cycle(world, threads, T0 + timedelta(minutes=5))
    uid, _ = world.only_draft()
    sent = world.client.send_draft(uid, T0 + timedelta(hours=1))
    threads[sent] = conversation
    gmail_cycle(world, threads, T0 + timedelta(hours=2))
    assert world.status()[0]["state"] == "requested"

    second_at = T0 + timedelta(days=3)
    second = world.deliver(INTERVIEW_REJECTION[0], subject, SECOND_REJECTION_BODY, second_at)
    threads[second] = conversation
    gmail_cycle(world, threads, second_at + timedelta(minutes=5))
    rows = sorted(world.status(), key=lambda row: int(row["id"]))
    assert [row["state"] for row in rows] == ["requested", "drafted"], (rows, draft_steps(world))
    assert draft_steps(world) == ["2; step=request"], draft_steps(world)


def test_an_ats_notice_threading_to_the_open_request_is_no_reply(world: World) -> None:
    """The request is sent (state requested). The company's no-reply system answers in the
    thread ("This mailbox is not monitored", with no Auto-Submitted header, as many do).
    Nobody answered: no thank-you ("thank you for taking the time to write") to Priya, and
    the one follow-up is still drafted a week later. The same notice after the application
    closed is already ignored (test_an_ats_notice_threading_to_the_sent_request_reopens_nothing);
    while it is open it ends it as 'replied'."""
    rejection_id = world.deliver(*INTERVIEW_REJECTION, when=T0)
    world.once(T0 + timedelta(minutes=5))
    uid, _ = world.only_draft()
    sent_id = world.client.send_draft(uid, T0 + timedelta(hours=1))
    world.once(T0 + timedelta(hours=2))
    assert world.status()[0]["state"] == "requested"
    world.deliver(
        "Brightloom Careers <no-reply@brightloom.io>",
        "Re: Your application for Senior Data Engineer",
        "This mailbox is not monitored. Please visit our careers site for updates.\n",
        T0 + timedelta(hours=3),
        in_reply_to=sent_id,
        references=f"{rejection_id} {sent_id}",
    )
    world.once(T0 + timedelta(hours=4))
    assert world.status()[0]["state"] == "requested", draft_steps(world)
    world.once(T0 + timedelta(days=8))
    assert draft_steps(world) == ["1; step=follow_up"], draft_steps(world)


def test_sending_the_second_of_two_same_subject_requests_marks_the_second_sent(
    world: World,
) -> None:
    """Priya rejects the user for two roles the same morning, under the ATS's one subject:
    two applications, two request drafts, both to Priya under "Re: Your application to
    Brightloom". The user sends the second (the Analytics Engineer one) from a client that
    drops unknown headers (Gmail; the default of the simulated client) but keeps In-Reply-To,
    which names the second rejection. The first stays unsent in Drafts.

    Expected: #2 requested, #1 still drafted. Found: the sent copy is taken for #1 (the
    first application whose contact and subject match, checked before #2's In-Reply-To), so
    #1 is 'requested' (a follow-up "on my note from ..." will be drafted for a note never
    sent) and #2, whose draft left Drafts, is taken as deleted and skipped."""
    subject = "Your application to Brightloom"
    world.deliver(INTERVIEW_REJECTION[0], subject, INTERVIEW_REJECTION[2], T0)
    second_id = world.deliver(
        INTERVIEW_REJECTION[0], subject, SECOND_REJECTION_BODY, T0 + timedelta(minutes=2)
    )
    world.once(T0 + timedelta(minutes=5))
    drafts = world.client.drafts()
    assert len(drafts) == 2, draft_steps(world)
    [uid] = [uid for uid, d in drafts.items() if d["In-Reply-To"] == second_id]
    world.client.send_draft(uid, T0 + timedelta(hours=1))
    world.once(T0 + timedelta(hours=2))
    world.once(T0 + timedelta(hours=3))
    rows = sorted(world.status(), key=lambda row: int(row["id"]))
    assert [row["state"] for row in rows] == ["drafted", "requested"], rows


def test_a_no_reply_rejection_is_never_drafted_to_another_companys_person(world: World) -> None:
    """A friend who works at Metabase writes about dinner (ordinary mail: nextround files her
    under her domain's name, "metabase"). A week later Meta rejects the user through
    Greenhouse's no-reply address, and no Meta person ever wrote. ETIQUETTE: the recipient is
    "the human contact from earlier mail in the same thread or with the same company, or
    nobody". Found: "meta" is a prefix of "metabase", so the request goes to the friend."""
    world.deliver(
        "Dana Whitfield <dana.whitfield@metabase.com>",
        "Dinner on Friday?",
        "Hey Alex,\n\nAre you free for dinner on Friday? There is a new ramen place near "
        "the station I want to try.\n\nDana\n",
        T0 - timedelta(days=7),
    )
    world.deliver(
        "Meta <no-reply@us.greenhouse-mail.io>",
        "Update on your Meta application",
        "Hi Alex,\n\nThank you for interviewing for the Product Designer position at Meta. "
        "After careful review, we have decided not to move forward with your candidacy at "
        "this time. We appreciate the time you invested in our process and wish you success "
        "in your search.\n\nMeta Recruiting\n",
        T0,
    )
    world.once(T0 + timedelta(minutes=5))
    [row] = world.status()
    assert row["company"] == "Meta", row
    _, draft = world.only_draft()
    assert "metabase" not in str(draft["To"]), f"To={draft['To']!r}"
    assert row["contact"] is None, row


def test_an_unthreaded_reply_that_recalls_the_decision_is_still_the_reply(world: World) -> None:
    """Priya answers the request from a tool that writes no In-Reply-To or References, under
    the request's own subject, after it was sent (what the README says is recognised). Her
    answer, like most real ones, recalls the decision ("in the end we went with a candidate
    with more ..."), so the classifier calls it a rejection; then it is not taken as the
    reply at all, but filed as 'same application' mail. Found: no thank-you, and a week
    later a follow-up asking again for the advice she already gave."""
    send_request(world)
    reply_at = T0 + timedelta(days=2)
    world.deliver(
        INTERVIEW_REJECTION[0],
        "Re: Your application for Senior Data Engineer",
        "Hi Alex,\n\nThanks for asking. It was a close call; in the end we went with a "
        "candidate with more streaming experience. That would be my one suggestion.\n\n"
        "All the best,\nPriya\n",
        reply_at,
    )
    world.once(reply_at + timedelta(minutes=5))
    world.once(T0 + timedelta(days=8))
    assert world.status()[0]["state"] == "replied", draft_steps(world)
    assert draft_steps(world) == ["1; step=thank_you"], draft_steps(world)


def test_a_draft_left_from_an_earlier_state_does_not_stand_for_a_new_rejection(
    world: World,
) -> None:
    """The user once ran nextround with another state directory (a user unit before the
    system unit of docs/install.md, or a reinstall) and left one of its request drafts in
    Drafts unsent (stale drafts stay there: nextround deletes nothing). Its header reads
    "1; step=request", answering another company's rejection. With the new state, the first
    new rejection is application #1 again: `recover` finds the old draft by that header
    alone and records it as this rejection's request. Found: no draft is written for the
    new rejection (the user sees only the old one, to another company)."""
    old = (
        f"From: Alex Doe <{world.user.username}>\r\n"
        "To: Sam Lee <sam.lee@globexhq.com>\r\n"
        "Subject: Re: Your application to Globex\r\n"
        "Date: Mon, 05 Oct 2026 09:00:00 +0000\r\n"
        "Message-ID: <old-draft@example.org>\r\n"
        "In-Reply-To: <old-rejection@globexhq.com>\r\n"
        "References: <old-rejection@globexhq.com>\r\n"
        "X-Nextround-Application: 1; step=request\r\n"
        "\r\nHi Sam,\r\n\r\nThank you for letting me know...\r\n"
    ).encode()
    world.user.append("Drafts", old, flags=["\\Draft", "\\Seen"], date=T0 - timedelta(days=28))
    rejection_id = world.deliver(*INTERVIEW_REJECTION, when=T0)
    world.once(T0 + timedelta(minutes=5))
    answering = [str(d["In-Reply-To"]) for d in world.client.drafts().values()]
    assert rejection_id in answering, answering


def test_a_later_rejection_naming_no_role_is_not_swallowed_by_a_finished_application(
    world: World,
) -> None:
    """Brightloom rejects the user for Senior Data Engineer; the request is sent, Priya
    answers, a thank-you is drafted: that application is over. Three weeks later the user,
    who interviewed for another Brightloom role meanwhile, is rejected again by Priya in a
    fresh mail that names no role (many do). Found: `recent_for_company` (a role missing on
    either side counts as the same role, whatever the earlier application's state or age
    within 60 days) files it under the finished application: no request for it."""
    sent_id = send_request(world)
    reply_at = T0 + timedelta(days=2)
    world.priya_replies(reply_at, sent_id)
    world.once(reply_at + timedelta(minutes=5))
    assert world.status()[0]["state"] == "replied"

    later = T0 + timedelta(days=21)
    world.deliver(
        INTERVIEW_REJECTION[0],
        "Following up on your interviews",
        "Hi Alex,\n\nThank you for taking the time to meet the team again last week. After "
        "careful consideration we have decided not to move forward with your candidacy for "
        "this position.\n\nWe appreciate your interest and wish you the best.\n\nBest,\n"
        "Priya Raman\nTalent Partner, Brightloom\n",
        later,
    )
    world.once(later + timedelta(minutes=5))
    rows = sorted(world.status(), key=lambda row: int(row["id"]))
    assert [row["state"] for row in rows] == ["replied", "drafted"], (rows, draft_steps(world))


def test_a_follow_up_the_user_wrote_by_hand_is_the_one_follow_up(world: World) -> None:
    """The request is sent on day 0. On day 5 the user, impatient, nudges Priya by hand in
    the same thread (In-Reply-To the sent request; its copy is in Sent). ETIQUETTE: "Only
    one follow-up ... after that, move on". nextround looks in Sent for what the user did by
    hand for the request and the thank-you, but not here (on_sent never looks at a
    `requested` application). Found: on day 8 a second follow-up is drafted ("I wanted to
    follow up gently on my note ...")."""
    sent_id = send_request(world)
    answer_by_hand(
        world,
        "Priya Raman <priya.raman@brightloom.io>",
        "Hi Priya,\n\nJust bumping this in case it got buried. No pressure at all.\n\nAlex\n",
        T0 + timedelta(days=5),
        sent_id,
    )
    world.once(T0 + timedelta(days=5, hours=1))
    world.once(T0 + timedelta(days=8))
    assert draft_steps(world) == [], (world.status()[0]["state"], draft_steps(world))


def test_the_follow_up_goes_under_the_subject_the_user_sent(world: World) -> None:
    """The user changes the request's subject before sending it: the follow-up answers what
    was sent, under that subject (found in review, session 13)."""
    world.deliver(*INTERVIEW_REJECTION, when=T0)
    world.once(T0 + timedelta(minutes=5))
    uid, _ = world.only_draft()
    subject = "Feedback on the Senior Data Engineer interview?"
    sent_id = world.client.send_draft(uid, T0 + timedelta(hours=1), subject=subject)
    world.once(T0 + timedelta(hours=2))
    world.once(T0 + timedelta(days=8))
    _, follow_up = world.only_draft()
    assert follow_up["Subject"] == "Re: " + subject
    assert follow_up["In-Reply-To"] == sent_id


# -- What the review of those fixes found (session 13) -------------------------------------

HALDEN_REJECTION = (
    "Halden Foods <donotreply@myworkday.com>",
    "Your application to Halden Foods",
    "Dear Alex,\n\nThank you for interviewing for the Supply Chain Analyst position at "
    "Halden Foods. After careful consideration we regret to inform you that we will not "
    "be progressing your application further. We wish you every success.\n\n"
    "Halden Foods Talent Acquisition\n",
)


def sent_by_hand(
    world: World,
    to: str,
    subject: str,
    text: str,
    when: datetime,
    in_reply_to: str,
    references: str | None = None,
) -> str:
    """A mail the user wrote by hand (its copy in Sent): its Message-ID."""
    raw, message_id = mail(
        f"Alex Doe <{world.user.username}>", subject, text, when,
        in_reply_to=in_reply_to, references=references,
    )  # fmt: skip
    raw = raw.replace(b"To: Alex Doe <{user}>", f"To: {to}".encode())
    world.user.append("Sent", raw, flags=["\\Seen"], date=when)
    return message_id


@pytest.mark.parametrize(
    "person",
    ["Hana Lee <hr.lead@haldenfoods.com>", "Halden Foods Recruiting <recruiting@haldenfoods.com>"],
)
def test_a_reply_from_the_address_the_request_went_to_is_the_reply(
    world: World, person: str
) -> None:
    """No human in the rejection: the user sends the request to the address they know
    (hr.lead@..., or the company's recruiting inbox). The answer comes from that address,
    In-Reply-To the sent request, with real advice: the reply, thanked. (A first fix asked
    for a person's own address, which hr.lead@ and recruiting@ are not: no thank-you, and a
    week later the follow-up asked again.)"""
    world.deliver(*HALDEN_REJECTION, when=T0)
    world.once(T0 + timedelta(minutes=5))
    uid, _ = world.only_draft()
    sent_id = world.client.send_draft(uid, T0 + timedelta(hours=1), to=person)
    world.once(T0 + timedelta(hours=2))
    assert world.status()[0]["state"] == "requested"
    reply_at = T0 + timedelta(days=2)
    world.deliver(
        person,
        "Re: Your application to Halden Foods",
        "Hi Alex,\n\nThanks for asking. The panel felt your supplier-risk case study was "
        "strong, but wanted more hands-on SAP experience. That would be my main suggestion."
        "\n\nBest,\nHana\n",
        reply_at,
        in_reply_to=sent_id,
    )
    world.once(reply_at + timedelta(minutes=5))
    world.once(T0 + timedelta(days=8))
    assert world.status()[0]["state"] == "replied", draft_steps(world)
    assert draft_steps(world) == ["1; step=thank_you"], draft_steps(world)


def test_forwarding_the_sent_request_to_a_coach_is_no_follow_up(world: World) -> None:
    """The request is sent; two days later the user forwards it to their career coach
    (Gmail, like most clients, gives a forward In-Reply-To and References of what it
    forwards). on_sent's new REQUESTED loop takes any mail of the user's that names the
    sent request as the hand-written follow-up: no follow-up is ever drafted, and the
    application closes a week after the forward."""
    sent_id = send_request(world)
    sent_by_hand(
        world,
        "Jo Coach <jo.coach@gmail.com>",
        "Fwd: Re: Your application for Senior Data Engineer",
        "Hi Jo, this is what I sent Priya. Does it sound OK?\n\n---------- Forwarded message",
        T0 + timedelta(days=2),
        sent_id,
        references=sent_id,
    )
    world.once(T0 + timedelta(days=2, hours=1))
    world.once(T0 + timedelta(days=8))
    assert world.status()[0]["state"] == "followed_up", draft_steps(world)
    assert draft_steps(world) == ["1; step=follow_up"], draft_steps(world)


def test_a_correction_right_after_the_request_is_no_follow_up(world: World) -> None:
    """The user sends the request, then five minutes later a one-line correction in the same
    thread. That is no follow-up "about one week after the request"; found: it is taken as
    the one follow-up, none is drafted, and the application closes at day 7 unanswered."""
    sent_id = send_request(world)
    sent_by_hand(
        world,
        "Priya Raman <priya.raman@brightloom.io>",
        "Re: Your application for Senior Data Engineer",
        "Sorry, a typo: I meant the interview on Tuesday, not Thursday.\n\nAlex\n",
        T0 + timedelta(hours=1, minutes=5),
        sent_id,
    )
    world.once(T0 + timedelta(hours=3))
    world.once(T0 + timedelta(days=8))
    assert world.status()[0]["state"] == "followed_up", draft_steps(world)
    assert draft_steps(world) == ["1; step=follow_up"], draft_steps(world)


def test_a_hand_follow_up_is_not_guessed_as_another_applications_request(
    world: World,
) -> None:
    """Two rejections from Priya under the ATS's one subject: two request drafts to her under
    "Re: Your application to Brightloom". The user sends #1's and keeps #2's for later. Two
    days on, they nudge Priya by hand in #1's thread (In-Reply-To #1's sent request). on_sent
    tries the recipient+subject guess before the new hand-follow-up check: the guess fits #2
    alone, so #2 is recorded as sent (it never was) and #1 gets no follow-up recorded."""
    subject = "Your application to Brightloom"
    world.deliver(INTERVIEW_REJECTION[0], subject, INTERVIEW_REJECTION[2], T0)
    world.deliver(INTERVIEW_REJECTION[0], subject, SECOND_REJECTION_BODY, T0 + timedelta(minutes=2))
    world.once(T0 + timedelta(minutes=5))
    drafts = world.client.drafts()
    assert len(drafts) == 2
    [first] = [uid for uid, d in drafts.items() if str(d["X-Nextround-Application"])[0] == "1"]
    sent_id = world.client.send_draft(first, T0 + timedelta(hours=1))
    world.once(T0 + timedelta(hours=2))
    assert [row["state"] for row in sorted(world.status(), key=lambda r: int(r["id"]))] == [
        "requested",
        "drafted",
    ]
    sent_by_hand(
        world,
        "Priya Raman <priya.raman@brightloom.io>",
        "Re: Your application to Brightloom",
        "Hi Priya,\n\nJust bumping this in case it got buried. No pressure at all.\n\nAlex\n",
        T0 + timedelta(days=2),
        sent_id,
    )
    world.once(T0 + timedelta(days=2, hours=1))
    rows = sorted(world.status(), key=lambda row: int(row["id"]))
    assert [row["state"] for row in rows] == ["followed_up", "drafted"], rows


NEXT_STEPS_INVITATION = (
    "Priya Raman <priya.raman@brightloom.io>",
    "Next steps: Senior Data Engineer",
    "Hi Alex,\n\nThank you for taking the time to interview with our team last week for the "
    "Senior Data Engineer role at Brightloom. We enjoyed the conversations and would like to "
    "move forward and invite you to a final round with the hiring manager.\n\nBest,\n"
    "Priya Raman\nTalent Partner, Brightloom\n",
)


def test_an_invitation_read_as_a_rejection_does_not_swallow_the_real_one(
    world: World,
) -> None:
    """An invitation to the final round scores 0.77: a rejection at the new threshold 0.55
    (not at 0.80). A request draft answers it; the user ignores that odd draft, which goes
    stale after send_within. Two weeks later, after the final round, Priya's real rejection
    for the same role comes: `recent_for_company` files it under the stale application (the
    7-day rule covers only SKIPPED), so the real rejection gets no request."""
    world.deliver(*NEXT_STEPS_INVITATION, when=T0)
    world.once(T0 + timedelta(minutes=5))
    world.once(T0 + timedelta(days=4))  # now #1 is stale (0.55), or nothing (0.80)
    real_at = T0 + timedelta(days=14)
    real_id = world.deliver(*INTERVIEW_REJECTION, when=real_at)
    world.once(real_at + timedelta(minutes=5))
    answering = [str(d["In-Reply-To"]) for d in world.client.drafts().values()]
    assert real_id in answering, (world.status(), answering)


def test_a_role_less_ats_notice_a_week_after_is_no_second_request(world: World) -> None:
    """Priya rejects the user and the request is sent (requested, waiting for her). Ten days
    later the ATS's formal notice for the same decision comes from a no-reply address and
    names no role. Before the change it joined the open application; now (more than 7 days,
    `near`) it opens a second one, and a second feedback request is drafted to Priya, who
    has the first one unanswered."""
    send_request(world)
    notice_at = T0 + timedelta(days=10)
    world.deliver(
        "Brightloom <no-reply@us.greenhouse-mail.io>",
        "Update on your Brightloom application",
        "Hi Alex,\n\nThank you for your interest in Brightloom. After careful review, we have "
        "decided not to move forward with your candidacy at this time. We appreciate the time "
        "you invested in our process and wish you success in your search.\n\n"
        "Brightloom Recruiting\n",
        notice_at,
    )
    world.once(notice_at + timedelta(minutes=5))
    steps = draft_steps(world)
    assert len(world.status()) == 1, (world.status(), steps)
    assert "2; step=request" not in steps, steps


def test_the_ats_notice_after_a_skip_drafts_no_request(world: World) -> None:
    """The user skips the request for Priya's rejection (`nextround skip`: they do not want
    to ask). Ten days later the ATS's formal notice of the same decision comes, naming the
    role. Before the change it joined the skipped application; now (ended unsent, more than
    7 days: `near`) it opens a second one and drafts the request the user declined."""
    world.deliver(*INTERVIEW_REJECTION, when=T0)
    world.once(T0 + timedelta(minutes=5))
    assert run_cli("-c", str(world.config), "skip", "1").code == 0
    notice_at = T0 + timedelta(days=10)
    world.deliver(
        "Brightloom <no-reply@us.greenhouse-mail.io>",
        "Update on your Brightloom application",
        "Hi Alex,\n\nThank you for interviewing for the Senior Data Engineer position at "
        "Brightloom. After careful review, we have decided not to move forward with your "
        "candidacy at this time. We wish you success in your search.\n\nBrightloom Recruiting\n",
        notice_at,
    )
    world.once(notice_at + timedelta(minutes=5))
    assert len(world.status()) == 1, (world.status(), draft_steps(world))


# -- What the third round of review found (session 13) -----------------------------------

ROLELESS_REJECTION_BODY = (
    "Hi Alex,\n\nThank you for taking the time to meet the team again last week. After "
    "careful consideration we have decided not to move forward with your candidacy for "
    "this position.\n\nWe appreciate your interest and wish you the best.\n\nBest,\n"
    "Priya Raman\nTalent Partner, Brightloom\n"
)


def rows(world: World) -> list[dict[str, Any]]:
    return sorted(world.status(), key=lambda row: int(row["id"]))


# -- 1. recent_for_company: an application nextround opened ended counts as "ended by the user"


def test_an_old_rejection_skipped_on_the_first_run_swallows_a_new_one(world: World) -> None:
    """First run: a Brightloom rejection 25 days old is opened `skipped` ("too late to ask";
    its only history row is "opened", so `ended_by_daemon` is False and `by_user` True).
    Ten days later Priya rejects the user again in a fresh mail naming no role: it joins
    the skipped application (60-day window) and no request is ever drafted for it."""
    world.deliver(*INTERVIEW_REJECTION, when=T0 - timedelta(days=25))
    world.once(T0)
    assert [row["state"] for row in rows(world)] == ["skipped"]
    later = T0 + timedelta(days=10)
    later_id = world.deliver(
        INTERVIEW_REJECTION[0], "Following up on your interviews", ROLELESS_REJECTION_BODY, later
    )
    world.once(later + timedelta(minutes=5))
    answering = [str(d["In-Reply-To"]) for d in world.client.drafts().values()]
    assert later_id in answering, (rows(world), answering)


def test_a_closed_position_swallows_a_later_rejection(world: World) -> None:
    """Priya writes that the Senior Data Engineer opening was cancelled (opened `closed`,
    no draft). Three weeks later, after interviewing for another role, Priya's rejection
    naming no role joins the closed application as if the user had closed it: lost."""
    world.deliver(
        "Priya Raman <priya.raman@brightloom.io>",
        "Update regarding the Senior Data Engineer position",
        "Hi Alex,\n\nWe are writing to let you know that the Senior Data Engineer position "
        "you applied for has been cancelled due to a change in budget, and we will not be "
        "filling the role this year. This is not a reflection on your application.\n\n"
        "Priya Raman\nTalent Partner, Brightloom\n",
        T0,
    )
    world.once(T0 + timedelta(minutes=5))
    assert [row["state"] for row in rows(world)] == ["closed"], rows(world)
    later = T0 + timedelta(days=21)
    later_id = world.deliver(
        INTERVIEW_REJECTION[0], "Following up on your interviews", ROLELESS_REJECTION_BODY, later
    )
    world.once(later + timedelta(minutes=5))
    answering = [str(d["In-Reply-To"]) for d in world.client.drafts().values()]
    assert later_id in answering, (rows(world), answering)


# -- 2. hand follow-ups missed --------------------------------------------------------


def test_a_hand_follow_up_answering_the_rejection_is_the_one_follow_up(world: World) -> None:
    """The request is sent; on day 5 the user nudges Priya by hand, replying again to her
    rejection (In-Reply-To the rejection, as a client replying from INBOX writes), To her.
    `_followed_up_by_hand` looks only for the sent request's id; the guess is barred since
    the copy names the application's rejection: on day 8 a second follow-up is drafted."""
    rejection_id = world.deliver(*INTERVIEW_REJECTION, when=T0)
    world.once(T0 + timedelta(minutes=5))
    uid, _ = world.only_draft()
    world.client.send_draft(uid, T0 + timedelta(hours=1))
    world.once(T0 + timedelta(hours=2))
    assert rows(world)[0]["state"] == "requested"
    sent_by_hand(
        world,
        "Priya Raman <priya.raman@brightloom.io>",
        "Re: Your application for Senior Data Engineer",
        "Hi Priya,\n\nJust bumping this in case it got buried. No pressure at all.\n\nAlex\n",
        T0 + timedelta(days=5),
        rejection_id,
    )
    world.once(T0 + timedelta(days=5, hours=1))
    world.once(T0 + timedelta(days=8))
    assert draft_steps(world) == [], (rows(world)[0]["state"], draft_steps(world))


def test_a_hand_follow_up_with_the_contact_in_cc_is_the_one_follow_up(world: World) -> None:
    """Day 5: the user nudges in the request's thread, To the hiring manager, Cc Priya.
    Only To is read (Message has no Cc): a follow-up to Priya is drafted on day 8."""
    sent_id = send_request(world)
    sent_by_hand(
        world,
        "Sam Ortiz <sam.ortiz@brightloom.io>",
        "Re: Your application for Senior Data Engineer",
        "Hi Sam, hi Priya,\n\nJust bumping this in case it got buried.\n\nAlex\n",
        T0 + timedelta(days=5),
        sent_id,
    )
    # sent_by_hand writes no Cc: add one by rewriting the copy.
    with world.user.client() as client:
        client.select_folder("Sent")
        uids = client.search(["HEADER", "Subject", "Re: Your application"])
        fetched = client.fetch(uids, ["RFC822"])
        last = max(uids)
        raw = fetched[last][b"RFC822"]
        client.delete_messages([last])
        client.expunge()
    raw = raw.replace(
        b"To: Sam Ortiz", b"Cc: Priya Raman <priya.raman@brightloom.io>\r\nTo: Sam Ortiz", 1
    )
    world.user.append("Sent", raw, flags=["\\Seen"], date=T0 + timedelta(days=5))
    world.once(T0 + timedelta(days=5, hours=1))
    world.once(T0 + timedelta(days=8))
    assert draft_steps(world) == [], (rows(world)[0]["state"], draft_steps(world))


def nudged_by_hand_drafts_nothing(world: World, sent_id: str) -> None:
    """Day 8, half an hour in: the user nudges Priya by hand in the request's thread; the
    next cycle must take it for the one follow-up and draft none."""
    sent_by_hand(
        world,
        "Priya Raman <priya.raman@brightloom.io>",
        "Re: Your application for Senior Data Engineer",
        "Hi Priya,\n\nJust bumping this in case it got buried. No pressure at all.\n\nAlex\n",
        T0 + timedelta(days=8, minutes=30),
        sent_id,
    )
    world.once(T0 + timedelta(days=8, hours=1))
    assert draft_steps(world) == [], (rows(world)[0]["state"], draft_steps(world))


def test_a_hand_follow_up_after_the_follow_up_draft_failed_is_still_the_one(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Day 8: FOLLOW_UP_DUE is recorded (followed_up) but the APPEND of its draft fails (or
    the process dies before it). Before the next cycle the user nudges Priya by hand in the
    request's thread. on_sent: `_expected_step` is None for a followed_up application with
    no follow-up draft, and `_followed_up_by_hand` looks at `requested` ones only: the hand
    follow-up is not recorded and the next cycle drafts a second follow-up."""
    sent_id = send_request(world)

    def append(self: ImapMailbox, *args: object, **kwargs: object) -> None:
        raise MailboxError("Drafts: simulated failure")

    monkeypatch.setattr(ImapMailbox, "append", append)
    run_cli("-c", str(world.config), "once", "--now", (T0 + timedelta(days=8)).isoformat())
    monkeypatch.undo()
    assert rows(world)[0]["state"] == "followed_up"
    assert draft_steps(world) == []
    nudged_by_hand_drafts_nothing(world, sent_id)


# -- 3. a late reply from a shared box -----------------------------------------------


def test_a_late_reply_from_the_recruiting_box_the_request_went_to_is_thanked(
    world: World,
) -> None:
    """As test_a_reply_from_the_address_the_request_went_to_is_the_reply (recruiting@), but
    the answer comes after nextround closed the application: `_late_reply` still asks for a
    person's own address (`_replier`), so the answer is missed."""
    person = "Halden Foods Recruiting <recruiting@haldenfoods.com>"
    world.deliver(*HALDEN_REJECTION, when=T0)
    world.once(T0 + timedelta(minutes=5))
    uid, _ = world.only_draft()
    sent_id = world.client.send_draft(uid, T0 + timedelta(hours=1), to=person)
    world.once(T0 + timedelta(hours=2))
    world.once(T0 + timedelta(days=8))
    uid, _ = world.only_draft()
    follow_up_id = world.client.send_draft(uid, T0 + timedelta(days=8, hours=1))
    world.once(T0 + timedelta(days=8, hours=2))
    world.once(T0 + timedelta(days=16))
    assert rows(world)[0]["state"] == "closed"
    reply_at = T0 + timedelta(days=20)
    world.deliver(
        person,
        "Re: Your application to Halden Foods",
        "Hi Alex,\n\nThanks for asking, and sorry for the delay. The panel wanted more "
        "hands-on SAP experience. That would be my main suggestion.\n\nBest,\nHana\n",
        reply_at,
        in_reply_to=follow_up_id,
        references=f"{sent_id} {follow_up_id}",
    )
    world.once(reply_at + timedelta(minutes=5))
    assert rows(world)[0]["state"] == "replied", draft_steps(world)


def test_a_hand_follow_up_after_a_kill_before_the_follow_up_draft_is_the_one(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Day 8: FOLLOW_UP_DUE is committed (followed_up), then the process dies before
    `write_drafts` commits anything (SIGKILL, power cut: played by a write_drafts that does
    nothing). While it is down the user nudges Priya by hand in the request's thread. On
    restart on_sent ignores the copy (`_expected_step` None with no follow-up draft;
    `_followed_up_by_hand` reads `requested` applications only), no pending draft lets
    `recover` find it in Sent: a second follow-up is drafted."""
    sent_id = send_request(world)
    monkeypatch.setattr(Engine, "write_drafts", lambda self, *args: None)
    world.once(T0 + timedelta(days=8))
    monkeypatch.undo()
    assert rows(world)[0]["state"] == "followed_up"
    assert draft_steps(world) == []
    nudged_by_hand_drafts_nothing(world, sent_id)


def test_forwarding_the_request_to_a_coach_is_not_the_follow_up_once_it_is_drafted(
    world: World,
) -> None:
    """Day 8 the follow-up is drafted; day 9 the user forwards the sent request to their
    coach (In-Reply-To the sent request). `_sent_step` has no To check (only the new
    `_followed_up_by_hand` has): the forward is recorded as the follow-up sent."""
    sent_id = send_request(world)
    world.once(T0 + timedelta(days=8))
    assert draft_steps(world) == ["1; step=follow_up"]
    sent_by_hand(
        world,
        "Jo Coach <jo.coach@gmail.com>",
        "Fwd: Re: Your application for Senior Data Engineer",
        "Hi Jo, this is what I sent Priya. Should I send the nudge?\n\n---------- Forwarded",
        T0 + timedelta(days=9),
        sent_id,
        references=sent_id,
    )
    world.once(T0 + timedelta(days=9, hours=1))
    out = run_cli("-c", str(world.config), "status", "--json").out
    assert "jo.coach" not in out and "follow_up_sent" not in out, out
    store = Store.open(load_config(world.config).database_path)
    try:
        app = apps.get(store, 1)
        assert app is not None
        assert app.follow_up_sent_at is None, app.follow_up_sent_message_id
    finally:
        store.close()


# -- 4. found in review, session 14: a copy that reaches Sent late -----------------------


def vanished_request(
    world: World, rejection: tuple[str, str, str] = INTERVIEW_REJECTION
) -> tuple[str, bytes]:
    """The request drafted, then gone from Drafts with no copy: skipped. Returns the
    rejection's Message-ID and the draft as it was."""
    rejection_id = world.deliver(*rejection, when=T0)
    world.once(T0 + timedelta(minutes=5))
    uid, _ = world.only_draft()
    raw = world.user.fetch_raw("Drafts")[uid]
    world.client.delete_draft(uid)
    world.once(T0 + timedelta(hours=1))
    world.once(T0 + timedelta(hours=2))
    assert rows(world)[0]["state"] == "skipped"
    return rejection_id, raw


def send_later(world: World, raw: bytes, dated: datetime, to: str | None = None) -> str:
    """The vanished draft goes out after all (as the client sends it), its copy dated
    `dated`, under a new Message-ID."""
    world.user.append("Drafts", raw)
    [uid] = world.user.uids("Drafts")
    return world.client.send_draft(uid, dated, to=to)


def scheduled(world: World, *, hours: int = 8, to: str | None = None) -> tuple[str, str]:
    """The user schedules the request (Gmail's Schedule send, Send Later, an outbox): the
    draft leaves Drafts at once, and nextround, seeing no copy within 10 minutes, takes it
    for deleted. `hours` later the copy reaches Sent. Returns the rejection's and the
    copy's Message-IDs."""
    rejection_id, raw = vanished_request(world)
    sent_id = send_later(world, raw, T0 + timedelta(hours=hours), to=to)
    world.once(T0 + timedelta(hours=hours, minutes=5))
    return rejection_id, sent_id


def test_a_request_whose_copy_reaches_sent_late_is_taken_up_again(world: World) -> None:
    """Reported by the review: the copy was ignored (a skipped application took no sent
    copy), so no follow-up was drafted and the answer went unthanked."""
    rejection_id, sent_id = scheduled(world)
    assert rows(world)[0]["state"] == "requested"
    world.once(T0 + timedelta(days=8))
    assert draft_steps(world) == ["1; step=follow_up"]
    world.priya_replies(T0 + timedelta(days=9), sent_id, f"{rejection_id} {sent_id}")
    world.once(T0 + timedelta(days=9, minutes=5))
    assert rows(world)[0]["state"] == "replied"


def test_a_late_copy_to_someone_else_does_not_take_it_up_again(world: World) -> None:
    """What the user sends in the thread to another person (a forward to a coach) is not
    the request, vanished or not."""
    scheduled(world, to="Jo Coach <jo.coach@gmail.com>")
    assert rows(world)[0]["state"] == "skipped"


def test_a_note_in_the_thread_after_deleting_the_draft_takes_nothing_up(world: World) -> None:
    """Found in the review of the fix: a note to the person asked, in the rejection's thread
    and under its subject, took the application up again, and a follow-up was drafted."""
    rejection_id, _ = vanished_request(world)
    sent_by_hand(
        world,
        "Priya Raman <priya.raman@brightloom.io>",
        "Re: Your application for Senior Data Engineer",
        "Hi Priya,\n\nThanks for letting me know, and all the best to the team.\n\nAlex\n",
        T0 + timedelta(hours=3),
        rejection_id,
    )
    world.once(T0 + timedelta(hours=3, minutes=5))
    world.once(T0 + timedelta(days=9))
    assert rows(world)[0]["state"] == "skipped", rows(world)[0]
    assert draft_steps(world) == []


def test_a_request_with_no_recipient_scheduled_for_later_is_taken_up_again(
    world: World,
) -> None:
    """Found in the review of the fix: with no contact to compare with, the copy was never
    the draft's. The user adds a recipient and schedules it."""
    _, raw = vanished_request(
        world,
        (
            "Halden Foods <donotreply@myworkday.com>",
            "Your application to Halden Foods",
            "Dear Alex,\n\nThank you for interviewing for the Supply Chain Analyst position "
            "at Halden Foods. After careful consideration we regret to inform you that we will "
            "not be progressing your application further. We wish you every success.\n\n"
            "Halden Foods Talent Acquisition\n",
        ),
    )
    send_later(world, raw, T0 + timedelta(hours=8), to="Hana Lee <hr.lead@haldenfoods.com>")
    world.once(T0 + timedelta(hours=8, minutes=5))
    assert rows(world)[0]["state"] == "requested", rows(world)[0]


def test_a_copy_dated_when_queued_is_followed_up_from_when_it_went_out(world: World) -> None:
    """Found in the review of the fix: an outbox (a laptop offline for ten days) dates the
    copy when the user clicked Send; the follow-up, measured from that Date, was drafted in
    the very cycle that took the application up, minutes after Priya got the request. It
    counts from when Sent was last seen without it."""
    _, raw = vanished_request(world)
    world.once(T0 + timedelta(days=9, hours=23))  # the service runs: nothing new
    send_later(world, raw, T0 + timedelta(minutes=30))  # Date: when queued
    world.once(T0 + timedelta(days=10))  # the copy reaches Sent, and Priya, only now
    assert rows(world)[0]["state"] == "requested", rows(world)[0]
    assert draft_steps(world) == []
    due = T0 + timedelta(days=9, hours=23) + timedelta(days=7)
    assert rows(world)[0]["next_action_at"] == due.isoformat(), rows(world)[0]
    world.once(T0 + timedelta(days=17, hours=1))
    assert draft_steps(world) == ["1; step=follow_up"]


def test_a_scheduled_copy_seen_after_a_downtime_counts_from_its_date(world: World) -> None:
    """Found in the second review of the fix: counted from when it was seen, a copy found
    after the service was down for days pushed the follow-up back by as much."""
    _, raw = vanished_request(world)
    send_later(world, raw, T0 + timedelta(hours=8))  # Schedule send: dated when it went out
    world.once(T0 + timedelta(days=5))  # the service back after days
    row = rows(world)[0]
    assert row["state"] == "requested", row
    assert row["next_action_at"] == (T0 + timedelta(days=7, hours=8)).isoformat(), row


def test_an_unthreaded_answer_during_a_downtime_is_the_reply(world: World) -> None:
    """Found in the second review: Priya answers in a new mail of her own, under the
    request's subject, while the service is down; it comes back to both at once."""
    _, raw = vanished_request(world)
    send_later(world, raw, T0 + timedelta(hours=8))
    world.deliver(
        "Priya Raman <priya.raman@brightloom.io>",
        "Re: Your application for Senior Data Engineer",
        REPLY_BODY,
        T0 + timedelta(hours=20),
    )
    world.once(T0 + timedelta(days=1))
    world.once(T0 + timedelta(days=1, hours=1))
    assert rows(world)[0]["state"] == "replied", rows(world)[0]


def test_a_late_copy_with_a_paragraph_of_the_users_own_on_top_is_the_draft(
    world: World,
) -> None:
    """Found in the second review: only a copy's first 600 characters were read, so a long
    paragraph of the user's own above the draft hid it."""
    rejection_id, raw = vanished_request(world)
    body = parse(raw).get_content()
    note = (
        "Hi Priya,\n\nBefore anything else: thank you for being so open with me during the "
        "whole process, from the first call with the hiring manager to the panel on Thursday. "
        "I have rarely met a recruiting team that explained each round so clearly, and the "
        "take-home exercise was the most realistic one I have done this year. Whatever comes "
        "of this note, I wanted you to hear that first; it made a real difference to how I "
        "experienced the search, and I have recommended Brightloom to two friends already.\n\n"
    )
    sent_by_hand(
        world,
        "Priya Raman <priya.raman@brightloom.io>",
        "Re: Your application for Senior Data Engineer",
        note + body.split("\n", 2)[2],
        T0 + timedelta(hours=8),
        rejection_id,
    )
    world.once(T0 + timedelta(hours=8, minutes=5))
    assert rows(world)[0]["state"] == "requested", rows(world)[0]


def test_what_the_user_skipped_stays_skipped_whatever_reaches_sent(world: World) -> None:
    world.deliver(*INTERVIEW_REJECTION, when=T0)
    world.once(T0 + timedelta(minutes=5))
    uid, _ = world.only_draft()
    assert run_cli("-c", str(world.config), "skip", "1").code == 0
    world.client.send_draft(uid, T0 + timedelta(hours=3))
    world.once(T0 + timedelta(hours=3, minutes=5))
    assert rows(world)[0]["state"] == "skipped"


def test_a_follow_up_whose_copy_reaches_sent_late_counts_as_sent(world: World) -> None:
    sent_id = send_request(world)
    world.once(T0 + timedelta(days=8))
    uid, _ = world.only_draft()
    raw = world.user.fetch_raw("Drafts")[uid]
    world.client.delete_draft(uid)
    world.once(T0 + timedelta(days=8, hours=1))
    world.once(T0 + timedelta(days=8, hours=2))
    assert rows(world)[0]["state"] == "closed"
    world.user.append("Drafts", raw)
    [uid] = world.user.uids("Drafts")
    follow_up_id = world.client.send_draft(uid, T0 + timedelta(days=9))
    world.once(T0 + timedelta(days=9, minutes=5))
    row = rows(world)[0]
    assert row["state"] == "followed_up", row
    assert sent_id != follow_up_id


# -- 5. found in review, session 14: two folders marked \Sent ------------------------------


def test_a_request_sent_into_either_of_two_sent_folders_is_seen(world: World) -> None:
    """Dovecot's own example configuration marks both "Sent" and "Sent Messages" \\Sent; a
    phone may keep its copies in one and a desktop client in the other. Only the first in
    LIST order (which changes between sessions) was watched: a request sent from the other
    client was taken for a deleted draft. (A folder name of this test's own, as the flag is
    the session's server's, for every user.)"""
    world.user.create_folder("Sent From Phone", special_use="\\Sent")
    world.deliver(*INTERVIEW_REJECTION, when=T0)
    world.deliver(
        "Tomasz Nowak <tomasz.nowak@kestrelpay.com>",
        "Your interview for Product Designer",
        "Hi Alex,\n\nThank you for interviewing for the Product Designer role at Kestrel Pay. "
        "After careful consideration we have decided to move forward with another candidate. "
        "We wish you the best in your search.\n\nTomasz Nowak\nRecruiter, Kestrel Pay\n",
        when=T0,
    )
    world.once(T0 + timedelta(minutes=5))
    drafts = world.client.drafts()
    assert len(drafts) == 2
    for uid, folder in zip(sorted(drafts), ("Sent", "Sent From Phone"), strict=True):
        draft = drafts[uid]
        sent = EmailMessage()
        for name in ("From", "To", "Subject", "In-Reply-To", "References"):
            sent[name] = str(draft[name])
        sent["Date"] = format_datetime(T0 + timedelta(hours=1))
        sent["Message-ID"] = make_msgid(domain="phone.example.org")
        sent.set_content(draft.get_content())
        world.user.append(folder, sent.as_bytes(), flags=["\\Seen"], date=T0 + timedelta(hours=1))
        world.client.delete_draft(uid)
    world.once(T0 + timedelta(hours=2))
    world.once(T0 + timedelta(hours=3))
    assert [row["state"] for row in rows(world)] == ["requested", "requested"]
    checked = run_cli("-c", str(world.config), "check-config")
    assert "sent         Sent (special-use" in checked.out, checked.out
    assert "sent         Sent From Phone (special-use" in checked.out, checked.out


def test_a_note_quoting_the_thread_after_deleting_the_follow_up_takes_nothing_up(
    world: World,
) -> None:
    """Found in the third review: the follow-up draft deleted (closed), a short thank-you in
    the request's thread quotes the request and the rejection as clients do; read whole,
    the quote held half the follow-up's words, and the note was taken for it."""
    sent_id = send_request(world)
    request_body = parse(world.user.fetch_raw("Sent")[world.user.uids("Sent")[-1]]).get_content()
    world.once(T0 + timedelta(days=8))
    uid, _ = world.only_draft()
    world.client.delete_draft(uid)
    world.once(T0 + timedelta(days=8, hours=1))
    world.once(T0 + timedelta(days=8, hours=2))
    assert rows(world)[0]["state"] == "closed"

    def quoted(text: str) -> str:
        return "\n".join("> " + line for line in text.splitlines())

    note = (
        "Thanks again, Priya!\n\n"
        f"On Mon, 2 Nov 2026 at 10:00, Alex Doe wrote:\n{quoted(request_body)}\n"
        "> On Mon, 2 Nov 2026 at 09:00, Priya Raman wrote:\n"
        f"{quoted(quoted(INTERVIEW_REJECTION[2]))}\n"
    )
    sent_by_hand(
        world,
        "Priya Raman <priya.raman@brightloom.io>",
        "Re: Your application for Senior Data Engineer",
        note,
        T0 + timedelta(days=9),
        sent_id,
    )
    world.once(T0 + timedelta(days=9, minutes=5))
    assert rows(world)[0]["state"] == "closed", rows(world)[0]
