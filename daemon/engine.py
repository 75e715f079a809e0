"""The lifecycle at work: what each new message means for the applications, and what to draft.

A cycle is `poll_once(now)`: sync Sent (so a request the user just sent is known before its
reply is read), then INBOX, each message classified and applied in the transaction that
records it; then, derived afresh from the store, the time-based events that fell due and the
drafts that are owed. Each draft is APPENDed only after looking for it in Drafts and Sent, so
a crash between APPEND and commit never yields a second one.
"""

from __future__ import annotations

import contextlib
import email.message
import email.parser
import email.policy
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

from nextround.classifier.analyse import combine, no_earlier_contacts
from nextround.classifier.extract import (
    FREEMAIL_DOMAINS,
    is_ats_domain,
    is_automated_address,
    is_human_address,
)
from nextround.classifier.inference import Prediction, RejectionModel, own_text
from nextround.classifier.message import (
    Address,
    Message,
    message_ids,
    plain_address,
    safe_message_id,
)
from nextround.classifier.verdict import Analysis, company_key
from nextround.daemon import applications as apps
from nextround.daemon import stopping
from nextround.daemon.applications import Application
from nextround.daemon.config import Config
from nextround.daemon.drafts import (
    HEADER,
    DraftSpec,
    Renderer,
    build_draft,
    draft_variables,
    is_reply_subject,
    local_date,
    normalised_subject,
    parse_header_value,
    reply_subject,
    template_name,
)
from nextround.daemon.errors import MailboxError, NextroundError
from nextround.daemon.faults import checkpoint
from nextround.daemon.lifecycle import (
    AWAITING_SEND,
    LATE_STATES,
    OPEN_STATES,
    Draft,
    Event,
    State,
    Timing,
    due_event,
)
from nextround.daemon.mailbox import Fetched, Mailbox
from nextround.daemon.store import Store, addresses_from_json, addresses_json
from nextround.daemon.sync import (
    CycleResult,
    FolderRef,
    Ready,
    Settled,
    Triaged,
    sync_folder,
    watched,
    with_thread,
)
from nextround.daemon.triage import (
    TRIAGE_TEXT,
    Helper,
    Raw,
    Reading,
    floor,
    read,
    read_ahead,
    read_fully,
)

logger = logging.getLogger(__name__)

ATTACH_WINDOW = timedelta(days=60)
# How close two rejections must come to be one application when either names no role, or
# the first ended unsent (`recent_for_company`).
NEAR_WINDOW = timedelta(days=7)
# What the user writes in their request's thread sooner than this is no follow-up.
HAND_FOLLOW_UP_AFTER = timedelta(days=1)
# A draft must stay missing this long, with no sent copy, before it counts as deleted: some
# clients remove the draft a moment before they store the sent copy.
VANISH_GRACE = timedelta(minutes=10)
# The share of its draft's words a copy that reaches Sent late must hold to be that draft.
DRAFT_WORDS = 0.5
# How many UIDs of Drafts after a pending draft's are read to tell what became of it.
SINCE = 200
_AUTO_SUBJECT = re.compile(
    r"\b(out of (the )?office|automatic reply|auto[- ]?reply|autoreply|auto[- ]?response|"
    r"abwesenheit\w*|automatische antwort|réponse automatique|absence|fuera de la oficina|"
    r"respuesta automática|afwezig|automatisch antwoord|automatisk svar|risposta automatica|"
    r"resposta automática|on vacation|away from (the )?office)\b",
    re.IGNORECASE,
)
# A new mail's subject that speaks of feedback, in the languages the classifier reads.
_FEEDBACK_SUBJECT = re.compile(
    r"feedback|rückmeldung|retour|retroalimentación|terugkoppeling|riscontro|återkoppling|"
    r"tilbakemelding"
)
_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.compat32)


def is_auto_reply(message: Message) -> bool:
    """Out-of-office notices and other automatic answers are not replies."""
    headers = message.headers
    if headers.get("auto-submitted", "no").lower() != "no":
        return True
    if "x-autoreply" in headers or "x-autorespond" in headers:
        return True
    if headers.get("precedence", "").lower() in ("auto_reply", "junk"):
        # vacation(1) marks its notices junk. Not "bulk" or "list": a recruiter's answer
        # relayed by an ATS or a list may carry those.
        return True
    return bool(_AUTO_SUBJECT.search(message.subject))


def own_domains(message: Message) -> list[str]:
    """Domains that belong to the company itself (not an ATS, not a free mail provider)."""
    return [
        address.domain
        for address in (message.from_, *message.reply_to)
        if address and not is_ats_domain(address.domain) and address.domain not in FREEMAIL_DOMAINS
    ]


@dataclass(frozen=True)
class Recovered:
    """A draft found after a crash: its Message-ID, and its sent copy when already sent."""

    message_id: str
    sent_id: str | None = None
    sent_at: datetime | None = None


@dataclass
class Planned:
    """A draft written (or, in a dry run, that would be written)."""

    application_id: int
    step: str
    to: str
    subject: str
    raw: bytes
    reused: bool = False


# Other mail a cycle's report keeps, at most: a first sync reads tens of thousands of
# messages, and each kept costs about 3 KB until the cycle ends (270 MB for 100,000).
REPORTED_OTHER = 100


@dataclass
class CycleReport:
    sync: CycleResult
    # What the cycle judged INBOX mail: all job mail, and the first REPORTED_OTHER others.
    analyses: list[tuple[Message, Analysis]] = field(default_factory=list)
    drafts: list[Planned] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    other: int = 0  # other mail judged, kept in `analyses` or not

    def saw(self, message: Message, analysis: Analysis) -> None:
        if not analysis.job_mail:
            self.other += 1
            if self.other > REPORTED_OTHER:
                return
        self.analyses.append((message, analysis))

    @property
    def unlisted(self) -> int:
        """Other mail judged but not kept in `analyses`."""
        return max(0, self.other - REPORTED_OTHER)

    def summary(self) -> str:
        rejections = sum(1 for _, analysis in self.analyses if analysis.is_rejection)
        return f"{self.sync.summary()}; {rejections} rejection(s); {len(self.drafts)} draft(s)" + (
            f"; {len(self.events)} change(s)" if self.events else ""
        )


# An application in these states is waiting for an answer.
REPLY_STATES = (State.REQUESTED, State.FOLLOWED_UP)
# A folder with this many new messages (a first sync) is read by helper processes: two where
# there are two cores or more (reading is most of a first sync's work; the daemon fetches and
# records meanwhile).
HELPER_FROM = 2_000
HELPERS = 2 if len(os.sched_getaffinity(0)) >= 2 else 1  # the cores this process may use


class Engine:
    def __init__(
        self,
        config: Config,
        model: RejectionModel,
        renderer: Renderer | None = None,
        *,
        dry_run: bool = False,
    ) -> None:
        self.config = config
        self.dry_run = dry_run  # its mailbox writes nothing: the log must not say it did
        self.model = model
        self.renderer = renderer or Renderer(
            Path(config.templates.dir) if config.templates.dir else None
        )
        self.identity = Address(config.identity.name, config.identity.email.lower())
        self.zone = config.identity.zone
        # How triage read the messages it decided on, until they are handled.
        self.decided: dict[str, tuple[Message, Reading]] = {}
        self.looked: dict[str, datetime] = {}  # see poll_once
        self.helper_from = HELPER_FROM
        lifecycle = config.lifecycle
        self.timing = Timing(lifecycle.follow_up_delay, lifecycle.close_delay, lifecycle.send_delay)
        self.report: CycleReport | None = None

    # -- the cycle -------------------------------------------------------------------------

    def poll_once(
        self, mailbox: Mailbox, store: Store, folders: dict[str, FolderRef], now: datetime
    ) -> CycleReport:
        report = CycleReport(sync=CycleResult(now=now))
        self.report = report
        # When each Sent folder was last looked at, before this cycle: a copy found now
        # reached it since (see `on_sent`).
        self.looked = {
            ref.name: datetime.fromisoformat(position.synced_at)
            for ref in watched(folders, "sent")
            if (position := store.position(ref.name)) is not None
        }
        for folder in [*watched(folders, "sent"), *watched(folders, "inbox")]:
            report.sync.folders.append(
                sync_folder(mailbox, store, folder, self.config.sync, now, self.handle, self.triage)
            )
        self.check_drafts(mailbox, store, folders, now)
        self.apply_due_events(store, now)
        self.write_drafts(mailbox, store, folders, now)
        return report

    def handle(
        self, store: Store, folder: FolderRef, message: Message, row_id: int, now: datetime
    ) -> None:
        """Called by the sync inside the transaction that records `message`."""
        if folder.role == "sent":
            self.on_sent(store, message, now, self.looked.get(folder.name))
        elif folder.role == "inbox":
            decided = self.decided.pop(message.message_id, None)
            reading = decided[1] if decided is not None and decided[0] is message else None
            if reading is not None and reading.prediction is not None:
                prediction = reading.prediction
            else:  # parsed in full here: read it as triage reads such mail
                [prediction] = self.model.predict([message], [self.identity.email])
                lowest = floor(self.model.threshold)
                reading = read_fully(message, prediction, self.identity.email, lowest)
            analysis = self.combine(store, message, prediction, reading.extracted)
            store.save_analysis(row_id, analysis)
            # The recruiter who scheduled an interview is whom a later no-reply rejection's
            # request goes to. Mail ruled out as job mail files its writers under their
            # domain's name (`guessed`; see `read_fully`).
            for address, key, guessed in reading.contacts:
                store.remember_contact(address, key, message.message_id, now, guessed=guessed)
            if self.report is not None:
                self.report.saw(message, analysis)
            self.on_inbox(store, message, analysis, now)

    # -- classification ---------------------------------------------------------------------

    def triage(
        self, store: Store, folder: FolderRef, batches: Iterator[list[Fetched]], count: int
    ) -> Triaged:
        """See sync.Triage. INBOX mail is read and classified, in a helper process when there
        is a lot of it (a first sync); sent copies are read for their headers; other folders
        are parsed in full."""
        if folder.role not in ("inbox", "sent"):
            for batch in batches:
                yield batch, [None] * len(batch)
            return
        model = self.model if folder.role == "inbox" else None
        user = self.identity.email
        helpers = []
        if model is not None and count >= self.helper_from:
            helpers = Helper.start(model, user, HELPERS)

        def local(raws: list[Raw]) -> list[Reading | None]:
            try:
                return read(raws, model, user)
            except Exception:  # triage only saves time: without it, everything is parsed in full
                logger.exception("triage failed; parsing this batch in full")
                return [None] * len(raws)

        def raws(batch: list[Fetched]) -> list[Raw]:
            return [(item.raw, item.truncated) for item in batch]

        for batch, readings in read_ahead(batches, raws, local, helpers):
            yield batch, self.decide(store, folder, batch, readings)

    def decide(
        self,
        store: Store,
        folder: FolderRef,
        batch: Sequence[Fetched],
        readings: Sequence[Reading | None],
    ) -> list[Ready]:
        """Which messages are handled as triage read them: INBOX mail it read in full, and
        mail it ruled out as job mail unless it is in a conversation we follow; every sent
        copy it could read. Ruled-out mail in no conversation we follow is Settled: nothing
        is left to do with it but record it. The rest (None) are parsed in full."""
        self.decided.clear()
        if folder.role == "sent":
            return [
                None if reading is None else with_thread(reading.message, fetched)
                for fetched, reading in zip(batch, readings, strict=True)
            ]
        followed: set[str] = set()
        # The people asked for feedback: what they write is handled one by one, whatever
        # its words, as it may be the answer though it names no message of ours.
        asked: set[str] = set()
        for app in apps.all_applications(store):
            followed |= app.known_ids
            if app.state in REPLY_STATES and app.contact_email:
                asked.add(app.contact_email)
        ready: list[Ready] = []
        # A message handled one by one may add itself and what it answers to a conversation
        # we follow (or open one): later mail of the batch that answers any of those is
        # handled one by one too. One only the full parse reads may add anything.
        adds: set[str] = set()
        unknown = False
        for fetched, reading in zip(batch, readings, strict=True):
            if reading is None or reading.prediction is None:
                ready.append(None)
                unknown = True
                continue
            message = with_thread(reading.message, fetched)
            keys = message.conversation_keys
            in_followed = not reading.full and not followed.isdisjoint(keys)
            answers_batch = bool(keys) and (unknown or not adds.isdisjoint(keys))
            from_asked = message.from_ is not None and message.from_.email in asked
            if not reading.full and not in_followed and not answers_batch and not from_asked:
                settled = self._settled(message, reading)
                if settled is not None:
                    ready.append(settled)
                    continue
            adds.add(message.message_id)
            adds.update(keys)
            if in_followed:
                ready.append(None)  # in a conversation we follow (a reply?): read it all
                continue
            self.decided[message.message_id] = (message, reading)
            ready.append(message)
        return ready

    def _settled(self, message: Message, reading: Reading) -> Settled | None:
        """Mail triage ruled out as job mail, with what `handle` would record for it; None if
        it is job mail after all (it never is, below the triage floor)."""
        assert reading.prediction is not None  # noqa: S101 - the caller checked
        analysis = combine(message, reading.prediction, no_earlier_contacts)
        if analysis.job_mail:
            return None
        if self.report is not None:
            self.report.saw(message, analysis)
        return Settled(message, analysis, reading.contacts)

    def combine(
        self,
        store: Store,
        message: Message,
        prediction: Prediction,
        extracted: tuple[str | None, str | None] | None = None,
    ) -> Analysis:
        """The analysis, asking the store whom the company's people were (at the moment the
        message is handled: an earlier message of the same batch may have named them)."""

        def earlier(company: str | None, message: Message) -> list[Address]:
            found = store.earlier_contacts(company_key(company), own_domains(message))
            return [address for address in found if address.email != self.identity.email]

        return combine(message, prediction, earlier, extracted)

    # -- what a new message means -----------------------------------------------------------

    def on_inbox(self, store: Store, message: Message, analysis: Analysis, now: datetime) -> None:
        from_user = message.from_ is not None and message.from_.email == self.identity.email
        keys = message.thread_ids
        related = apps.by_thread(store, [message.message_id, *keys])
        if any(message.message_id in app.known_ids for app in related):
            # A copy of mail an application holds already: delivered twice, or moved back
            # into INBOX. Nothing happened, and a second application for one rejection
            # would break the rule that each has its own.
            logger.info("%s: a copy of mail seen before; nothing to do", message.message_id)
            return
        if not related and message.conversation:
            # The server's conversation alone (Gmail groups mail by subject and sender, so a
            # second rejection can land in it too) makes a reply only of mail a person wrote
            # that may answer (`_may_answer`); anything else goes on as if it had none.
            person = message.from_ is not None and is_human_address(message.from_)
            in_conversation = apps.by_thread(store, [message.conversation]) if person else []
            related = [
                app
                for app in in_conversation
                if app.state in REPLY_STATES and _may_answer(message, analysis, app)
            ]
        if not related and not keys:
            related = self._unthreaded_reply_to(store, message, analysis)
        replying = not from_user and not is_auto_reply(message)
        for app in related:
            draft_id = app.request_draft_message_id
            if not from_user and app.state in AWAITING_SEND and draft_id in message.thread_ids:
                # It answers our draft itself, if only by an out-of-office notice: sent from
                # a client that keeps no copy in Sent (before the draft counted as deleted).
                sent_at = app.request_drafted_at or _when(message, now)
                self.record_sent(store, app.id, "request", draft_id, sent_at, now)
                app = apps.get(store, app.id) or app
            late = replying and self._late_reply(store, app, message)
            # Only a person's mail is an answer: an ATS's "this mailbox is not monitored" in
            # the thread, without Auto-Submitted, is none, open or ended.
            if late or (app.state in REPLY_STATES and replying and not _automated(message)):
                replier = _replier(message)
                self.event(
                    store,
                    app,
                    Event.LATE_REPLY if late else Event.REPLY_RECEIVED,
                    now,
                    f"reply {message.message_id} from {message.from_ or 'unknown'}",
                    reply_message_id=message.message_id,
                    reply_at=_when(message, now),
                    reply_from=addresses_json([replier] if replier else []) or None,
                    reply_subject=message.subject,
                    reply_references=_chain(message),
                )
                apps.add_to_thread(store, app, [message.message_id], now)
                thanked = store.sent_answer(message.message_id)
                if thanked is not None:
                    # The user thanked them by hand before nextround saw the reply.
                    apps.update(
                        store, app.id, now, thank_you_draft_message_id=thanked[0],
                        thank_you_drafted_at=now,
                    )  # fmt: skip
                    self._note(f"#{app.id}: already thanked by hand ({thanked[0]})")
                return
        if related:
            apps.add_to_thread(store, related[0], [message.message_id], now)
            return
        if not analysis.job_mail or from_user:
            return
        if analysis.label == "rejection" and not analysis.is_rejection:
            return
        key = company_key(analysis.company)
        earlier = apps.recent_for_company(
            store, key, analysis.role, now - ATTACH_WINDOW, _when(message, now) - NEAR_WINDOW
        )
        if earlier is not None:
            apps.add_to_thread(store, earlier, [message.message_id, *keys], now)
            if message.conversation:
                apps.add_to_thread(store, earlier, [message.conversation], now)
            logger.info("%s: same application as #%d", message.message_id, earlier.id)
            contact = self._contact(store, message, analysis.reply_to)
            if contact is not None and not earlier.contact_email and plain_address(contact.email):
                # The recruiter's own note after the ATS's no-reply one: now there is someone
                # to write to. A request already drafted to nobody is not drafted again (the
                # user adds them; `status` shows whom); the follow-up and thank-you use them.
                apps.update(
                    store, earlier.id, now, contact_email=contact.email, contact_name=contact.name
                )
                self._note(f"#{earlier.id}: contact found: {contact}")
            return
        self.open(store, message, analysis, now)

    def open(self, store: Store, message: Message, analysis: Analysis, now: datetime) -> None:
        contact = self._contact(store, message, analysis.reply_to)
        if analysis.label == "closed":
            state, note = State.CLOSED, "the position was closed or cancelled: nothing to ask"
        elif analysis.stage not in self.config.lifecycle.stages:
            state, note = State.SKIPPED, f"{analysis.stage}-stage: not in [lifecycle] stages"
        elif now - _when(message, now) > self.timing.send_within:
            # Seen long after it arrived (a first run reads weeks back): a request is owed
            # within about a day, and one weeks late reads as automated.
            days = (now - _when(message, now)).days
            state, note = State.SKIPPED, f"seen {days} days after it arrived: too late to ask"
        else:
            state, note = State.NEW, ""
        application_id = apps.open_application(
            store,
            now,
            state,
            company=analysis.company,
            company_key=company_key(analysis.company),
            role=analysis.role,
            stage=analysis.stage,
            contact_email=contact.email if contact else None,
            contact_name=contact.name if contact else "",
            no_feedback=analysis.no_feedback_policy,
            rejection_message_id=message.message_id,
            rejection_subject=message.subject,
            rejection_references=_chain(message),
            rejection_at=_when(message, now),
            thread=json.dumps([message.conversation] if message.conversation else []),
            note=note,
        )
        self._note(f"#{application_id} opened ({state.value}): {analysis.company or '?'}")
        answered = store.sent_answer(message.message_id) if state is State.NEW else None
        if answered is not None:
            # The user answered the rejection before nextround saw it (the service was down,
            # or this is its first run): their own request stands, and no draft is owed.
            sent_id, sent_at, recipients = answered
            self.record_sent(store, application_id, "request", sent_id, sent_at or now, now)
            self._sent_to(store, application_id, recipients, now)

    def _sent_to(
        self, store: Store, application_id: int, recipients: Sequence[Address], now: datetime
    ) -> None:
        """Whom the user sent the request to (added, or chosen instead of ours: the first
        recipient but themselves) is whom the one follow-up goes to."""
        to = next((a for a in recipients if a.email != self.identity.email), None)
        if to is not None and plain_address(to.email):
            apps.update(store, application_id, now, contact_email=to.email, contact_name=to.name)

    def _late_reply(self, store: Store, app: Application, message: Message) -> bool:
        """Whether `message` answers what the user sent of `app` after nextround ended it: it
        names our draft (sent from a client that keeps no copy in Sent, so the draft looked
        deleted) or the sent copy (an answer after close_after)."""
        return (
            app.state in LATE_STATES
            and not _automated(message)  # people (a shared box too), not an ATS's notice
            and not app.sent_ids.isdisjoint(message.thread_ids)
            and apps.ended_by_daemon(store, app)
        )

    def _unthreaded_reply_to(
        self, store: Store, message: Message, analysis: Analysis
    ) -> list[Application]:
        """The application a mail without In-Reply-To or References answers, if any: some
        tools write neither, and people answer in a new mail of their own. It must come
        from the person the request went to, after it was sent, under the request's subject
        or one that speaks of feedback ("Feedback on your interview"; not "Coffee next
        month?"). From anyone else it is not matched: a colleague's mail, without threading
        headers, cannot be told from the company's other mail.

        Mail that reads like a rejection answers only as `_may_answer` says."""
        sender = message.from_
        if sender is None:
            return []
        subject = normalised_subject(message.subject)
        asked = [
            app
            for app in apps.in_states(store, list(REPLY_STATES))
            if app.contact_email == sender.email
            and app.request_sent_at is not None
            and (message.date is None or message.date >= app.request_sent_at)
            and _may_answer(message, analysis, app)
        ]
        same = [
            app
            for app in asked
            if subject == normalised_subject(app.request_subject or app.rejection_subject)
        ]
        if same or len(asked) != 1:  # asked twice: only the subject tells which it answers
            return same
        return asked if _FEEDBACK_SUBJECT.search(subject) else []

    def _contact(self, store: Store, message: Message, reply_to: str | None) -> Address | None:
        """The chosen address with its display name, from this mail or an earlier one."""
        if not reply_to:
            return None
        for address in (*message.reply_to, message.from_):
            if address and address.email == reply_to:
                return address
        return store.contact(reply_to) or Address("", reply_to)

    def on_sent(
        self, store: Store, message: Message, now: datetime, looked: datetime | None = None
    ) -> None:
        """A sent copy: the user sent a request or a follow-up (under any Message-ID).
        `looked`: when its folder was last looked at before, so the copy reached it since."""
        marked = parse_header_value(message.headers.get(HEADER.lower(), ""))
        waiting = apps.in_states(store, [State.NEW, *AWAITING_SEND, State.FOLLOWED_UP])
        # A copy that names its application (our header, or the mail it answers) wins over a
        # guess from recipient and subject, which fits every request to one person under one
        # subject alike: the guess counts only for a copy that names no application's mail,
        # and when it fits one application.
        found = [(app, step) for app in waiting if (step := _sent_step(app, message, marked))]
        if not found and self._followed_up_by_hand(store, message, now):
            return
        late = False
        if not found:
            found = self._sent_late(store, message, marked)
            late = bool(found)
        if not found and marked is None and not apps.by_thread(store, message.thread_ids):
            guessed = [(app, step) for app in waiting if (step := _guessed_step(app, message))]
            found = guessed if len(guessed) == 1 else []
        for app, step in found[:1]:
            # Never before the draft was made (a client may date a copy by when editing began).
            drafted = app.request_drafted_at if step == "request" else app.follow_up_drafted_at
            sent_at = max(_when(message, now), drafted or _when(message, now))
            if late and looked is not None:
                # An outbox dates a copy when queued, maybe days before it went out; it
                # reached Sent after the folder was last looked at.
                sent_at = min(now, max(sent_at, looked))
            self.record_sent(store, app.id, step, message.message_id, min(sent_at, now), now)
            if step == "request":
                self._sent_to(store, app.id, message.to, now)
                if message.subject:  # as the user sent it: what a follow-up or reply is under
                    apps.update(store, app.id, now, request_subject=message.subject)
            if message.conversation:
                apps.add_to_thread(store, app, [message.conversation], now)
            return

    def _sent_late(
        self, store: Store, message: Message, marked: tuple[int, str] | None
    ) -> list[tuple[Application, str]]:
        """The draft this copy is, of an application ended because that draft left Drafts
        with no copy in Sent: sent later after all (a scheduled send, an outbox). It names
        the draft (our header, its Message-ID), or answers what the draft answers, to the
        person asked (anyone, if the draft had no recipient), in the draft's words: a note
        the user sends in the thread after deleting the draft ("thanks for letting me
        know") is not it, nor a forward of it to someone else."""
        if marked is not None:
            app = apps.get(store, marked[0])
            candidates = [app] if app is not None else []
        else:
            candidates = apps.by_thread(store, [message.message_id, *message.thread_ids])
        found = []
        for app in candidates:
            step = apps.vanished_step(store, app)
            if step is None or (marked is not None and marked != (app.id, step)):
                continue
            request = step == "request"
            draft_id = app.request_draft_message_id if request else app.follow_up_draft_message_id
            if (
                marked is not None
                or message.message_id == draft_id
                or (
                    _answers(app, step) in message.thread_ids
                    and (_to_contact(app, message) or (request and not app.contact_email))
                    and self._in_draft_words(app, step, message)
                )
            ):
                found.append((app, step))
        return found

    def _in_draft_words(self, app: Application, step: str, message: Message) -> bool:
        """Whether a copy's text holds most of the words its draft starts with: the draft,
        edited perhaps, not a note of the user's. The draft as its template renders now."""
        try:
            body = self.renderer.render(
                template_name(step, app.stage), self.draft_spec(app, step).variables
            )
        except NextroundError:
            return False
        drafted = _words(body[:TRIAGE_TEXT])
        # Not what the copy quotes: a note quoting the request holds its words too.
        written = _words(own_text(message.text))
        return bool(drafted) and len(drafted & written) >= DRAFT_WORDS * len(drafted)

    def _followed_up_by_hand(self, store: Store, message: Message, now: datetime) -> bool:
        """Whether this sent copy is the user's own follow-up: in the thread of a request
        awaiting an answer (or whose follow-up is due, its draft not written yet), to the
        person asked, a day or more after the request (a note added right after it, or a
        forward to someone else, is none). It is the one follow-up the guide allows, and
        nextround drafts none."""
        sent_at = min(_when(message, now), now)
        for app in apps.in_states(store, [State.REQUESTED, State.FOLLOWED_UP]):
            if (
                (app.state is State.REQUESTED or not app.follow_up_draft_message_id)
                and not app.known_ids.isdisjoint(message.thread_ids)
                and _to_contact(app, message)
                and app.request_sent_at is not None
                and sent_at - app.request_sent_at >= HAND_FOLLOW_UP_AFTER
            ):
                self.event(
                    store, app, Event.FOLLOW_UP_SENT, now,
                    f"followed up by hand as {message.message_id}",
                    follow_up_draft_message_id=message.message_id, follow_up_drafted_at=sent_at,
                    follow_up_sent_message_id=message.message_id, follow_up_sent_at=sent_at,
                )  # fmt: skip
                apps.add_to_thread(store, app, [message.message_id], now)
                return True
        return False

    # -- after the sync ---------------------------------------------------------------------

    def check_drafts(
        self, mailbox: Mailbox, store: Store, folders: dict[str, FolderRef], now: datetime
    ) -> None:
        """A draft gone from Drafts with no sent copy means the user chose not to send it."""
        pending = [
            app
            for app in apps.in_states(store, [*AWAITING_SEND, State.FOLLOWED_UP])
            if app.state is not State.FOLLOWED_UP or not app.follow_up_sent_at
        ]
        pending = [app for app in pending if _pending_draft(app) is not None]
        if not pending:
            return
        present = _drafts_present(mailbox.folder_headers(folders["drafts"].name))
        for app in pending:
            step, answers = _pending_draft(app) or ("", "")
            here = (app.id, step) in present["marked"] or answers in present["answers"]
            with store.transaction():
                if here:
                    if app.draft_missing_since:
                        apps.update(store, app.id, now, draft_missing_since=None)
                    continue
                if app.draft_missing_since is None:
                    apps.update(store, app.id, now, draft_missing_since=now)
                    continue
                if now - app.draft_missing_since < VANISH_GRACE:
                    continue
                event = (
                    Event.REQUEST_DRAFT_GONE if step == "request" else Event.FOLLOW_UP_DRAFT_GONE
                )
                self.event(store, app, event, now, "the draft was deleted without being sent")

    def apply_due_events(self, store: Store, now: datetime) -> None:
        for app in apps.in_states(store, OPEN_STATES):
            event = due_event(app.state, app.clock, self.timing, now)
            if event is None:
                continue
            with store.transaction():
                self.event(store, app, event, now, "due")

    def write_drafts(
        self, mailbox: Mailbox, store: Store, folders: dict[str, FolderRef], now: datetime
    ) -> None:
        for app in apps.in_states(store, [State.NEW, State.FOLLOWED_UP, State.REPLIED]):
            step = _owed_draft(app)
            if step is None:
                continue
            self.write_draft(mailbox, store, folders, app, step, now)
            stopping.check()

    def write_draft(
        self,
        mailbox: Mailbox,
        store: Store,
        folders: dict[str, FolderRef],
        app: Application,
        step: str,
        now: datetime,
    ) -> None:
        """Write the draft `step` of `app` exactly once, whatever crashed before.

        The draft's Message-ID and Drafts' UIDNEXT are committed before the APPEND; if the
        process dies between the APPEND and the commit that records it, the next cycle finds
        the draft (by our header or its Message-ID), or its sent copy (the user sent it; the
        client may have dropped our header), or sees that Drafts took a message since (the user
        deleted it) -- and never writes a second one."""
        spec = self.draft_spec(app, step)
        drafts = folders["drafts"].name
        found = self.recover(mailbox, folders, app, step, spec)
        if found is not None:
            message_id, raw = found.message_id, b""
            logger.info("#%d: the %s draft exists already (%s)", app.id, step, message_id)
        else:
            template = template_name(step, app.stage)
            body = self.renderer.render(template, spec.variables)
            raw, message_id = build_draft(spec, body, now)
            before = mailbox.status(drafts).uidnext
            with store.transaction():
                apps.update(
                    store,
                    app.id,
                    now,
                    pending_step=step,
                    pending_message_id=message_id,
                    pending_drafts_uidnext=before,
                )
            try:
                mailbox.append(drafts, raw, ["\\Draft", "\\Seen"], now)
            except MailboxError:
                # Failed, or its answer was lost. Whether it got there, the next cycle looks
                # for it by header and id; what Drafts takes meanwhile (a client autosaving,
                # which stores a draft and expunges the one before) says nothing about ours.
                with contextlib.suppress(NextroundError), store.transaction():
                    apps.update(store, app.id, now, pending_drafts_uidnext=None)
                raise
            checkpoint("after-append")  # the crash `recover` is there for
            done = "would be drafted (dry run)" if self.dry_run else "drafted"
            logger.info("#%d: %s %s to %s", app.id, step, done, spec.to or "nobody yet")
        if self.report is not None:
            self.report.drafts.append(
                Planned(app.id, step, str(spec.to or ""), spec.subject, raw, found is not None)
            )
        with store.transaction():
            self.record_draft(store, app, step, spec, message_id, now)
            if found is not None and found.sent_id is not None:
                self.record_sent(store, app.id, step, found.sent_id, found.sent_at or now, now)

    def record_draft(
        self,
        store: Store,
        app: Application,
        step: str,
        spec: DraftSpec,
        message_id: str,
        now: datetime,
    ) -> None:
        clear = {"pending_step": None, "pending_message_id": None, "pending_drafts_uidnext": None}
        if step == "request":
            event = Event.REQUEST_DRAFTED if spec.to else Event.REQUEST_DRAFTED_NO_CONTACT
            self.event(
                store,
                app,
                event,
                now,
                message_id,
                request_draft_message_id=message_id,
                request_drafted_at=now,
                request_subject=spec.subject,
                **clear,
            )
        elif step == "follow_up":
            apps.update(
                store,
                app.id,
                now,
                follow_up_draft_message_id=message_id,
                follow_up_drafted_at=now,
                **clear,
            )
        else:
            apps.update(
                store,
                app.id,
                now,
                thank_you_draft_message_id=message_id,
                thank_you_drafted_at=now,
                **clear,
            )

    def record_sent(
        self,
        store: Store,
        application_id: int,
        step: str,
        sent_id: str,
        sent_at: datetime,
        now: datetime,
    ) -> None:
        """The user sent the draft `step` (seen in Sent, or found after a crash)."""
        app = apps.get(store, application_id)
        if app is None or step == "thank_you":
            return
        sent_at = min(sent_at, now)
        if step == "request":
            self.event(
                store,
                app,
                Event.REQUEST_SENT,
                now,
                f"sent as {sent_id}",
                request_sent_message_id=sent_id,
                request_sent_at=sent_at,
                draft_missing_since=None,
            )
        else:
            self.event(
                store,
                app,
                Event.FOLLOW_UP_SENT,
                now,
                f"follow-up sent as {sent_id}",
                follow_up_sent_message_id=sent_id,
                follow_up_sent_at=sent_at,
                draft_missing_since=None,
            )
        apps.add_to_thread(store, app, [sent_id], now)

    def recover(
        self,
        mailbox: Mailbox,
        folders: dict[str, FolderRef],
        app: Application,
        step: str,
        spec: DraftSpec,
    ) -> Recovered | None:
        """A draft for this step that already exists (or existed), or None: write it."""
        drafts, sents = folders["drafts"].name, [ref.name for ref in watched(folders, "sent")]
        wanted = (app.id, step)
        # What the draft says it answers: the id as written, "" for one it cannot write.
        answers = safe_message_id(spec.answers)
        for folder in (drafts, *sents):
            for raw in mailbox.search_header(folder, HEADER, f"{app.id}; step={step}").values():
                parsed = _HEADERS.parsebytes(raw)
                if parse_header_value(str(parsed.get(HEADER, ""))) != wanted:
                    continue  # a substring match for another application
                replied_to = message_ids(str(parsed.get("In-Reply-To", "")))
                if answers and replied_to and answers not in replied_to:
                    continue  # left by a state started afresh, whose #id was another's
                own = _first_id(parsed) or app.pending_message_id or "<unknown@nextround.invalid>"
                if folder == drafts:
                    return Recovered(own)
                return Recovered(app.pending_message_id or own, own, _date_of(parsed))
        pending = app.pending_message_id
        if app.pending_step != step or not pending:
            return None
        if mailbox.search_header(drafts, "Message-ID", pending):
            return Recovered(pending)
        for sent in sents if answers else ():
            for raw in mailbox.search_header(sent, "In-Reply-To", answers).values():
                parsed = _HEADERS.parsebytes(raw)
                sent_id = _first_id(parsed)
                if sent_id:
                    return Recovered(pending, sent_id, _date_of(parsed))
        taken = app.pending_drafts_uidnext
        if taken is None or (uidnext := mailbox.status(drafts).uidnext) <= taken:
            return None
        # Drafts stored something since we wrote. What the UID that was next holds is ours,
        # or another's (the user's client saved a draft of theirs): ours never got there. If
        # it holds nothing, it was ours, deleted by the user or saved anew by their client
        # (an edit keeps what it answers); or a draft of theirs an autosave replaced, and
        # ours never got there: then that autosave's draft is after it. An extra draft is
        # better than a rejection never answered; a draft the user deleted is not written
        # again unless that is all that can be said.
        since = mailbox.headers_of(drafts, list(range(taken, min(uidnext, taken + SINCE))))
        first = since.get(taken)
        ours = first is not None and _is_draft(first, wanted, pending)
        edited = (
            first is None
            and bool(answers)
            and bool(mailbox.search_header(drafts, "In-Reply-To", answers))
        )
        if ours or edited or all(_is_draft(found, wanted, pending) for found in since.values()):
            return Recovered(pending)
        logger.warning("#%d: the %s draft never reached %s; writing it", *wanted, drafts)
        return None

    def draft_spec(self, app: Application, step: str) -> DraftSpec:
        contact = _plain(Address(app.contact_name, app.contact_email or ""))
        if step == "request":
            subject, answers = reply_subject(app.rejection_subject), app.rejection_message_id
            references = app.rejection_references
        elif step == "follow_up":
            subject = reply_subject(app.request_subject or app.rejection_subject)
            answers = app.request_sent_message_id or app.rejection_message_id
            references = (*app.rejection_references, app.rejection_message_id)
        else:
            repliers = [_plain(address) for address in addresses_from_json(app.reply_from)]
            contact = next(iter(repliers), None) or contact
            subject = reply_subject(app.reply_subject or app.rejection_subject)
            answers = app.reply_message_id or app.rejection_message_id
            references = app.reply_references
        variables = draft_variables(
            self.identity,
            contact,
            app.company,
            app.role,
            app.stage,
            app.no_feedback,
            rejected_on=local_date(app.rejection_at, self.zone) if app.rejection_at else None,
            request_date=local_date(app.request_sent_at, self.zone)
            if app.request_sent_at
            else None,
        )
        return DraftSpec(
            application_id=app.id,
            step=step,
            identity=self.identity,
            to=contact,
            subject=subject,
            answers=answers,
            references=tuple(references),
            variables=variables,
        )

    # -- bookkeeping ------------------------------------------------------------------------

    def event(
        self,
        store: Store,
        app: Application,
        event: Event,
        now: datetime,
        detail: str = "",
        **values: object,
    ) -> Draft:
        state, draft = apps.apply_event(store, app, event, now, detail, **values)
        self._note(f"#{app.id} {app.state.value} -> {state.value} ({event.value})")
        return draft

    def _note(self, text: str) -> None:
        logger.info("%s", text)
        if self.report is not None:
            self.report.events.append(text)


def _when(message: Message, now: datetime) -> datetime:
    return min(message.date, now) if message.date else now


def _chain(message: Message) -> str:
    """What a reply's References start with (RFC 5322): the parent's References, or its
    In-Reply-To when it has none; the reply adds the parent's own id."""
    return " ".join(message.references or message.in_reply_to)


def _plain(address: Address) -> Address | None:
    """The address, if it is one we may write into a draft's To (see `plain_address`)."""
    return address if plain_address(address.email) else None


def _may_answer(message: Message, analysis: Analysis, app: Application) -> bool:
    """Whether mail without threading headers of its own may answer `app`'s request, as far
    as its words go. Feedback reads like a rejection, and so does the same person's next
    rejection (an ATS writes from the recruiter's own address, under its own subject, and
    Gmail files it in the same conversation): job mail answers only if it says so (a subject
    that starts with Re: or Fwd:, or speaks of feedback) and names no other role."""
    if not analysis.job_mail:
        return True
    says_so = is_reply_subject(message.subject) or _FEEDBACK_SUBJECT.search(
        normalised_subject(message.subject)
    )
    return bool(says_so) and apps.same_role(analysis.role, app.role)


def _automated(message: Message) -> bool:
    """Sent by a system (no-reply, an ATS): a shared box (recruiting@) may be people."""
    return not any(
        address is not None and not is_automated_address(address)
        for address in (*message.reply_to, message.from_)
    )


def _replier(message: Message) -> Address | None:
    """Whom a thank-you answers: the person the reply names, Reply-To first (as a mail client
    answers), never a no-reply address (an ATS relays the recruiter's answer from one)."""
    for address in (*message.reply_to, message.from_):
        if address is not None and is_human_address(address) and plain_address(address.email):
            return address
    return None


def _pending_draft(app: Application) -> tuple[str, str] | None:
    """The unsent draft of `app` we expect in Drafts: (step, the Message-ID it answers)."""
    if app.state in AWAITING_SEND and app.request_draft_message_id:
        return "request", app.rejection_message_id
    if app.state is State.FOLLOWED_UP and app.follow_up_draft_message_id:
        return "follow_up", app.request_sent_message_id or app.rejection_message_id
    return None


def _owed_draft(app: Application) -> str | None:
    if app.state is State.NEW:
        return "request"
    if app.state is State.FOLLOWED_UP and not app.follow_up_draft_message_id:
        return "follow_up"
    if app.state is State.REPLIED and not app.thank_you_draft_message_id:
        return "thank_you"
    return None


def _expected_step(app: Application) -> str | None:
    """The draft of `app` a sent copy may be, if any is unsent."""
    if app.state is State.FOLLOWED_UP and (
        app.follow_up_sent_at or not app.follow_up_draft_message_id
    ):
        return None
    return "request" if app.state in AWAITING_SEND or app.state is State.NEW else "follow_up"


def _sent_step(app: Application, message: Message, marked: tuple[int, str] | None) -> str | None:
    """Which of `app`'s drafts this sent copy is, by what names it: our header (which wins),
    or the mail it answers."""
    expected = _expected_step(app)
    if expected is None:
        return None
    if marked is not None:
        return expected if marked == (app.id, expected) else None
    answers = _answers(app, expected)
    if not answers or answers not in message.thread_ids:
        return None
    # The follow-up answers the sent request, as a forward of it to someone else does.
    return expected if expected == "request" or _to_contact(app, message) else None


def _answers(app: Application, step: str) -> str | None:
    """The Message-ID the draft of `step` answers: the rejection, or the sent request."""
    return app.rejection_message_id if step == "request" else app.request_sent_message_id


def _words(text: str) -> set[str]:
    return {word.casefold() for word in re.findall(r"[^\W\d_]{4,}", text)}


def _to_contact(app: Application, message: Message) -> bool:
    """Whether a sent copy went to `app`'s contact (To or Cc)."""
    return app.contact_email in {address.email for address in (*message.to, *message.cc)}


def _guessed_step(app: Application, message: Message) -> str | None:
    """Which of `app`'s drafts a sent copy that names nothing may be: one to its contact,
    under its subject, no older than the draft."""
    expected = _expected_step(app)
    if expected is None:
        return None
    drafted_at = app.request_drafted_at if expected == "request" else app.follow_up_drafted_at
    subject = app.request_subject or reply_subject(app.rejection_subject)
    recipients = {address.email for address in message.to}
    if (
        app.contact_email
        and app.contact_email in recipients
        and normalised_subject(message.subject) == normalised_subject(subject)
        and (drafted_at is None or message.date is None or message.date >= drafted_at)
    ):
        return expected
    return None


def _drafts_present(headers: dict[int, bytes]) -> dict[str, set[object]]:
    marked: set[object] = set()
    answers: set[object] = set()
    for raw in headers.values():
        parsed = _HEADERS.parsebytes(raw)
        value = parse_header_value(str(parsed.get(HEADER, "")))
        if value:
            marked.add(value)
        answers.update(message_ids(str(parsed.get("In-Reply-To", ""))))
    return {"marked": marked, "answers": answers}


def _is_draft(raw: bytes, wanted: tuple[int, str], message_id: str) -> bool:
    """Whether a header block is that of our draft `wanted` (by our header or its id)."""
    parsed = _HEADERS.parsebytes(raw)
    return parse_header_value(str(parsed.get(HEADER, ""))) == wanted or _first_id(parsed) == (
        message_id
    )


def _first_id(parsed: email.message.Message) -> str | None:
    ids = message_ids(str(parsed.get("Message-ID", "")))
    return ids[0] if ids else None


def _date_of(parsed: email.message.Message) -> datetime | None:
    try:
        value = parsedate_to_datetime(str(parsed.get("Date", "")))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
