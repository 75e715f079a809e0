"""The password never shows: not in any command's output at any log level, not in a file
under the state directory; and nextround itself never talks SMTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dovecot import Dovecot
from mailclient import SmtpServer
from support import ConfigWriter

DEBUG_CLI = (sys.executable, "-m", "nextround.daemon.cli", "--log-level", "debug")
PASSWORD = "S3cret-Pa55-XYZZY-never-print-me"
NOW = datetime.now(UTC)

REJECTION = (
    b"From: Ana Duarte <ana.duarte@meridianlabs.example>\r\n"
    b"To: alex@example.org\r\n"
    b"Subject: Your application for QA Engineer\r\n"
    b"Message-ID: <secret-test-rejection@meridianlabs.example>\r\n"
    b"Date: " + NOW.strftime("%a, %d %b %Y %H:%M:%S +0000").encode() + b"\r\n\r\n"
    b"Hi Alex,\r\n\r\nThank you for interviewing with us for the QA Engineer role at Meridian "
    b"Labs. After careful consideration we have decided to move forward with another "
    b"candidate.\r\n\r\nBest,\r\nAna\r\n"
)


def nextround(config: Path, *argv: str) -> str:
    completed = subprocess.run(
        [*DEBUG_CLI, "-c", str(config), *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    return completed.stdout + completed.stderr


def test_the_password_appears_nowhere(
    dovecot: Dovecot, write_config: ConfigWriter, tmp_path: Path
) -> None:
    user = dovecot.add_user("secret-user@example.org", PASSWORD)
    smtp = SmtpServer().start()
    try:
        config = write_config(user)
        user.append("INBOX", REJECTION)
        eml = tmp_path / "mail.eml"
        eml.write_bytes(REJECTION)
        later = (NOW + timedelta(minutes=5)).isoformat()
        outputs = [
            nextround(config, "check-config"),
            nextround(config, "once", "--dry-run", "--now", later),
            nextround(config, "once", "--now", later),
            nextround(config, "status"),
            nextround(config, "status", "--json"),
            nextround(config, "status", "--folders"),
            nextround(config, "classify", "--json", "--explain", str(eml)),
            nextround(config, "label", "<secret-test-rejection@meridianlabs.example>", "rejection"),
            nextround(config, "train"),
            nextround(config, "skip", "1"),
            nextround(config, "close", "1"),
        ]
        # The daemon, briefly, at debug level.
        log = tmp_path / "run.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [*DEBUG_CLI, "-c", str(config), "run"],
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ},
            )
            deadline = time.monotonic() + 120
            while "ready:" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        outputs.append(log.read_text())

        assert "ready:" in outputs[-1]
        assert "login        ok" in outputs[0], outputs[0]
        for printed in outputs:
            assert PASSWORD not in printed
        state = tmp_path / "state"
        files = [path for path in state.rglob("*") if path.is_file()]
        assert any(path.name == "state.db" for path in files)
        for path in files:
            assert PASSWORD.encode() not in path.read_bytes(), path
            assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
        for directory in [state, *(path for path in state.rglob("*") if path.is_dir())]:
            assert directory.stat().st_mode & 0o077 == 0, f"{directory} is open to others"
        # nextround wrote drafts but sent nothing: the SMTP server on this machine saw nothing.
        assert smtp.sink.received == []
        assert user.uids("Drafts")
    finally:
        smtp.stop()


def test_nextround_has_no_way_to_send_mail() -> None:
    import nextround.classifier
    import nextround.daemon

    for package in (nextround.daemon, nextround.classifier):
        for source in Path(package.__path__[0]).rglob("*.py"):
            text = source.read_text()
            assert "smtplib" not in text and "SMTP(" not in text, source
