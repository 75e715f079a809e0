"""`check-config` against a real Dovecot: each failure is one clear line and the right exit."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from dovecot import Dovecot, MailUser
from support import ConfigWriter, run_cli


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("security", ["plain", "starttls", "tls"])
def test_check_config_finds_folders(
    dovecot: Dovecot, mailbox_user: MailUser, write_config: ConfigWriter, security: str
) -> None:
    port = dovecot.port_tls if security == "tls" else dovecot.port_plain
    path = write_config(
        mailbox_user,
        security=security,
        port=port,
        host="localhost",
        ca_file=str(dovecot.ca_file),
    )
    result = run_cli("-c", str(path), "check-config")
    assert result.code == 0, result.err
    assert f"localhost:{port} ({security})" in result.out
    assert "inbox        INBOX (config; 0 messages)" in result.out
    assert "drafts       Drafts (special-use;" in result.out
    assert "sent         Sent (special-use;" in result.out
    assert mailbox_user.password not in result.out + result.err


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_self_signed_certificate_refused_without_ca_file(
    dovecot: Dovecot, mailbox_user: MailUser, write_config: ConfigWriter, security: str
) -> None:
    port = dovecot.port_tls if security == "tls" else dovecot.port_plain
    path = write_config(mailbox_user, security=security, port=port, host="localhost")
    result = run_cli("-c", str(path), "check-config")
    assert result.code == 1
    last = result.err.strip().splitlines()
    assert len(last) == 1, result.err
    assert "certificate not trusted" in last[0] and "ca_file" in last[0]


def test_starttls_not_offered_is_an_error_not_a_fallback(
    dovecot: Dovecot, mailbox_user: MailUser, write_config: ConfigWriter
) -> None:
    path = write_config(
        mailbox_user,
        security="starttls",
        host=dovecot.host_nostarttls,
        port=dovecot.port_nostarttls,
        ca_file=str(dovecot.ca_file),
    )
    result = run_cli("-c", str(path), "check-config")
    assert result.code == 1
    assert "does not offer STARTTLS" in result.err
    assert "login        ok" not in result.out


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"port": "closed"}, "connection refused"),
        ({"host": "imap.nonexistent.invalid", "security": "tls", "port": 993}, "cannot resolve"),
        ({"password": "wrong"}, "login failed"),
        ({"sent": "Nowhere"}, "[imap] sent = 'Nowhere': no such folder"),
    ],
)
def test_failures_are_one_line_with_exit_1(
    mailbox_user: MailUser,
    write_config: ConfigWriter,
    tmp_path: Path,
    overrides: dict[str, object],
    expected: str,
) -> None:
    settings = dict(overrides)
    if settings.get("port") == "closed":
        settings["port"] = closed_port()
    wrong = settings.pop("password", None)
    path = write_config(mailbox_user, **settings)
    if wrong:
        (tmp_path / f"password-{mailbox_user.username}").write_text(f"{wrong}\n")
    result = run_cli("-c", str(path), "check-config")
    assert result.code == 1, result.out + result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert expected in lines[0]
    assert lines[0].startswith("nextround: ")
    assert "Traceback" not in result.err
    assert mailbox_user.password not in result.out + result.err


def test_config_error_is_exit_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[imap]\nhost = "h"\nusername = "u"\nprot = 1\n')
    completed = subprocess.run(
        [sys.executable, "-m", "nextround.daemon.cli", "-c", str(path), "check-config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        f'nextround: {path}: [imap] prot: unknown key (did you mean "port"?)'
    )


def test_oauth2_logs_in_with_a_token_from_the_command(
    dovecot: Dovecot, write_config: ConfigWriter, tmp_path: Path
) -> None:
    # The fixture's Dovecot offers XOAUTH2 and checks the bearer token against its passdb,
    # so a user whose "password" is the token stands in for an OAuth2 provider.
    token = "ya29.test-access-token"
    user = dovecot.add_user("oauth-user@example.org", token)
    helper = tmp_path / "token-helper"
    helper.write_text(f"#!/bin/sh\necho {token}\n")
    helper.chmod(0o700)
    path = write_config(user, auth="oauth2", oauth2_token_command=str(helper))
    result = run_cli("-c", str(path), "check-config")
    assert result.code == 0, result.err
    assert "password     from oauth2_token_command (XOAUTH2)" in result.out
    assert token not in result.out + result.err

    helper.write_text("#!/bin/sh\necho expired-token\n")
    result = run_cli("-c", str(path), "check-config")
    assert result.code == 1
    assert "XOAUTH2 login failed" in result.err
