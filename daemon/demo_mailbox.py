"""The world of `nextround demo`: a throwaway IMAP server, a job seeker's mail, their mail client.

The server is pymap's in-memory ("dict") backend, served from a thread of this process on a
port of 127.0.0.1 that the kernel picks: no network, no root, no files, and nothing can outlive
the demo (no child process, and the thread is a daemon). The mail client plays the user: it
delivers mail into INBOX and sends a draft the way Thunderbird or Gmail would, over IMAP only.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import logging
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

import imapclient
from proxyprotocol.reader import ProxyProtocolReader
from pymap.backend.dict import Config as DictConfig
from pymap.backend.dict import Login
from pymap.concurrent import Subsystem
from pymap.imap import IMAPServer
from pymap.user import Passwords, UserMetadata
from pysasl.hashing import Cleartext

from nextround.daemon.errors import NextroundError
from nextround.daemon.imap import translate_errors

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
CLIENT_TIMEOUT = 10.0

USER_NAME = "Jordan Reyes"
USER_EMAIL = "jordan.reyes@example.net"


class _DemoConfig(DictConfig):
    @property
    def greeting(self) -> bytes:
        # pymap's own greeting asks socket.getfqdn(), a DNS lookup the demo must not make.
        return b"Server ready (nextround demo)"


async def _listen(username: str, password: str) -> asyncio.Server:
    # pymap's IMAP service binds the port from its config and never says which port it got;
    # serving its IMAPServer ourselves lets the kernel pick a free port with no race.
    options = argparse.Namespace(passlib_cfg=None, proxy_protocol=None, debug=False)
    config = _DemoConfig(
        options,
        host=HOST,
        port=0,
        demo_data=False,
        demo_user=username,
        demo_password=password,
        # Plain LOGIN on loopback, as nextround's `security = "plain"` does; no certificate
        # is read (pymap would otherwise load $CERT_FILE if the user has one set).
        tls_enabled=False,
        ssl_context=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER),
        # Everything on the server's own loop: no worker threads to shut down afterwards.
        subsystem=Subsystem.for_asyncio(),
        cpu_subsystem=Subsystem.for_asyncio(),
        invalid_user_sleep=0.0,
        # The password is random, lives in memory and dies with the demo: pymap's default
        # (PBKDF2, 500,000 rounds) would only add half a second to each of some 20 logins.
        hash_context=Cleartext(),
    )
    config.apply_context()
    login = Login(config)
    hashed = await Passwords(config).hash_password(password)
    await login.demo_user_identity.set(UserMetadata(config, username, password=hashed))
    handler = ProxyProtocolReader(config.proxy_protocol).get_callback(IMAPServer(login, config))
    return await asyncio.start_server(handler, host=HOST, port=0)


class DemoImapServer:
    """An empty mailbox for one user, served until `stop()` (or the end of the `with`)."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        self.host = HOST
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    def __enter__(self) -> DemoImapServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nextround-demo-imap", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            self.stop()
            raise NextroundError(f"demo: the IMAP server did not start within {START_TIMEOUT} s")
        if self._failure is not None:
            raise NextroundError(f"demo: the IMAP server did not start: {self._failure}")

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                logger.warning("the demo IMAP server did not stop within %.0f s", STOP_TIMEOUT)
            self._thread = None

    def _run(self) -> None:
        try:
            # asyncio.run cancels the connection tasks still open and closes the loop.
            asyncio.run(self._serve())
        except Exception as error:  # noqa: BLE001 - reported to the thread waiting in start()
            if self._ready.is_set():
                logger.error("the demo IMAP server stopped: %s", error)
            self._failure = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await _listen(self.username, self.password)
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        async with server:
            await self._stopping.wait()


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    if not isinstance(message, EmailMessage):  # pragma: no cover - the policy guarantees it
        raise TypeError("not an EmailMessage")
    return message


class MailClient:
    """The user's mail client, over IMAP only (the demo has no SMTP: nothing leaves)."""

    def __init__(self, server: DemoImapServer) -> None:
        self.server = server

    @contextmanager
    def connection(self) -> Iterator[imapclient.IMAPClient]:
        # Library errors become MailboxError, which the CLI reports in one line.
        with translate_errors(self.server.host, "playing the user's mail client"):
            client = imapclient.IMAPClient(
                self.server.host, port=self.server.port, ssl=False, timeout=CLIENT_TIMEOUT
            )
            try:
                client.login(self.server.username, self.server.password)
                yield client
            finally:
                client.logout()

    def create_folders(self, *names: str) -> None:
        with self.connection() as client:
            for name in names:
                client.create_folder(name)

    def deliver(self, raw: bytes, when: datetime) -> None:
        with self.connection() as client:
            client.append("INBOX", raw, msg_time=when)

    def folder(self, name: str) -> dict[int, EmailMessage]:
        with self.connection() as client:
            client.select_folder(name, readonly=True)
            uids = client.search(["ALL"])
            fetched = client.fetch(uids, [b"BODY.PEEK[]"]) if uids else {}
        return {int(uid): parse(bytes(data[b"BODY[]"])) for uid, data in fetched.items()}

    def send_draft(self, uid: int, when: datetime) -> str:
        """Send the draft as a mail client does: a new Message-ID, the same In-Reply-To and
        References, headers it does not know dropped (as Gmail does), the copy stored in Sent,
        the draft deleted. Return the sent copy's Message-ID."""
        draft = self.folder("Drafts")[uid]
        sent = EmailMessage()
        for name in ("From", "To", "Subject", "In-Reply-To", "References"):
            if draft[name] is not None:
                sent[name] = str(draft[name])
        sent["Date"] = format_datetime(when)
        message_id = make_msgid(domain=USER_EMAIL.partition("@")[2])
        sent["Message-ID"] = message_id
        sent.set_content(draft.get_content())
        with self.connection() as client:
            client.append("Sent", sent.as_bytes(), flags=("\\Seen",), msg_time=when)
            client.select_folder("Drafts")
            client.delete_messages([uid])
            client.expunge()
        return message_id


# -- the mailbox ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedMail:
    """A mail as it arrives: `days_before` the demo's first cycle, at the time of day `at`."""

    sender: str
    subject: str
    body: str
    days_before: int
    at: time
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def sender_name(self) -> str:
        return parseaddr(self.sender)[0]

    @property
    def sender_email(self) -> str:
        return parseaddr(self.sender)[1]

    def arrival(self, first_cycle: datetime) -> datetime:
        day = first_cycle - timedelta(days=self.days_before)
        return day.replace(hour=self.at.hour, minute=self.at.minute, second=0, microsecond=0)

    def compose(
        self, when: datetime, in_reply_to: str = "", references: str = ""
    ) -> tuple[bytes, str]:
        """The mail as the server stores it, and its Message-ID."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = f"{USER_NAME} <{USER_EMAIL}>"
        message["Subject"] = self.subject
        message["Date"] = format_datetime(when)
        # An explicit domain: make_msgid would otherwise ask DNS for this host's name.
        message_id = make_msgid(domain=self.sender_email.partition("@")[2])
        message["Message-ID"] = message_id
        if in_reply_to:
            message["In-Reply-To"] = in_reply_to
            message["References"] = references or in_reply_to
        for name, value in self.headers:
            message[name] = value
        message.set_content(self.body)
        return message.as_bytes(), message_id


RECRUITER_SCHEDULING = SeedMail(
    "Mara Lindqvist <mara.lindqvist@quillfinch.com>",
    "Quillfinch: interview for the Backend Engineer role",
    "Hi Jordan,\n\nThanks for your application for the Backend Engineer role at Quillfinch. I'd "
    "like to invite you to a technical interview with two engineers from our payments team: "
    "about an hour, over video.\n\nWould Tuesday or Thursday afternoon next week suit you? Send "
    "me a couple of slots and I'll set it up.\n\nBest regards,\nMara Lindqvist\nTechnical "
    "Recruiter, Quillfinch\n",
    15,
    time(14, 10),
)
PERSONAL = SeedMail(
    "Sam Okafor <sam.okafor@fastmail.com>",
    "Climbing on Saturday?",
    "Hey Jordan,\n\nA few of us are going to the bouldering gym on Saturday around ten. Want to "
    "come? We're thinking of brunch at the place by the canal afterwards.\n\nSam\n",
    12,
    time(19, 42),
)
NEWSLETTER = SeedMail(
    "The Pipeline Weekly <hello@pipelineweekly.news>",
    "Issue 112: streaming joins, dbt tips, and 40 new remote roles",
    "This week in data engineering:\n\n* Streaming joins without tears: watermarks explained\n"
    "* Five dbt habits that keep a project readable\n* Interview: running Postgres at 50 TB\n\n"
    "Plus 40 new remote data roles, from junior analyst to staff engineer, on our job board.\n\n"
    "You are receiving this because you subscribed at pipelineweekly.news.\n"
    "Unsubscribe: https://pipelineweekly.news/unsubscribe\n",
    10,
    time(7, 0),
    (
        ("List-Unsubscribe", "<https://pipelineweekly.news/unsubscribe>"),
        ("Precedence", "bulk"),
    ),
)
ACKNOWLEDGEMENT = SeedMail(
    "Corvid Analytics Careers <no-reply@hire.lever.co>",
    "We received your application for Data Platform Engineer",
    "Hi Jordan,\n\nThank you for applying for the Data Platform Engineer role at Corvid "
    "Analytics. Your application has reached our team and we will read it carefully.\n\nWe "
    "receive a great many applications, and unfortunately we cannot reply to everyone "
    "individually. If your experience is a good match, someone from our team will be in touch "
    "within three weeks.\n\nThe Corvid Analytics Talent Team\n",
    9,
    time(11, 25),
)
CLOSED_POSITION = SeedMail(
    "Fernhill Bank Talent Acquisition <careers@fernhillbank.com>",
    "Update on the Data Engineer vacancy",
    "Dear Jordan,\n\nThank you for your interest in the Data Engineer vacancy at Fernhill Bank. "
    "We are writing to let you know that the vacancy has been withdrawn after an internal "
    "reorganisation, and we will not be recruiting for this position. This is not a reflection "
    "on your application.\n\nNew roles are posted on our careers site as they open.\n\n"
    "Fernhill Bank Talent Acquisition\n",
    4,
    time(15, 3),
)
INTERVIEW_REJECTION = SeedMail(
    "Daniel Osei <daniel.osei@tidewaterrobotics.com>",
    "Platform Engineer interviews: next steps",
    "Hi Jordan,\n\nThank you for spending so much time with us over the last few weeks, "
    "including the on-site day with the platform team. Everyone appreciated the thought you "
    "put into the system design exercise.\n\nIt was a close call, but we have decided to offer "
    "the Platform Engineer position to another candidate whose background fits our robotics "
    "fleet work more closely right now.\n\nI'm sorry this isn't better news. Thank you again "
    "for your interest in Tidewater Robotics.\n\nKind regards,\nDaniel Osei\nSenior Recruiter, "
    "Tidewater Robotics\n",
    2,
    time(16, 48),
)
APPLICATION_REJECTION = SeedMail(
    "Ines Carvalho <ines.carvalho@lumenhive.com>",
    "Your application for Analytics Engineer at Lumenhive",
    "Dear Jordan,\n\nThank you for applying for the Analytics Engineer role at Lumenhive and "
    "for your interest in joining us.\n\nWe have reviewed your application carefully. We had "
    "many strong applicants for this role, and we have decided not to take your application "
    "further.\n\nWe wish you every success with your search.\n\nBest wishes,\nInes Carvalho\n"
    "Lumenhive\n",
    1,
    time(10, 12),
)
ATS_REJECTION = SeedMail(
    "Quillfinch <no-reply@us.greenhouse-mail.io>",
    "Your application to Quillfinch",
    "Hi Jordan,\n\nThank you for interviewing with us for the Backend Engineer position at "
    "Quillfinch, and for the time you spent with the team during the technical interview. "
    "After discussing it with the interviewers, we have decided not to move forward with your "
    "candidacy.\n\nWe appreciate the effort you put into the process and wish you the best in "
    "your job search.\n\nThe Quillfinch Recruiting Team\n",
    1,
    time(17, 36),
)
# In the order they arrived, which is the order of their UIDs.
INBOX = (
    RECRUITER_SCHEDULING,
    PERSONAL,
    NEWSLETTER,
    ACKNOWLEDGEMENT,
    CLOSED_POSITION,
    INTERVIEW_REJECTION,
    APPLICATION_REJECTION,
    ATS_REJECTION,
)

# The recruiter's answer to the feedback request about ATS_REJECTION; the demo dates it.
RECRUITER_REPLY = SeedMail(
    RECRUITER_SCHEDULING.sender,
    f"Re: {ATS_REJECTION.subject}",
    "Hi Jordan,\n\nOf course, happy to pass on what the panel said. They liked your API design "
    "and the way you talked through trade-offs. Where they wanted more was the concurrency "
    "part: the idempotency question in the payments exercise took a while to get to. A couple "
    "of practice problems like that and you'll be in good shape.\n\nDon't be a stranger: we "
    "will have more backend roles next quarter.\n\nMara\n",
    0,
    time(11, 0),
)
