"""Application fixtures for integration tests: a config file pointing at the Dovecot fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from dovecot import Dovecot, MailUser

from support import ConfigWriter



@pytest.fixture
def write_config(tmp_path: Path, dovecot: Dovecot) -> ConfigWriter:
    """Write a config for `user` and return its path; keyword arguments override [imap] keys."""

    def write(user: MailUser, *, extra: str = "", **imap: object) -> Path:
        password_file = tmp_path / f"password-{user.username}"
        password_file.write_text(user.password + "\n")
        password_file.chmod(0o600)
        settings: dict[str, object] = {
            "host": dovecot.host,
            "port": dovecot.port_plain,
            "security": "plain",
            "username": user.username,
            "password_file": str(password_file),
            "timeout": 10.0,
        }
        settings.update(imap)
        lines = ["[imap]"]
        for key, value in settings.items():
            lines.append(f"{key} = {value!r}".replace("'", '"'))
        lines += [
            "",
            "[identity]",
            'name = "Alex Doe"',
            f'email = "{user.username}"',
            "",
            "[state]",
            f'database = "{tmp_path / "state" / "state.db"}"',
            "",
            extra,
        ]
        path = tmp_path / "config.toml"
        path.write_text("\n".join(lines), encoding="utf-8")
        path.chmod(0o600)
        return path

    return write
