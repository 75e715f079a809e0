"""Pytest fixtures for a real Dovecot IMAP server (see ``tests/dovecot.py``).

Fixtures:

``dovecot`` (session scope) -> ``dovecot.Dovecot``
    One running Dovecot for the whole session, closed at the end.  Its
    helpers (``append``, ``uids``, ``client()``, ...) act on the shared
    default user ``dovecot.username``; prefer ``mailbox_user`` for isolation.
    If the ``dovecot`` binary is missing the fixture fails (it does not
    skip) and says to ``apt-get install dovecot-imapd``.

``mailbox_user`` (function scope) -> ``dovecot.MailUser``
    A brand-new user on the session server, so its INBOX, Drafts, Sent,
    Trash and Junk are empty and no other test sees its mail.  Has
    ``username``, ``password``, ``server`` (the ``Dovecot``) and the same
    IMAP helpers as ``Dovecot``.  If an earlier test stopped the server and
    failed before restarting it, this fixture starts it again.

When a test that uses either fixture fails, the tail of the Dovecot log is
added to its report as a "dovecot log" section.
"""

from __future__ import annotations

import itertools
import re
import shutil
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

# The tests directory is not a package; make "import dovecot" work under any
# pytest --import-mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dovecot import Dovecot, DovecotNotInstalledError, MailUser
from support import ConfigWriter

_user_numbers = itertools.count(1)
_SERVER_KEY = pytest.StashKey[Dovecot]()


@pytest.fixture(scope="session")
def dovecot(request: pytest.FixtureRequest) -> Iterator[Dovecot]:
    """A Dovecot IMAP server shared by the whole test session."""
    try:
        server = Dovecot.start()
    except DovecotNotInstalledError as exc:
        missing = str(exc)
    else:
        missing = ""
    if missing:
        # Outside the except block, so the report shows only this message.
        pytest.fail(f"Dovecot is required for these tests: {missing}", pytrace=False)
    request.config.stash[_SERVER_KEY] = server
    try:
        yield server
    finally:
        del request.config.stash[_SERVER_KEY]
        server.close()


@pytest.fixture
def mailbox_user(dovecot: Dovecot, request: pytest.FixtureRequest) -> MailUser:
    """A fresh user with empty folders on the session Dovecot."""
    if not dovecot.running:
        dovecot.launch()
    # The test name in the login makes the Dovecot log easy to follow.
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:48]
    return dovecot.add_user(f"{slug or 'user'}-{next(_user_numbers)}@example.org")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    uses_server = {"dovecot", "mailbox_user"} & set(getattr(item, "fixturenames", ()))
    server = item.config.stash.get(_SERVER_KEY, None)
    if report.failed and uses_server and server is not None:
        report.sections.append(("dovecot log", server.diagnostics()))
    return report


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classifier, trained once per session; tests copy it into their state directory
    (the fingerprint matches, so nextround uses it instead of training again)."""
    from nextround.daemon.config import DEFAULT_THRESHOLD
    from nextround.daemon.training import ModelSettings, get_model

    directory = tmp_path_factory.mktemp("model")
    get_model(ModelSettings(state_dir=directory, threshold=DEFAULT_THRESHOLD))
    return directory


@pytest.fixture
def write_config(tmp_path: Path, dovecot: Dovecot, trained_model: Path) -> ConfigWriter:
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
        state = tmp_path / "state"
        state.mkdir(mode=0o700, exist_ok=True)
        for model_file in trained_model.iterdir():
            shutil.copy2(model_file, state / model_file.name)
        path = tmp_path / "config.toml"
        path.write_text("\n".join(lines), encoding="utf-8")
        path.chmod(0o600)
        return path

    return write
