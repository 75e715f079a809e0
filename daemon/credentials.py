"""Getting the IMAP password at connect time, and only then.

Order: `[imap] password_file`, `[imap] password_command`, systemd's
`$CREDENTIALS_DIRECTORY/imap-password`, `$NEXTROUND_IMAP_PASSWORD`. The value is returned to the
caller that logs in and is never kept, logged, or put into an error message.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path

from nextround.daemon.config import ImapConfig
from nextround.daemon.errors import SecretError

logger = logging.getLogger(__name__)

COMMAND_TIMEOUT = 30.0


def describe_password_source(imap: ImapConfig, environ: Mapping[str, str] | None = None) -> str:
    """Where the password will come from, for `check-config`; never the password itself."""
    env = os.environ if environ is None else environ
    if imap.auth == "oauth2":
        return "oauth2_token_command (XOAUTH2)"
    if imap.password_file:
        return "password_file"  # never its value: a password pasted there would show
    if imap.password_command:
        return "password_command"
    credential = _credential_path(env)
    if credential is not None:
        return f"systemd credential {credential}"
    if env.get("NEXTROUND_IMAP_PASSWORD"):
        return "$NEXTROUND_IMAP_PASSWORD"
    return "none"


def read_secret(imap: ImapConfig, environ: Mapping[str, str] | None = None) -> str:
    """The password, or with `auth = "oauth2"` a fresh access token."""
    if imap.auth == "oauth2":
        return _run_command(imap.oauth2_token_command, "[imap] oauth2_token_command")
    return read_password(imap, environ)


def read_password(imap: ImapConfig, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if imap.password_file:
        return _read_file(Path(imap.password_file), "[imap] password_file")
    if imap.password_command:
        return _run_command(imap.password_command, "[imap] password_command")
    credential = _credential_path(env)
    if credential is not None:
        return _read_file(credential, "systemd credential imap-password")
    if env.get("NEXTROUND_IMAP_PASSWORD"):
        return env["NEXTROUND_IMAP_PASSWORD"]
    raise SecretError(
        "no IMAP password: set [imap] password_file or password_command, "
        "or $NEXTROUND_IMAP_PASSWORD"
    )


def warn_if_exposed(path: Path, what: str) -> bool:
    """Log a warning when a file holding a secret is readable by group or others."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "%s %s is readable by other users (mode %o); run: chmod 600 %s",
            what,
            path,
            stat.S_IMODE(mode),
            path,
        )
        return True
    return False


def _credential_path(env: Mapping[str, str]) -> Path | None:
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    candidate = Path(directory) / "imap-password"
    return candidate if candidate.is_file() else None


def _read_file(path: Path, what: str) -> str:
    warn_if_exposed(path, what)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretError(f"{what}: the file it names does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8"
        raise SecretError(f"{what}: cannot read the file it names: {reason}") from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise SecretError(f"{what}: the file it names is empty")
    return password


def _run_command(command: str, key: str) -> str:
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise SecretError(f"{key}: cannot split: {error}") from None
    if not argv:
        raise SecretError(f"{key}: empty command")
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise SecretError(f"{key}: its first word names no program found") from None
    except subprocess.TimeoutExpired:
        raise SecretError(f"{key}: no answer within {COMMAND_TIMEOUT:.0f} s") from None
    except OSError as error:
        raise SecretError(f"{key}: cannot run it: {error.strerror}") from None
    # Neither stdout nor stderr goes into the message: either may hold the secret.
    if result.returncode != 0:
        raise SecretError(f"{key}: exited with status {result.returncode}")
    lines = result.stdout.decode("utf-8", errors="replace").splitlines()
    if not lines or not lines[0]:
        raise SecretError(f"{key}: printed nothing")
    return lines[0]
