"""What hostile mail and careless configuration must never do: add a recipient or a header
line to a draft, echo or leak the password, leave our directories open (found by review
in session 9)."""

from __future__ import annotations

import base64
import email
import email.policy
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, getaddresses
from pathlib import Path

import pytest
from dovecot import Dovecot, MailUser
from support import ConfigWriter, run_cli

from nextround.classifier.extract import choose_reply_to
from nextround.classifier.message import Address
from nextround.classifier.persist import private_directory
from nextround.daemon.drafts import DraftSpec, build_draft
from nextround.daemon.parse import parse_message, parse_quick

DEBUG_CLI = (sys.executable, "-m", "nextround.daemon.cli", "--log-level", "debug")
NOW = datetime.now(UTC)
BODY = (
    b"Dear Alex,\r\n\r\nThank you for taking the time to interview for the Backend Engineer "
    b"position at Acme. After careful consideration we have decided to move forward with "
    b"another candidate. We wish you the best in your search.\r\n\r\nJane Recruiter\r\n"
    b"Talent Acquisition, Acme\r\n"
)


def q_word(text: str) -> bytes:
    encoded = "".join(
        "_" if b == 0x20 else chr(b) if chr(b).isascii() and chr(b).isalnum() else f"={b:02X}"
        for b in text.encode()
    )
    return f"=?utf-8?q?{encoded}?=".encode()


def b_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


# An encoded-word (B) that decodes to another encoded-word (Q) that decodes to CRLF + headers.
# Neither has white space, so the whole thing is one `<...>` token after the first decoding.
NESTED = b_word(q_word("\r\nBcc: victim@evil.example\r\nX-Junk: ").decode())
HOSTILE_ID = f"<x{NESTED}@acme.example>"


def rejection(message_id: str, sender: bytes, reply_to: bytes | None = None) -> bytes:
    lines = [
        b"From: " + sender,
        b"To: Alex Doe <alex@example.org>",
        b"Subject: Your application",
        b"Date: " + format_datetime(NOW - timedelta(hours=1)).encode(),
        b"Message-ID: " + message_id.encode(),
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=utf-8",
    ]
    if reply_to is not None:
        lines.append(b"Reply-To: " + reply_to)
    return b"\r\n".join(lines) + b"\r\n\r\n" + BODY


def draft_for(raw: bytes) -> bytes:
    """The request draft as the engine builds it (contact as Engine._contact picks it)."""
    message = parse_message(raw)
    chosen = choose_reply_to(message)
    contact = next(
        (a for a in (*message.reply_to, message.from_) if a and a.email == chosen),
        Address("", chosen) if chosen else None,
    )
    spec = DraftSpec(
        1, "request", Address("Alex Doe", "alex@example.org"), contact, "Re: Your application",
        message.message_id, message.references, {},
    )  # fmt: skip
    return build_draft(spec, "body\n", NOW)[0]


def header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def recipients(raw: bytes) -> list[str]:
    draft = email.message_from_bytes(raw, policy=email.policy.compat32)
    return [addr for _, addr in getaddresses(draft.get_all("To") or [])]


def once(config: Path) -> None:
    result = run_cli("-c", str(config), "once", "--now", (NOW + timedelta(minutes=5)).isoformat())
    assert result.code == 0, result.err


# -- a Message-ID never adds a header line to a draft (In-Reply-To / References) ------------


def test_a_nested_encoded_word_in_a_message_id_never_becomes_a_header_line() -> None:
    raw = rejection(HOSTILE_ID, b"Jane Recruiter <jane@acme.example>")
    quick = parse_quick(raw)
    assert quick is not None and quick.message_id == parse_message(raw).message_id
    lines = header_lines(draft_for(raw))
    injected = [line for line in lines if line.lower().startswith((b"bcc:", b"x-junk:"))]
    assert not injected, lines


def test_a_message_id_with_nested_encoded_words_adds_no_header_to_the_saved_draft(
    mailbox_user: MailUser, write_config: ConfigWriter
) -> None:
    config = write_config(mailbox_user)
    mailbox_user.append("INBOX", rejection(HOSTILE_ID, b"Jane Recruiter <jane@acme.example>"))
    once(config)
    drafts = mailbox_user.fetch_raw("Drafts")
    assert drafts, "no draft was written"
    for raw in drafts.values():
        lines = header_lines(raw)
        assert not [line for line in lines if line.lower().startswith(b"bcc:")], lines


# -- one recipient, at the domain the mail names -----------------------------------------


def test_a_quoted_local_part_with_a_comma_gives_no_second_recipient() -> None:
    raw = rejection(
        "<q1@acme.example>",
        b"Acme Careers <careers@acme.example>",
        reply_to=b'"victim@evil.example,jane"@acme.example',
    )
    assert len(recipients(draft_for(raw))) <= 1, header_lines(draft_for(raw))


def test_an_encoded_word_in_a_local_part_gives_no_recipient_elsewhere() -> None:
    raw = rejection("<q2@acme.example>", b"jane" + q_word("@evil.example,x") + b"@acme.example")
    found = recipients(draft_for(raw))
    assert len(found) <= 1 and all(r.endswith("@acme.example") for r in found), found


def test_the_saved_draft_is_never_addressed_to_another_domain(
    mailbox_user: MailUser, write_config: ConfigWriter
) -> None:
    config = write_config(mailbox_user)
    mailbox_user.append(
        "INBOX",
        rejection(
            "<q3@acme.example>",
            b"Acme Careers <careers@acme.example>",
            reply_to=b'"victim@evil.example,jane"@acme.example',
        ),
    )
    once(config)
    drafts = mailbox_user.fetch_raw("Drafts")
    assert drafts, "no draft was written"
    for raw in drafts.values():
        found = recipients(raw)
        assert len(found) <= 1 and not any("evil" in r for r in found), header_lines(raw)


# -- a non-ASCII password: no traceback, nothing of it shown ----------------------------

NON_ASCII_PASSWORD = "Zürich-Geheim-42-never-print-me"


def test_a_non_ascii_password_is_neither_disclosed_nor_a_crash(
    dovecot: Dovecot, write_config: ConfigWriter
) -> None:
    user = dovecot.add_user("review-nonascii@example.org", NON_ASCII_PASSWORD)
    config = write_config(user)
    done = subprocess.run(
        [*DEBUG_CLI, "-c", str(config), "check-config"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output[-1500:]
    assert "\\xfc" not in output and "ü" not in output, output[-1500:]


# -- a password pasted where a command belongs is not echoed -----------------------------


def test_a_password_pasted_as_password_command_is_not_echoed(
    mailbox_user: MailUser, write_config: ConfigWriter
) -> None:
    config = write_config(mailbox_user, password_file="")
    text = config.read_text().replace(
        'password_file = ""', f'password_command = "{mailbox_user.password}"'
    )
    config.write_text(text)
    result = run_cli("-c", str(config), "check-config")
    assert result.code == 1
    assert mailbox_user.password not in result.out + result.err, result.err


# -- our directories: made 0700, parents too; ones others may write in named in a warning --


def test_an_existing_state_directory_others_may_write_in_is_named_in_a_warning(
    mailbox_user: MailUser, write_config: ConfigWriter, tmp_path: Path
) -> None:
    """A directory that exists already may hold more than ours (the database may be put in
    a home directory): it is not changed, but the user is told, with the command to run."""
    config = write_config(mailbox_user)
    state = tmp_path / "state"
    state.chmod(0o775)
    result = run_cli("-c", str(config), "once", "--now", (NOW + timedelta(minutes=5)).isoformat())
    assert result.code == 0, result.err
    assert f"{state} is writable by other users (mode 775); run: chmod go-w {state}" in result.err


@pytest.mark.parametrize(("mode", "warned"), [(0o757, True), (0o755, False)])
def test_init_into_an_existing_config_directory_warns_if_others_may_write_in_it(
    tmp_path: Path, mode: int, warned: bool
) -> None:
    """0755 is what docs/install.md makes /etc/nextround: readable, as the service's dynamic
    user must read the config; our files in it are 0600 all the same."""
    directory = tmp_path / "cfg" / "nextround"
    directory.mkdir(parents=True)
    directory.chmod(mode)
    result = run_cli(
        "-c", str(directory / "config.toml"), "init", "--host", "imap.example.org",
        "--username", "me@example.org", "--name", "Alex Doe",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert stat.S_IMODE((directory / "config.toml").stat().st_mode) == 0o600
    assert (f"{directory} is writable by other users" in result.err) is warned, result.err


def test_an_existing_directory_of_another_user_is_named_in_a_warning_but_not_to_root(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0755, but its owner may replace or add files in it. Root is not warned: it runs
    `status` on the service's dynamic user's directory (docs/install.md)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory away")
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o755)
    os.chown(directory, 65534, 65534)
    with caplog.at_level(logging.WARNING):
        private_directory(directory)
    assert "belongs to another user" not in caplog.text
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # as an ordinary user would run it
    with caplog.at_level(logging.WARNING):
        private_directory(directory)
    assert f"{directory} belongs to another user (uid 65534)" in caplog.text


def test_init_with_umask_0_creates_no_world_writable_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    env.pop("NEXTROUND_CONFIG", None)
    env.pop("CONFIGURATION_DIRECTORY", None)
    code = (
        "import os, sys; os.umask(0); from nextround.daemon.cli import main; "
        "sys.exit(main(['init', '--host', 'imap.example.org', '--username', "
        "'me@example.org', '--name', 'Alex Doe']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    config = home / ".config" / "nextround" / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    created = home / ".config"
    mode = stat.S_IMODE(created.stat().st_mode)
    assert mode & 0o022 == 0, f"{created} created world-writable ({mode:o})"


def test_a_non_ascii_password_logs_in_and_the_daemon_stops_on_sigterm(
    dovecot: Dovecot, write_config: ConfigWriter, tmp_path: Path
) -> None:
    """`run` with a password LOGIN cannot carry: it logs in with AUTHENTICATE PLAIN; nothing
    of the password is logged, and SIGTERM stops it (an error that once escaped the cycle
    left it deadlocked in the scheduler's shutdown)."""
    user = dovecot.add_user("review-nonascii-run@example.org", NON_ASCII_PASSWORD)
    config = write_config(user)
    log = tmp_path / "run.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*DEBUG_CLI, "-c", str(config), "run"], stdout=output, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while "failed" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
            code = None
    text = log.read_text()
    assert "\\xfc" not in text and "\u00fc" not in text and "ü" not in text, text[-2500:]
    assert code is not None, "the daemon did not stop on SIGTERM"


# -- the thank-you goes to the replier's address, never to one in a display name ---------


def test_the_thank_you_never_goes_to_an_address_in_the_repliers_display_name(
    mailbox_user: MailUser, write_config: ConfigWriter
) -> None:
    from mailclient import MailClient, SmtpServer
    from support import INTERVIEW_REJECTION

    config = write_config(mailbox_user)
    smtp = SmtpServer().start()
    try:
        client = MailClient(mailbox_user, smtp)
        t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
        sender, subject, body = INTERVIEW_REJECTION
        rejection_id = "<rej-review@brightloom.io>"
        raw = (
            f"From: {sender}\r\nTo: Alex Doe <{mailbox_user.username}>\r\nSubject: {subject}\r\n"
            f"Date: {format_datetime(t0)}\r\nMessage-ID: {rejection_id}\r\n\r\n"
            + body.replace("\n", "\r\n")
        ).encode()
        client.deliver(raw, t0)
        assert (
            run_cli(
                "-c", str(config), "once", "--now", (t0 + timedelta(minutes=5)).isoformat()
            ).code
            == 0
        )
        [(uid, _)] = client.drafts().items()
        sent_id = client.send_draft(uid, t0 + timedelta(hours=3))
        assert (
            run_cli("-c", str(config), "once", "--now", (t0 + timedelta(hours=4)).isoformat()).code
            == 0
        )
        reply_at = t0 + timedelta(days=2)
        # The reply comes from priya.raman@brightloom.io; the comment is only her display name.
        reply = (
            f"From: priya.raman@brightloom.io (eve@evil.example)\r\n"
            f"To: Alex Doe <{mailbox_user.username}>\r\nSubject: Re: {subject}\r\n"
            f"Date: {format_datetime(reply_at)}\r\nMessage-ID: <reply-review@brightloom.io>\r\n"
            f"In-Reply-To: {sent_id}\r\nReferences: {rejection_id} {sent_id}\r\n\r\n"
            "Hi Alex,\r\n\r\nHappy to share a few thoughts: the panel wanted more depth on "
            "streaming systems.\r\n\r\nPriya\r\n"
        ).encode()
        client.deliver(reply, reply_at)
        result = run_cli(
            "-c", str(config), "once", "--now", (reply_at + timedelta(minutes=5)).isoformat()
        )
        assert result.code == 0, result.err
        drafts = list(client.drafts().values())
        thanks = [d for d in drafts if str(d["X-Nextround-Application"]).endswith("step=thank_you")]
        assert thanks, [str(d["X-Nextround-Application"]) for d in drafts]
        to = [address.addr_spec for address in thanks[0]["To"].addresses]
        assert to == ["priya.raman@brightloom.io"], to
    finally:
        smtp.stop()
