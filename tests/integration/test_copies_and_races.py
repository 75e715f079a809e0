"""Copies, races and lost writes: sequences that could lose a rejection or draft twice, each
driven through real cycles against Dovecot, in process (found by review in session 9)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import pytest
from dovecot import MailUser
from support import INTERVIEW_REJECTION, ConfigWriter, run_cli

from nextround.daemon import applications as apps
from nextround.daemon.commands import model_settings
from nextround.daemon.config import load_config
from nextround.daemon.engine import CycleReport, Engine
from nextround.daemon.errors import BusyError, ConnectError, RefusedError
from nextround.daemon.session import open_session
from nextround.daemon.store import Store, cycle_lock
from nextround.daemon.training import get_model

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

OTHER_REJECTION = (
    "Tomasz Nowak <tomasz.nowak@kestrelpay.com>",
    "Your application for Product Designer",
    "Hi Alex,\n\nThank you for interviewing for the Product Designer position at Kestrel Pay. "
    "After careful review, we have decided not to move forward with your candidacy at this "
    "time. We appreciate the time you invested in our process and wish you success in your "
    "search.\n\nBest,\nTomasz Nowak\nRecruiter, Kestrel Pay\n",
)


def mail(
    user: MailUser, sender: str, subject: str, body: str, when: datetime, **headers: str
) -> tuple[bytes, str]:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = f"Alex Doe <{user.username}>"
    message["Subject"] = subject
    message["Date"] = format_datetime(when)
    message_id = make_msgid(domain="sender.example")
    message["Message-ID"] = message_id
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message.as_bytes(), message_id


class World:
    def __init__(self, user: MailUser, config: Path) -> None:
        self.user = user
        self.config = load_config(config)
        self.model = get_model(model_settings(self.config))
        self.engine = Engine(self.config, self.model)

    def cycle(self, now: datetime, wrap: Callable[[Any], Any] | None = None) -> CycleReport:
        session = open_session(self.config)
        store = Store.open(self.config.database_path)
        try:
            mailbox = wrap(session.mailbox) if wrap else session.mailbox
            return self.engine.poll_once(mailbox, store, session.folders, now)
        finally:
            store.close()
            session.close()

    def applications(self) -> list[apps.Application]:
        store = Store.open(self.config.database_path)
        try:
            return apps.all_applications(store)
        finally:
            store.close()

    def drafts(self) -> dict[int, bytes]:
        return self.user.fetch_raw("Drafts")


@pytest.fixture
def world(mailbox_user: MailUser, write_config: ConfigWriter) -> Iterator[World]:
    yield World(mailbox_user, write_config(mailbox_user))


def test_the_same_rejection_back_in_inbox_after_60_days_blocks_every_later_cycle(
    world: World,
) -> None:
    """The user archives a rejection and, two months later, moves it back to INBOX (a new
    UID, the same Message-ID). No application of that company was opened in the last 60 days,
    so on_inbox opens a second one with the same rejection_message_id: UNIQUE fails, a
    StorageError, which the sync re-raises ("fetched again") -- at every cycle, forever.
    Nothing after it in INBOX is ever read, no draft is ever written again."""
    raw, _ = mail(world.user, *INTERVIEW_REJECTION, when=T0)
    world.user.append("INBOX", raw, date=T0)
    world.cycle(T0 + timedelta(minutes=5))
    assert len(world.applications()) == 1 and len(world.drafts()) == 1

    later = T0 + timedelta(days=70)
    world.user.append("INBOX", raw, date=later)  # the same message, back in INBOX
    other, _ = mail(world.user, *OTHER_REJECTION, when=later)
    world.user.append("INBOX", other, date=later)

    failures = []
    for minutes in (5, 10, 15):
        try:
            world.cycle(later + timedelta(minutes=minutes))
        except Exception as error:
            failures.append(f"{type(error).__name__}: {error}")
    assert failures == [], failures
    companies = sorted(app.company or "" for app in world.applications())
    assert companies == ["Brightloom", "Kestrel Pay"], companies


class AppendCut:
    """The mailbox, with the connection cut while an APPEND's literal is on its way: the
    server never stores the message, and the client sees a lost connection."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def append(self, folder: str, raw: bytes, flags: Any, when: datetime) -> int | None:
        raise ConnectError("127.0.0.1: connection lost while saving a message to Drafts")


def test_an_append_that_never_reached_the_server_is_taken_as_written_once_drafts_moves_on(
    world: World,
) -> None:
    """The APPEND of a request draft is cut before the server stored it (pending_* were
    committed first). Before the next cycle, the user's mail client autosaves an unrelated
    draft of theirs in Drafts, so Drafts' UIDNEXT moved: `recover` concludes "ours, which the
    user has deleted", records the request as drafted though nothing was ever written, and
    after VANISH_GRACE check_drafts marks it skipped. The rejection is never drafted for."""
    raw, rejection_id = mail(world.user, *INTERVIEW_REJECTION, when=T0)
    world.user.append("INBOX", raw, date=T0)
    with pytest.raises(ConnectError):
        world.cycle(T0 + timedelta(minutes=5), wrap=AppendCut)
    assert world.drafts() == {}

    note = EmailMessage()
    note["From"] = f"Alex Doe <{world.user.username}>"
    note["To"] = "friend@example.com"
    note["Subject"] = "Dinner on Friday?"
    note.set_content("Are you free on Friday?\n")
    world.user.append("Drafts", note.as_bytes(), flags=["\\Draft"], date=T0)

    for minutes in (10, 30, 50):
        world.cycle(T0 + timedelta(minutes=minutes))
    requests = [body for body in world.drafts().values() if rejection_id.encode() in body]
    [app] = world.applications()
    assert len(requests) == 1, f"no request draft ever written; application is {app.state}"


class Killed(BaseException):
    """The process dies here (SIGKILL, OOM, power cut): nothing after it runs, and what was
    committed stays, the pending draft's UIDNEXT above all."""


class AppendKilled(AppendCut):
    """The mailbox; the process dies while an APPEND is on its way, before the server
    stored it."""

    def append(self, folder: str, raw: bytes, flags: Any, when: datetime) -> int | None:
        raise Killed()


@pytest.mark.parametrize(
    ("wrap", "failure"), [(AppendCut, ConnectError), (AppendKilled, Killed)], ids=["cut", "killed"]
)
def test_a_lost_append_is_written_again_though_an_autosave_took_its_uid(
    world: World, wrap: type[AppendCut], failure: type[BaseException]
) -> None:
    """An APPEND cut, or the process killed while it was on its way (found by review in
    session 12), then the user's client autosaves a draft as autosave works: each save
    APPENDs a new version and expunges the one before, so the UID that was next holds nothing
    by the next cycle. That cannot tell "ours, deleted" from "never got there", and no draft
    answers the rejection: the request is written."""
    raw, rejection_id = mail(world.user, *INTERVIEW_REJECTION, when=T0)
    world.user.append("INBOX", raw, date=T0)
    with pytest.raises(failure):
        world.cycle(T0 + timedelta(minutes=5), wrap=wrap)
    assert world.drafts() == {}

    def note(text: str) -> bytes:
        message = EmailMessage()
        message["From"] = f"Alex Doe <{world.user.username}>"
        message["To"] = "friend@example.com"
        message["Subject"] = "Dinner on Friday?"
        message["Message-ID"] = make_msgid(domain="client.example")
        message.set_content(text)
        return message.as_bytes()

    first = world.user.append("Drafts", note("Are you"), flags=["\\Draft"], date=T0)
    world.user.append("Drafts", note("Are you free on Friday?"), flags=["\\Draft"], date=T0)
    with world.user._session() as client:  # the client replaces its older autosave
        client.select_folder("Drafts")
        client.delete_messages([first])
        client.expunge()

    for minutes in (10, 30, 50):
        world.cycle(T0 + timedelta(minutes=minutes))
    requests = [body for body in world.drafts().values() if rejection_id.encode() in body]
    [app] = world.applications()
    assert len(requests) == 1, f"no request draft ever written; application is {app.state}"


class AppendedThenKilled(AppendCut):
    """The mailbox; the process dies just after the server stored the draft, before its
    answer was committed."""

    def append(self, folder: str, raw: bytes, flags: Any, when: datetime) -> int | None:
        self.inner.append(folder, raw, flags, when)
        raise Killed()


def test_a_draft_saved_anew_by_the_users_client_after_a_kill_is_not_written_twice(
    world: World,
) -> None:
    """Killed once the draft was stored; before the next cycle the user edits it, and the
    client saves the edit as a new message without our header or Message-ID (expunging
    ours). It still answers the rejection: taken as ours, so no second request."""
    raw, rejection_id = mail(world.user, *INTERVIEW_REJECTION, when=T0)
    world.user.append("INBOX", raw, date=T0)
    with pytest.raises(Killed):
        world.cycle(T0 + timedelta(minutes=5), wrap=AppendedThenKilled)
    [(uid, ours)] = world.drafts().items()
    kept = [
        line
        for line in ours.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        if not line.lower().startswith((b"x-nextround", b"message-id"))
    ]
    edited = b"\r\n".join([*kept, b"Message-ID: <edited@client.example>"])
    edited += b"\r\n\r\nHi Priya, thank you. Could you share a few words of feedback?\r\n"
    world.user.append("Drafts", edited, flags=["\\Draft"], date=T0)
    with world.user._session() as client:
        client.select_folder("Drafts")
        client.delete_messages([uid])
        client.expunge()

    for minutes in (10, 30):
        world.cycle(T0 + timedelta(minutes=minutes))
    bodies = list(world.drafts().values())
    assert len(bodies) == 1 and b"<edited@client.example>" in bodies[0], bodies
    assert rejection_id.encode() in bodies[0]


NAMELESS_REJECTION = (
    "Recruiting <no-reply@us.greenhouse-mail.io>",
    "Your application",
    "Hi Alex,\n\nThank you for your interest and for the time you invested in applying. "
    "After careful review, we have decided not to move forward with your application at "
    "this time. We wish you success in your search.\n\nThe Recruiting Team\n",
)


def test_a_rejection_delivered_twice_blocks_the_first_sync(world: World) -> None:
    """The same rejection twice in INBOX (delivered twice: the user was in To and in a
    list, or a copy was filed back), from an ATS that names no company. The first copy opens
    an application; for the second, no application of the same company can be found (the
    key is empty), so it opens another with the same rejection_message_id: UNIQUE fails,
    StorageError, and the sync stops there at every cycle; no draft is ever written, nothing
    later in INBOX is read."""
    raw, _ = mail(world.user, *NAMELESS_REJECTION, when=T0)
    world.user.append("INBOX", raw, date=T0)
    world.user.append("INBOX", raw, date=T0 + timedelta(minutes=1))
    other, _ = mail(world.user, *OTHER_REJECTION, when=T0 + timedelta(minutes=2))
    world.user.append("INBOX", other, date=T0 + timedelta(minutes=2))
    failures = []
    for minutes in (5, 10):
        try:
            world.cycle(T0 + timedelta(minutes=minutes))
        except Exception as error:
            failures.append(f"{type(error).__name__}: {error}")
    assert failures == [], failures
    assert len(world.applications()) == 2
    assert len(world.drafts()) == 2


def test_a_request_the_user_sent_before_the_cycle_saw_the_rejection_is_drafted_again(
    world: World,
) -> None:
    """The rejection arrives, and within the poll interval (or before nextround's first
    sync) the user answers it from their phone asking for feedback. The cycle syncs Sent
    first: the sent copy answers no application yet, so on_sent ignores it, and it is never
    looked at again. Then INBOX opens the application and a second feedback request is
    drafted (and the recruiter's answer to the user's own request is not taken as a reply:
    the application waits in `drafted`)."""
    raw, rejection_id = mail(world.user, *INTERVIEW_REJECTION, when=T0)
    world.user.append("INBOX", raw, date=T0)
    sent = EmailMessage()
    sent["From"] = f"Alex Doe <{world.user.username}>"
    sent["To"] = INTERVIEW_REJECTION[0]
    sent["Subject"] = "Re: " + INTERVIEW_REJECTION[1]
    sent["Date"] = format_datetime(T0 + timedelta(minutes=2))
    sent_id = make_msgid(domain="phone.example")
    sent["Message-ID"] = sent_id
    sent["In-Reply-To"] = rejection_id
    sent["References"] = rejection_id
    sent.set_content("Hi Priya,\n\nThanks for letting me know. Would you share any feedback?\n")
    world.user.append("Sent", sent.as_bytes(), flags=["\\Seen"], date=T0 + timedelta(minutes=2))

    world.cycle(T0 + timedelta(minutes=5))
    [app] = world.applications()
    assert (app.state, app.request_sent_message_id, world.drafts()) == ("requested", sent_id, {})


def test_a_cycle_waits_for_the_one_running_and_never_runs_beside_it(world: World) -> None:
    """`nextround once` run by hand while the service's cycle runs would write the same
    request twice (both see it owed before either has written it). Cycles on one state take
    turns: while one holds the state, `once` waits `--wait` seconds and then gives up."""
    raw, _ = mail(world.user, *INTERVIEW_REJECTION, when=T0)
    world.user.append("INBOX", raw, date=T0)
    config = str(world.config.path)
    now = (T0 + timedelta(minutes=5)).isoformat()
    with cycle_lock(world.config.database_path, wait=0):  # the service's cycle, running
        busy = run_cli("-c", config, "once", "--now", now, "--wait", "0")
        dry = run_cli("-c", config, "once", "--now", now, "--dry-run")
    assert busy.code == 1 and "another nextround cycle is running" in busy.err, busy.err
    assert world.drafts() == {}  # it wrote nothing
    assert dry.code == 0 and "would draft" in dry.out  # a dry run minds no other cycle
    done = run_cli("-c", config, "once", "--now", now, "--wait", "0")
    assert done.code == 0, done.err
    assert len(world.drafts()) == 1


def test_the_cycle_lock_is_one_holder_at_a_time_and_private(tmp_path: Path) -> None:
    database = tmp_path / "state.db"
    with (
        cycle_lock(database, wait=0),
        pytest.raises(BusyError, match="another nextround cycle is running"),
        cycle_lock(database, wait=0),
    ):
        pass
    with cycle_lock(database, wait=0):  # released with the first holder
        pass
    assert (tmp_path / "state.db.lock").stat().st_mode & 0o777 == 0o600


def seed_unservable(world: World, folder: str, when: datetime) -> None:
    """A message Dovecot cannot serve: its Maildir file's size in the name is wrong (as after
    another tool rewrote it), so every SEARCH and FETCH naming it is refused, NO [SERVERBUG],
    at every cycle. It takes its UID now, before what is appended after."""
    note = EmailMessage()
    note["From"] = f"Alex Doe <{world.user.username}>" if folder == "Sent" else "news@example.com"
    note["To"] = "someone@example.com"
    note["Subject"] = "Weekly digest"
    note["Date"] = format_datetime(when)
    note["Message-ID"] = make_msgid(domain="news.example")
    note.set_content("Nothing to see here.\n")
    path = world.user.folder_path(folder) / "cur"
    before = set(path.iterdir()) if path.is_dir() else set()
    world.user.seed_maildir(folder, [note.as_bytes().replace(b"\n", b"\r\n")])
    [seeded] = [found for found in path.iterdir() if found not in before and ",S=" in found.name]
    seeded.rename(seeded.with_name(seeded.name.replace(",S=", ",S=99")))
    world.user.uids(folder)


def test_a_message_the_server_cannot_give_holds_the_mail_after_it_for_an_hour_at_most(
    world: World,
) -> None:
    """Cycles stop at a message the server will not give while that may pass; once it has
    lasted three cycles over an hour it is recorded as failed, with the server's reason, and
    the rejection after it is drafted for (found by review in session 12: the sync stopped
    there for good)."""
    seed_unservable(world, "INBOX", T0 - timedelta(hours=1))
    assert world.user.uids("INBOX") == [1]
    raw, rejection_id = mail(world.user, *INTERVIEW_REJECTION, when=T0)
    world.user.append("INBOX", raw, date=T0)

    for minutes in (5, 35):
        with pytest.raises(RefusedError, match="asked again next cycle"):
            world.cycle(T0 + timedelta(minutes=minutes))
        assert world.drafts() == {}
    report = world.cycle(T0 + timedelta(minutes=70))
    inbox = next(folder for folder in report.sync.folders if folder.folder.role == "inbox")
    assert (inbox.recorded, inbox.failed) == (1, 1), inbox
    requests = [body for body in world.drafts().values() if rejection_id.encode() in body]
    assert len(requests) == 1
    store = Store.open(world.config.database_path)
    try:
        [(folder, uid, _, error)] = store.unparsable()
    finally:
        store.close()
    assert (folder, uid) == ("INBOX", 1) and "would not give it" in error, error
    assert "SERVERBUG" in error, error
    world.cycle(T0 + timedelta(minutes=75))  # and it goes on past it


@pytest.mark.parametrize("case", ["steady", "first sync", "in Sent"])
def test_a_message_the_server_cannot_give_as_the_newest_is_passed_in_time(
    world: World, case: str
) -> None:
    """The message the server will not give is the newest of its folder: after the first
    cycle it is asked for alone, given with nothing, and the server gives the message before
    it, so it is still its own trouble and counted (found by review in session 12: taken for
    the server's trouble, it was never counted again, and nothing was drafted for good). In
    Sent, synced first, it holds INBOX too."""
    if case != "first sync":
        world.cycle(T0 - timedelta(hours=1))  # the first sync, of an empty mailbox
    raw, rejection_id = mail(world.user, *INTERVIEW_REJECTION, when=T0 - timedelta(minutes=30))
    world.user.append("INBOX", raw, date=T0 - timedelta(minutes=30))
    if case == "in Sent":
        world.user.append("Sent", raw.replace(b"Subject:", b"X-Copy: 1\nSubject:"), date=T0)
    seed_unservable(world, "Sent" if case == "in Sent" else "INBOX", T0)
    failed = 0
    for minutes in (5, 35, 70, 75):
        try:
            world.cycle(T0 + timedelta(minutes=minutes))
        except RefusedError:
            failed += 1
    assert failed == 2  # at 5 and 35 minutes; recorded as failed at 70
    requests = [body for body in world.drafts().values() if rejection_id.encode() in body]
    assert len(requests) == 1


def send_request(world: World, rejection_id: str, when: datetime) -> None:
    """The user sends the drafted request as Gmail does: a new Message-ID, our header
    dropped, the draft gone from Drafts, a copy in Sent."""
    sent, _ = mail(
        world.user,
        f"Alex Doe <{world.user.username}>",
        "Re: " + INTERVIEW_REJECTION[1],
        "Hi Priya,\n\nCould you share any feedback?\n\nAlex\n",
        when,
        In_Reply_To=rejection_id,
        References=rejection_id,
    )
    world.user.append("Sent", sent, flags=["\\Seen"], date=when)
    with world.user._session() as client:
        client.select_folder("Drafts")
        client.delete_messages(client.search("ALL"))
        client.expunge()


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        (
            "Re: " + INTERVIEW_REJECTION[1],
            "Hi Alex,\n\nSure, happy to talk it through. Could we do a quick call on Thursday "
            "at 3pm?\n\nPriya\n",
        ),
        (
            "Re: " + INTERVIEW_REJECTION[1],
            "Hi Alex,\n\nThanks for reaching out! Give me a few days and I'll get back to "
            "you.\n\nPriya\n",
        ),
        (
            "Feedback on your Brightloom interview",
            "Hi Alex,\n\nHappy to share some feedback: the panel felt your answers on "
            "streaming systems lacked depth, while the SQL round went very well.\n\nPriya\n",
        ),
        (
            "Coffee next month?",
            "Hi Alex,\n\nAre you around for a coffee next month? Happy to chat about the "
            "team.\n\nPriya\n",
        ),
    ],
    ids=["call", "later", "feedback-subject", "other-subject"],
)
def test_the_answer_of_the_person_asked_is_the_reply_without_threading_headers(
    world: World, subject: str, body: str
) -> None:
    """The person asked answers without In-Reply-To or References: under the request's
    subject, in words triage rules out as job mail (it recorded them unhandled before, found
    by review in session 12), or in a new mail about feedback. Each is the reply: a
    thank-you, and no follow-up a week later. Their mail about something else is not."""
    raw, rejection_id = mail(world.user, *INTERVIEW_REJECTION, when=T0)
    world.user.append("INBOX", raw, date=T0)
    world.cycle(T0 + timedelta(minutes=5))
    send_request(world, rejection_id, T0 + timedelta(hours=1))
    world.cycle(T0 + timedelta(hours=1, minutes=5))
    [app] = world.applications()
    assert app.state == "requested"
    reply_at = T0 + timedelta(days=2)
    reply, reply_id = mail(world.user, INTERVIEW_REJECTION[0], subject, body, reply_at)
    world.user.append("INBOX", reply, date=reply_at)
    world.cycle(reply_at + timedelta(minutes=5))
    world.cycle(T0 + timedelta(days=9))
    [app] = world.applications()
    [draft] = world.drafts().values()
    if subject.startswith("Coffee"):
        assert app.state == "followed_up" and b"step=follow_up" in draft, app.state
        return
    assert app.state == "replied" and app.reply_message_id == reply_id, app.state
    assert b"step=thank_you" in draft and reply_id.encode() in draft


def test_the_next_rejection_of_the_person_asked_is_no_reply(world: World) -> None:
    """The person asked writes again without threading headers, and it is a rejection: the
    ATS's notice for the same role, from their address under its own subject (no Re:, no
    word of feedback), then one for another role under a subject about feedback. Neither
    answers the request: the first joins the application, the second opens its own, no
    thank-you is drafted, and the first application still waits for its reply."""
    raw, rejection_id = mail(world.user, *INTERVIEW_REJECTION, when=T0)
    world.user.append("INBOX", raw, date=T0)
    world.cycle(T0 + timedelta(minutes=5))
    send_request(world, rejection_id, T0 + timedelta(hours=1))
    world.cycle(T0 + timedelta(hours=1, minutes=5))
    notice_at = T0 + timedelta(days=1)
    notice, notice_id = mail(
        world.user,
        INTERVIEW_REJECTION[0],
        INTERVIEW_REJECTION[1],
        "Hi Alex,\n\nThank you for your interest in the Senior Data Engineer role. We regret "
        "to inform you that we will not be moving forward with your application.\n\n"
        "Brightloom Recruiting\n",
        notice_at,
    )
    world.user.append("INBOX", notice, date=notice_at)
    world.cycle(notice_at + timedelta(minutes=5))
    [first] = world.applications()
    assert first.state == "requested" and first.reply_message_id is None, first.state
    assert notice_id in first.known_ids
    other_at = T0 + timedelta(days=2)
    other, other_id = mail(
        world.user,
        INTERVIEW_REJECTION[0],
        "Feedback on your Product Designer application",
        "Hi Alex,\n\nThank you for applying for the Product Designer role at Brightloom. "
        "Unfortunately we have decided not to move forward with your application.\n\n"
        "Best,\nPriya Raman\n",
        other_at,
    )
    world.user.append("INBOX", other, date=other_at)
    world.cycle(other_at + timedelta(minutes=5))
    first, new = sorted(world.applications(), key=lambda app: app.id)
    assert first.state == "requested" and first.reply_message_id is None, first.state
    assert new.rejection_message_id == other_id and new.role == "Product Designer"
    [draft] = world.drafts().values()
    assert b"step=request" in draft and other_id.encode() in draft
