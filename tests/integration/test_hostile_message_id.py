"""Message-IDs a hostile (or just unusual) rejection may carry, in the IMAP searches that
recover a draft whose APPEND was never confirmed. imapclient encodes search values as
US-ASCII and quotes only a space, a quote or a backslash: `<rejet-é@...>` could not be sent
and `<a)b@...>` got BAD from the server. The error left write_drafts, so every cycle from
then on failed, and no application got a draft again (found in review, session 13).

Scenario with real parts: the process dies right after the APPEND (the project's own
NEXTROUND_FAULT_KILL_AT=after-append, as a power cut would), the user deletes the draft,
and an ordinary rejection arrives later: it is drafted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from dovecot import MailUser
from support import ConfigWriter

from nextround.daemon.config import load_config
from nextround.daemon.session import open_session

NOW = datetime.now(UTC)
CLI = (sys.executable, "-m", "nextround.daemon.cli")


def rejection(message_id: bytes, sender: bytes, company: bytes) -> bytes:
    return (
        b"From: Jane Roe <" + sender + b">\r\n"
        b"To: Alex Doe <alex@example.org>\r\n"
        b"Subject: Your application\r\n"
        b"Date: " + format_datetime(NOW - timedelta(hours=1)).encode() + b"\r\n"
        b"Message-ID: " + message_id + b"\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Dear Alex,\r\n\r\nThank you for taking the time to interview for the Backend "
        b"Engineer position at " + company + b". After careful consideration we have decided "
        b"to move forward with another candidate. We wish you the best in your search.\r\n\r\n"
        b"Jane Roe\r\nTalent Acquisition, " + company + b"\r\n"
    )


def once(config: Path, minutes: int, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "-c", str(config), "once", "--now", (NOW + timedelta(minutes=minutes)).isoformat()],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize(
    "message_id", ["<rejet-\u00e9@acme.example>", "<a)b@acme.example>"], ids=["non-ascii", "paren"]
)
def test_a_hostile_message_id_does_not_stop_drafting_for_good(
    mailbox_user: MailUser, write_config: ConfigWriter, message_id: str
) -> None:
    config = write_config(mailbox_user)
    hostile = rejection(message_id.encode(), b"jane@acme.example", b"Acme")
    mailbox_user.append("INBOX", hostile)

    crashed = once(config, 5, NEXTROUND_FAULT_KILL_AT="after-append")
    assert crashed.returncode == -9, crashed.stderr  # killed right after the APPEND
    assert len(mailbox_user.uids("Drafts")) == 1

    # The user deletes that draft (or their client re-saves it without our header).
    with mailbox_user.client() as client:
        client.select_folder("Drafts")
        client.delete_messages(client.search(["ALL"]))
        client.expunge()

    # Later an ordinary rejection arrives from another company.
    ordinary = rejection(
        b"<plain-1@brightloom.example>", b"priya@brightloom.example", b"Brightloom"
    )
    mailbox_user.append("INBOX", ordinary)

    results = [once(config, 10), once(config, 15)]
    for result in results:
        assert result.returncode == 0, result.stderr.strip()[-600:]
    drafts = mailbox_user.fetch_raw("Drafts")
    assert any(b"priya@brightloom.example" in raw for raw in drafts.values()), (
        "the later, ordinary rejection was never drafted"
    )


def test_a_header_search_finds_values_imap_would_read_as_syntax(
    mailbox_user: MailUser, write_config: ConfigWriter
) -> None:
    """Each value is found in the one message whose In-Reply-To holds it, and nowhere else."""
    values = [
        "<a)b(c@x.example>",
        "<a{3}b@x.example>",
        '<a"b\\c@x.example>',
        "<rejet-\u00e9@x.example>",
    ]
    for value in values:
        mailbox_user.append(
            "INBOX",
            b"From: a@x.example\r\nSubject: s\r\nIn-Reply-To: "
            + value.encode()
            + b"\r\n\r\nbody\r\n",
        )
    session = open_session(load_config(write_config(mailbox_user)))
    try:
        found = {
            value: list(session.mailbox.search_header("INBOX", "In-Reply-To", value))
            for value in [*values, "<line\r\nbreak@x.example>"]
        }
    finally:
        session.close()
    uids = mailbox_user.uids("INBOX")
    assert found == {
        **dict(zip(values, ([uid] for uid in uids), strict=True)),
        "<line\r\nbreak@x.example>": [],
    }
