"""`nextround demo`: the whole lifecycle on a throwaway mailbox, offline, narrated step by step.

No config and no account: a small IMAP server runs inside this process on 127.0.0.1 (see
`demo_mailbox.py`), and the real pipeline (config, IMAP session, classifier, engine, store)
runs against it with explicit times, so a week passes in a second. Everything lives in a
temporary directory that is removed at the end; nothing is written under $HOME.

Heavy modules (scikit-learn, pymap) are imported by `run_demo` only, so building the CLI's
parser stays cheap for every other command.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import shutil
import tempfile
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nextround.daemon.config import Config, parse_config, parse_duration
from nextround.daemon.errors import NextroundError, UsageError

if TYPE_CHECKING:
    from email.message import EmailMessage

    from nextround.classifier.inference import RejectionModel
    from nextround.classifier.message import Message
    from nextround.classifier.verdict import Analysis
    from nextround.daemon.demo_mailbox import DemoImapServer, MailClient, SeedMail
    from nextround.daemon.engine import CycleReport, Engine, Planned
    from nextround.daemon.store import Store
    from nextround.daemon.training import ModelSettings

logger = logging.getLogger(__name__)

EXIT_OK = 0
# Draft headers shown to the reader, in this order.
SHOWN_HEADERS = ("From", "To", "Subject")
STEP_NAMES = {
    "request": "feedback request",
    "follow_up": "follow-up",
    "thank_you": "thank-you",
}
WIDTH = 92


def say(text: str = "") -> None:
    """The demo's one way to talk: its output is the point of the command."""
    print(text, flush=True)  # flushed so each step shows before the next one starts


def prose(text: str, indent: str = "") -> None:
    """A paragraph of explanation, wrapped to the demo's width."""
    say(
        textwrap.fill(
            text,
            WIDTH,
            initial_indent=indent,
            subsequent_indent=indent,
            break_on_hyphens=False,
            break_long_words=False,
        )
    )


def heading(text: str) -> None:
    say()
    say(text)
    say("-" * len(text))


def when(moment: datetime) -> str:
    return moment.strftime("%a %d %b, %H:%M")


def indented(text: str, prefix: str = "    ") -> Iterator[str]:
    """Mail text for the terminal: each long paragraph line wrapped, as a mail client shows it."""
    for line in text.rstrip("\n").splitlines():
        if not line.strip():
            yield prefix.rstrip()
            continue
        for part in textwrap.wrap(line, WIDTH - len(prefix), break_on_hyphens=False):
            yield f"{prefix}{part}"


def run_demo(args: argparse.Namespace) -> int:
    # "info", the parser's default, narrates every step on stderr and would bury the demo's
    # own story; any other level was asked for on purpose.
    root = logging.getLogger()
    if args.log_level == "info":
        root.setLevel(logging.WARNING)
    # pymap logs every byte on the wire at DEBUG, the LOGIN line with the demo's password too.
    logging.getLogger("pymap").setLevel(max(root.level, logging.INFO))
    keep: Path | None = args.keep
    if keep is not None:
        keep = keep.expanduser()
        if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
            raise UsageError(f"--keep {keep}: must be an empty directory or not exist yet")

    from nextround.daemon.demo_mailbox import USER_EMAIL, DemoImapServer

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nextround-demo-") as directory:
        temp = Path(directory)
        with DemoImapServer(USER_EMAIL, secrets.token_urlsafe(18)) as server:
            config = demo_config(temp, server)
            Demo(config, server).run()
        if keep is not None:
            keep_state(config, keep)
    say()
    say(
        f"Done in {time.monotonic() - started:.0f} s. The demo server is stopped and its "
        "temporary files are removed."
    )
    return EXIT_OK


def demo_config(temp: Path, server: DemoImapServer) -> Config:
    """A config as a user would write it, pointing at the demo server and the temp dir."""
    from nextround.daemon.demo_mailbox import USER_NAME

    password_file = temp / "imap-password"
    password_file.write_text(server.password + "\n", encoding="utf-8")
    password_file.chmod(0o600)
    state = temp / "state"
    state.mkdir(mode=0o700)
    document: dict[str, Any] = {
        "imap": {
            "host": server.host,
            "port": server.port,
            "security": "plain",  # allowed to a loopback host only
            "username": server.username,
            "password_file": str(password_file),
            "timeout": 10.0,
        },
        "identity": {"name": USER_NAME, "email": server.username},
        "state": {"database": str(state / "state.db")},
    }
    return parse_config(document, temp / "config.toml")


def keep_state(config: Config, keep: Path) -> None:
    """Copy the state directory, with a config that `status` can read offline."""
    try:
        _copy_state(config, keep)
    except (OSError, shutil.Error) as error:
        raise NextroundError(f"--keep {keep}: cannot write there: {error}") from None
    say()
    say(f"The state is kept in {keep}: try `nextround -c {keep / 'config.toml'} status`.")


def _copy_state(config: Config, keep: Path) -> None:
    shutil.copytree(config.state_dir, keep, dirs_exist_ok=True)
    (keep / "config.toml").write_text(
        "# Written by `nextround demo --keep`: the demo's server is gone, so only the offline\n"
        "# commands work here, e.g. `nextround -c config.toml status`.\n"
        "[imap]\n"
        f'host = "{config.imap.host}"\n'
        f"port = {config.imap.port}\n"
        'security = "plain"\n'
        f'username = "{config.imap.username}"\n\n'
        "[identity]\n"
        f'name = "{config.identity.name}"\n'
        f'email = "{config.identity.email}"\n\n'
        "[state]\n"
        'database = "state.db"\n',
        encoding="utf-8",
    )


class Demo:
    """The story, told in numbered sections, each one a real cycle or a real user action."""

    def __init__(self, config: Config, server: DemoImapServer) -> None:
        from nextround.daemon.demo_mailbox import MailClient

        self.config = config
        self.server = server
        self.client: MailClient = MailClient(server)
        # The first cycle runs "today" at nine; every other moment is measured from it.
        self.start = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
        self.message_ids: dict[SeedMail, str] = {}

    def run(self) -> None:
        from nextround.daemon.engine import Engine
        from nextround.daemon.store import Store

        self.introduce()
        self.seed_inbox()
        engine = Engine(self.config, self.load_model())
        store = Store.open(self.config.database_path)
        try:
            self.tell(engine, store)
        finally:
            store.close()

    def introduce(self) -> None:
        title = "nextround demo"
        say(title)
        say("=" * len(title))
        prose(
            f"A throwaway IMAP server is running inside this process on {self.server.host}:"
            f"{self.server.port}. It holds the mailbox of {self.config.identity.name} "
            f"<{self.config.identity.email}>, who is looking for a job. nextround reads it "
            "exactly as it reads a real one, with simulated time: a week passes in a second. "
            "Nothing is sent and nothing leaves this machine: nextround only writes drafts."
        )

    def seed_inbox(self) -> None:
        from nextround.daemon.demo_mailbox import INBOX

        self.client.create_folders("Drafts", "Sent")
        heading("1. Your inbox")
        for mail in INBOX:
            arrived = mail.arrival(self.start)
            raw, message_id = mail.compose(arrived)
            self.client.deliver(raw, arrived)
            self.message_ids[mail] = message_id
            say(f"  {when(arrived)}  {mail.sender}")
            say(f"  {'':<17}  {mail.subject}")
            say(f"  {'':<17}  {preview(mail.body, WIDTH - 21)}")
            say()
        say("Drafts and Sent are empty.")

    def load_model(self) -> RejectionModel:
        from nextround.daemon.commands import model_settings
        from nextround.daemon.config import default_state_dir
        from nextround.daemon.training import MODEL_FILE, get_model

        settings = model_settings(self.config)
        installed = default_state_dir() / MODEL_FILE
        say()
        reused = reuse_model(installed, settings)
        if reused is not None:
            say(f"Using the classifier you trained already ({installed}).")
            return reused
        say("training the classifier (first run only)...")
        say("  (a real installation keeps its model; the demo trains its own, in its temp dir)")
        began = time.monotonic()
        model = get_model(settings)
        say(f"  done in {time.monotonic() - began:.1f} s")
        return model

    def cycle(self, engine: Engine, store: Store, now: datetime) -> CycleReport:
        """One `nextround once --now NOW`: log in, sync, classify, draft, log out."""
        from nextround.daemon.session import open_session

        session = open_session(self.config)
        try:
            return engine.poll_once(session.mailbox, store, session.folders, now)
        finally:
            session.close()

    # -- the story ---------------------------------------------------------------------------

    def tell(self, engine: Engine, store: Store) -> None:
        from nextround.daemon.demo_mailbox import (
            ATS_REJECTION,
            INTERVIEW_REJECTION,
            RECRUITER_REPLY,
            RECRUITER_SCHEDULING,
        )

        now = self.start
        heading(f"2. nextround's first cycle ({when(now)})")
        prose(
            "A cycle is what `nextround once` does and what `nextround run` repeats: log in, "
            "read what is new in Sent and INBOX (on the first run, the last "
            f"{self.config.sync.backfill_days} days), classify each new mail, and write the "
            "drafts that are owed into Drafts."
        )
        first = self.cycle(engine, store, now)
        self.show_report(first)

        heading("3. You review the drafts and send two of them")
        prose(
            "nextround never sends anything: your mail client does. Like most clients, it gives "
            "the sent copy a new Message-ID, keeps In-Reply-To and References, drops headers "
            "it does not know (nextround's X-Nextround-Application among them), stores the "
            "copy in Sent and deletes the draft."
        )
        to_interviewer = self.planned_to(first, INTERVIEW_REJECTION.sender_email)
        to_recruiter = self.planned_to(first, RECRUITER_SCHEDULING.sender_email)
        sent_at = now + timedelta(minutes=30)
        self.send(to_interviewer, sent_at)
        recruiter_sent_at = now + timedelta(days=2, hours=1)
        recruiter_sent_id = self.send(to_recruiter, recruiter_sent_at)
        untouched = [
            planned for planned in first.drafts if planned not in (to_interviewer, to_recruiter)
        ]
        for planned in untouched:
            prose(
                f"You leave the draft to {planned.to or 'nobody yet'} in Drafts; nextround "
                f"waits {duration(self.config.lifecycle.send_within)} for it to be sent.",
                indent="  ",
            )

        now = recruiter_sent_at + timedelta(minutes=5)
        heading(f"4. nextround's next cycle ({when(now)})")
        report = self.cycle(engine, store, now)
        self.show_report(report)
        if any("(request_sent)" in event for event in report.events):
            prose(
                "The sent copies carry new Message-IDs and no nextround header: nextround knew "
                "them by their In-Reply-To, and now waits for an answer."
            )

        now = self.start + timedelta(days=8)
        heading(
            f"5. Eight days later, no answer from {INTERVIEW_REJECTION.sender_name} ({when(now)})"
        )
        prose(
            "A request that gets no reply within "
            f"{duration(self.config.lifecycle.follow_up_after)} earns one follow-up draft."
        )
        self.show_report(self.cycle(engine, store, now))

        replied_at = now + timedelta(hours=2)
        heading(f"6. {RECRUITER_REPLY.sender_name} replies ({when(replied_at)})")
        raw, _ = RECRUITER_REPLY.compose(
            replied_at,
            in_reply_to=recruiter_sent_id,
            references=f"{self.message_ids[ATS_REJECTION]} {recruiter_sent_id}",
        )
        self.client.deliver(raw, replied_at)
        say(f"  From: {RECRUITER_REPLY.sender}")
        say(f"  Subject: {RECRUITER_REPLY.subject}")
        say(f"  In-Reply-To: {recruiter_sent_id}  (the request you sent)")
        say()
        for line in indented(RECRUITER_REPLY.body, "  > "):
            say(line)
        now = replied_at + timedelta(minutes=5)
        say()
        say(f"nextround's next cycle ({when(now)}):")
        self.show_report(self.cycle(engine, store, now))

        heading("7. `nextround status`")
        self.show_status(store)
        say()
        say("To run nextround on your own mailbox:")
        say("  nextround init             writes a first configuration file")
        say("  nextround check-config     logs in and finds your Drafts and Sent folders")
        say("  nextround once --dry-run   shows what it would draft, writing nothing")

    # -- what a cycle saw, decided and drafted -----------------------------------------------

    def show_report(self, report: CycleReport) -> None:
        read = ", ".join(
            f"{result.recorded} new in {result.folder.name}" for result in report.sync.folders
        )
        say(f"It read the mailbox: {read}.")
        if report.analyses:
            say()
            say("What it saw:")
            for message, analysis in report.analyses:
                say(f"  {message.subject}")
                say(f"      from {message.from_ or '(no sender)'}")
                conclusion = describe(message, analysis)
                say(f"      -> {conclusion[0]}")
                for line in conclusion[1:]:
                    say(f"         {line}")
            if report.unlisted:
                say(f"  (and {report.unlisted} more ordinary mails)")
        say()
        if report.events:
            say("What it decided (application #, state changes):")
            for event in report.events:
                say(f"  {event}")
        else:
            say("What it decided: nothing changed.")
        say()
        if not report.drafts:
            say("Drafts written: none.")
            return
        say(f"Drafts written into your Drafts folder: {len(report.drafts)}")
        for planned in report.drafts:
            self.show_draft(planned)

    def show_draft(self, planned: Planned) -> None:
        from nextround.daemon.demo_mailbox import parse

        label = f" draft for application #{planned.application_id}: {STEP_NAMES[planned.step]} "
        say()
        say(f"  {label:-^{WIDTH - 4}}")
        if not planned.raw:  # written by an earlier, interrupted cycle: already in Drafts
            say("    (this draft was already in Drafts)")
            return
        draft: EmailMessage = parse(planned.raw)
        for name in SHOWN_HEADERS:
            value = draft[name]
            say(f"    {name}: {value if value is not None else '(empty: you add the recipient)'}")
        say()
        for line in indented(draft.get_content()):
            say(line)
        say(f"  {'-' * (WIDTH - 4)}")

    def planned_to(self, report: CycleReport, address: str) -> Planned:
        for planned in report.drafts:
            if planned.step == "request" and parseaddr(planned.to)[1] == address:
                return planned
        raise NextroundError(f"demo: nextround wrote no feedback request to {address}")

    def send(self, planned: Planned, moment: datetime) -> str:
        from nextround.daemon.drafts import HEADER, parse_header_value

        wanted = (planned.application_id, planned.step)
        for uid, draft in self.client.folder("Drafts").items():
            if parse_header_value(str(draft[HEADER] or "")) == wanted:
                message_id = self.client.send_draft(uid, moment)
                say(f"  {when(moment)}  you send the draft to {planned.to}")
                say(f"  {'':<17}  as {message_id}")
                return message_id
        raise NextroundError(f"demo: the draft for application #{planned.application_id} is gone")

    def show_status(self, store: Store) -> None:
        from nextround.daemon.commands import application_rows, application_table

        for line in application_table(application_rows(self.config, store)):
            say(line)


def reuse_model(installed: Path, settings: ModelSettings) -> RejectionModel | None:
    """The user's trained model when its inputs match the demo's (none of their corrections
    in it), copied with its signing key so their state directory is only ever read."""
    from nextround.classifier.persist import ModelFileError, key_path_for, load_model
    from nextround.daemon.training import current_fingerprint

    if not (installed.is_file() and key_path_for(installed).is_file()):
        return None
    try:
        shutil.copy2(installed, settings.model_path)
        shutil.copy2(key_path_for(installed), key_path_for(settings.model_path))
        model = load_model(settings.model_path, current_fingerprint(settings))
    except (OSError, ModelFileError) as error:
        logger.debug("not reusing %s: %s", installed, error)
        return None
    model.threshold = settings.threshold
    return model


def describe(message: Message, analysis: Analysis) -> list[str]:
    """What the classifier concluded and what follows, in lines a newcomer can read."""
    score = f"score {analysis.score:.2f}"
    if analysis.label == "closed":
        lines = ["the position was closed or cancelled: nothing to ask for"]
    elif analysis.label == "rejection" and analysis.is_rejection:
        lines = [f"a rejection at the {analysis.stage or 'unknown'} stage ({score})"]
    elif analysis.label == "rejection":
        return [f"perhaps a rejection, but below the threshold ({score}): left alone"]
    else:
        return [f"not a rejection ({score}): left alone"]
    about = ", ".join(part for part in (analysis.company, analysis.role) if part)
    if about:
        lines.append(f"about: {about}")
    if analysis.label != "rejection":
        return lines
    if not analysis.reply_to:
        lines.append("no human to write to: the draft will ask you to add one")
    elif message.from_ is not None and analysis.reply_to == message.from_.email:
        lines.append(f"write to: {analysis.reply_to} (the sender)")
    elif analysis.reply_to in {address.email for address in message.reply_to}:
        lines.append(f"write to: {analysis.reply_to} (its Reply-To)")
    else:
        lines.append(f"write to: {analysis.reply_to} (a person from the company's earlier mail)")
    return lines


def duration(text: str) -> str:
    """ "3d" -> "3 days", for prose."""
    delta = parse_duration(text)
    if delta.days and not delta.seconds:
        return f"{delta.days} day{'s' if delta.days != 1 else ''}"
    hours = delta.total_seconds() / 3600
    return f"{hours:g} hour{'s' if hours != 1 else ''}"


def preview(body: str, width: int) -> str:
    """The first lines after the greeting, as a mail client's list shows them."""
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    text = " ".join(lines[1:] if len(lines) > 1 else lines)
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."
