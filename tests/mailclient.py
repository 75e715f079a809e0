"""A person's mail client, simulated over real IMAP and SMTP.

It does what Thunderbird or Gmail does when the user sends a draft: takes the draft, sends
it through an SMTP server under a NEW Message-ID (keeping In-Reply-To and References, and,
like Gmail, dropping headers it does not know), stores the sent copy in Sent, and deletes the
draft. It also lets the recruiter's side deliver mail into INBOX.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import socket
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from dovecot import MailUser


@dataclass
class SmtpSink:
    """A local SMTP server (aiosmtpd) that keeps what it receives."""

    received: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 OK"


class SmtpServer:
    def __init__(self) -> None:
        self.sink = SmtpSink()
        with socket.socket() as probe:  # aiosmtpd needs a concrete port to check it started
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=port)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def stop(self) -> None:
        self.controller.stop()


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


class MailClient:
    def __init__(self, user: MailUser, smtp: SmtpServer) -> None:
        self.user = user
        self.smtp = smtp

    def drafts(self) -> dict[int, EmailMessage]:
        return {uid: parse(raw) for uid, raw in self.user.fetch_raw("Drafts").items()}

    def inbox(self) -> dict[int, EmailMessage]:
        return {uid: parse(raw) for uid, raw in self.user.fetch_raw("INBOX").items()}

    def sent(self) -> dict[int, EmailMessage]:
        return {uid: parse(raw) for uid, raw in self.user.fetch_raw("Sent").items()}

    def send_draft(
        self,
        uid: int,
        when: datetime,
        to: str | None = None,
        keep_unknown_headers: bool = False,
        *,
        keep_message_id: bool = False,
        sent_copy: bool = True,
        subject: str | None = None,
    ) -> str:
        """Send the draft as the user would; return the sent copy's Message-ID: a new one, or
        the draft's (`keep_message_id`, as Thunderbird and Apple Mail do). Without
        `sent_copy`, the client keeps no copy in Sent. `to` and `subject`: as the user
        changed them."""
        draft = self.drafts()[uid]
        sent = EmailMessage()
        for name in ("From", "To", "Subject", "In-Reply-To", "References"):
            if draft[name] is not None:
                sent[name] = str(draft[name])
        for name, value in (("To", to), ("Subject", subject)):
            if value is not None:
                del sent[name]
                sent[name] = value
        if keep_unknown_headers:
            for name, value in draft.items():
                if name.lower().startswith("x-"):
                    sent[name] = value
        body = draft.get_content()
        sent["Date"] = format_datetime(when)
        message_id = make_msgid(domain="client.example.org")
        if keep_message_id:
            message_id = str(draft["Message-ID"])
        sent["Message-ID"] = message_id
        sent.set_content(body)
        recipients = [address.addr_spec for address in sent["To"].addresses]
        with smtplib.SMTP("127.0.0.1", self.smtp.port, timeout=10) as connection:
            connection.send_message(sent, to_addrs=recipients)
        if sent_copy:
            self.user.append("Sent", sent.as_bytes(), flags=["\\Seen"], date=when)
        self.delete_draft(uid)
        return message_id

    def delete_draft(self, uid: int) -> None:
        with self.user.client() as client:
            client.select_folder("Drafts")
            client.delete_messages([uid])
            client.expunge()

    def deliver(self, raw: bytes, when: datetime | None = None) -> int:
        return self.user.append("INBOX", raw, date=when)
