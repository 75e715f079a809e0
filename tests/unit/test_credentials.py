"""The password comes from one place, at connect time, and never shows in an error."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from nextround.daemon.config import ImapConfig
from nextround.daemon.credentials import describe_password_source, read_password
from nextround.daemon.errors import SecretError

SECRET = "correct horse battery staple"


def imap(**overrides: str) -> ImapConfig:
    return ImapConfig(host="h", username="u", **overrides)  # type: ignore[arg-type]


def test_password_file_first_line(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text(f"{SECRET}\nignored\n")
    path.chmod(0o600)
    assert read_password(imap(password_file=str(path)), {}) == SECRET


def test_exposed_password_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "pw"
    path.write_text(SECRET)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert read_password(imap(password_file=str(path)), {}) == SECRET
    assert "readable by other users" in caplog.text
    assert SECRET not in caplog.text


def test_password_command(tmp_path: Path) -> None:
    command = f"{sys.executable} -c 'print(\"{SECRET}\")'"
    assert read_password(imap(password_command=command), {}) == SECRET


def test_failing_command_does_not_leak_its_output() -> None:
    command = f"{sys.executable} -c 'import sys; print(\"{SECRET}\"); sys.exit(3)'"
    with pytest.raises(SecretError) as caught:
        read_password(imap(password_command=command), {})
    assert "status 3" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_credentials_directory_then_environment(tmp_path: Path) -> None:
    (tmp_path / "imap-password").write_text(SECRET)
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "NEXTROUND_IMAP_PASSWORD": "other"}
    assert read_password(imap(), env) == SECRET
    assert describe_password_source(imap(), env).startswith("systemd credential")
    assert read_password(imap(), {"NEXTROUND_IMAP_PASSWORD": "other"}) == "other"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "no IMAP password"),
        ({"password_file": "/nonexistent/pw"}, "the file it names does not exist"),
        ({"password_command": "/nonexistent/helper"}, "names no program found"),
        ({"password_command": "'unbalanced"}, "cannot split"),
    ],
)
def test_missing_password_is_a_clear_error(config: dict[str, str], message: str) -> None:
    with pytest.raises(SecretError, match=message):
        read_password(imap(**config), {})
