"""A real Dovecot IMAP server for tests and benchmarks.

This module has no pytest dependency: benchmark scripts can use it after
``sys.path.insert(0, "<repo>/tests")``.  The pytest fixtures are in
``tests/conftest.py``.

Usage::

    with Dovecot.start() as server:  # or: server = Dovecot.start(); ...; server.close()
        uid = server.append("INBOX", raw_message)
        with server.client() as imap:  # logged-in imapclient.IMAPClient
            imap.select_folder("INBOX")
        server.restart()  # same ports, users and mail; open connections drop

``Dovecot.start(workdir=None, *, ssl=True)`` writes a config, a test CA and
a server certificate into a temp dir, and runs ``dovecot -F -c <conf>`` as a
child process in its own process group.  It returns once the IMAP greeting
can be read on every listener (at most ~20 s, else ``DovecotError`` with the
tail of the Dovecot log).  ``stop()`` ends every Dovecot process and waits.

Listeners, all on loopback:

* ``host``:``port_plain`` (127.0.0.1) -- IMAP that offers STARTTLS; LOGIN
  also works without it (``disable_plaintext_auth = no``).
* ``host``:``port_tls`` (127.0.0.1) -- implicit TLS (imaps).
* ``host_nostarttls``:``port_nostarttls`` (127.0.0.2) -- IMAP that does not
  offer STARTTLS.  Dovecot 2.3 has no per-listener ``ssl`` switch for plain
  listeners, but it filters settings by local IP (``local 127.0.0.2 { ssl =
  no }``), so this listener sits on a second loopback address (Linux routes
  all of 127/8 to lo).
* ``Dovecot.start(ssl=False)`` starts an instance with ``ssl = no``: no
  STARTTLS on any listener, ``port_tls`` and ``ca_file`` are ``None``.

TLS: ``ca_file`` is a self-signed test CA (PEM) that signed the server
certificate (CN ``localhost``; SAN ``DNS:localhost``, ``IP:127.0.0.1``,
``IP:127.0.0.2``).  Clients that trust ``ca_file`` verify the server;
clients using the system store fail.  A CA plus a leaf, rather than one
self-signed leaf, also satisfies strict verifiers such as Python 3.13's
``VERIFY_X509_STRICT``.  ``ssl_context()`` returns a client context.

Users: the default user is ``username``/``password`` (``alex@example.org``
and a random password).  ``add_user()`` adds more at any time, each with
its own empty Maildir; ``set_password()`` changes one.  Every user has
INBOX, Drafts (\\Drafts), Sent (\\Sent), Trash (\\Trash) and Junk (\\Junk),
auto-created and subscribed, and LIST reports the special-use flags (also
via ``LIST ... RETURN (SPECIAL-USE)``).  The hierarchy separator is ``/``;
on disk the layout is Maildir++ (``Maildir/.Parent.Child``).

Helpers, on ``MailUser`` and (for the default user) on ``Dovecot``; each
opens its own short-lived IMAP connection: ``client()``, ``append()``,
``create_folder()``, ``delete_folder()``, ``folders()``, ``uids()``,
``fetch_raw()``, ``uidvalidity()``, ``exists()`` and ``seed_maildir()``, a
bulk loader that writes Maildir files directly (100,000 messages in a few
seconds).

Privileges: as root, Dovecot's login processes run as ``dovenull``, its
internal processes as ``dovecot`` (both created by the dovecot-core
package), and mail is accessed as the system user ``nextroundmail``, which
is created with ``useradd --system`` when missing.  Not as root, everything
runs as the current user.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl as ssl_module
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import imapclient
from imapclient.imap_utf7 import encode as encode_utf7

__all__ = [
    "DEFAULT_PASSWORD_BYTES",
    "DEFAULT_USERNAME",
    "MAIL_SYSTEM_USER",
    "SPECIAL_FOLDERS",
    "Dovecot",
    "DovecotError",
    "DovecotNotInstalledError",
    "MailUser",
    "find_dovecot_binary",
    "live_group_members",
]

DEFAULT_USERNAME = "alex@example.org"
DEFAULT_PASSWORD_BYTES = 12
MAIL_SYSTEM_USER = "nextroundmail"
HOST = "127.0.0.1"
HOST_NOSTARTTLS = "127.0.0.2"
#: folder name -> special-use flag; all are auto-created and subscribed.
SPECIAL_FOLDERS: dict[str, str] = {
    "Drafts": "\\Drafts",
    "Sent": "\\Sent",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
}
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
_APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
_SEARCH_PATHS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_USERNAME_RE = re.compile(r"[A-Za-z0-9_+=-][A-Za-z0-9_.@+=-]{0,127}")
_SPECIAL_USE_RE = re.compile(r"\\[A-Za-z]+")


class DovecotError(RuntimeError):
    """Dovecot failed to start/stop, or a helper got an unexpected reply."""


class DovecotNotInstalledError(DovecotError):
    """The ``dovecot`` binary is not installed."""


def find_dovecot_binary() -> str:
    """Return the path of the ``dovecot`` binary or raise DovecotNotInstalledError."""
    # /usr/sbin is often not on a non-root PATH, so look there explicitly.
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(_SEARCH_PATHS)
    found = shutil.which("dovecot", path=path)
    if found is None:
        raise DovecotNotInstalledError(
            "the 'dovecot' binary was not found; install it with "
            "'apt-get install dovecot-imapd' (Debian/Ubuntu)"
        )
    return found


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class _Identity:
    """Which accounts the Dovecot processes and the mail files use."""

    login_user: str
    internal_user: str
    internal_group: str
    mail_uid: int
    mail_gid: int
    as_root: bool

    @classmethod
    def detect(cls) -> _Identity:
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid()).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            return cls(me, me, group, os.geteuid(), os.getegid(), as_root=False)
        for name in ("dovenull", "dovecot"):
            try:
                pwd.getpwnam(name)
            except KeyError:
                raise DovecotNotInstalledError(
                    f"system user {name!r} is missing; it is created by the "
                    "dovecot-core package ('apt-get install dovecot-imapd')"
                ) from None
        mail = _ensure_system_user(MAIL_SYSTEM_USER)
        return cls("dovenull", "dovecot", "dovecot", mail.pw_uid, mail.pw_gid, as_root=True)


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    # Another test process may win the race, so re-check instead of trusting
    # useradd's exit status.
    subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        check=False,
        capture_output=True,
    )
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise DovecotError(
            f"could not create system user {name!r}; create it with "
            f"'useradd --system --user-group {name}'"
        ) from None


def _generate_certificates(ssl_dir: Path) -> tuple[Path, Path, Path]:
    """Create a test CA and a server cert signed by it; return (ca, cert, key)."""
    ssl_dir.mkdir(mode=0o755, exist_ok=True)
    cnf = ssl_dir / "openssl.cnf"
    # An explicit config keeps the result independent of /etc/ssl/openssl.cnf.
    cnf.write_text(
        "[req]\n"
        "distinguished_name = dn\n"
        "prompt = no\n"
        "[dn]\n"
        "CN = localhost\n"
        "[ca_ext]\n"
        "basicConstraints = critical,CA:TRUE\n"
        "keyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n"
        "[leaf_ext]\n"
        "basicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        f"subjectAltName = DNS:localhost,IP:{HOST},IP:{HOST_NOSTARTTLS}\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid,issuer\n"
    )
    ca, ca_key = ssl_dir / "ca.pem", ssl_dir / "ca.key"
    cert, key, csr = ssl_dir / "cert.pem", ssl_dir / "key.pem", ssl_dir / "cert.csr"
    # EC keys: generating RSA keys would dominate start-up time.
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands = [
        ["openssl", "req", "-x509", "-config", str(cnf), "-extensions", "ca_ext",
         *newkey, "-keyout", str(ca_key), "-out", str(ca), "-days", "3650",
         "-subj", "/O=nextround tests/CN=nextround test CA"],
        ["openssl", "req", "-new", "-config", str(cnf), *newkey,
         "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost"],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca),
         "-CAkey", str(ca_key), "-set_serial", f"0x{secrets.token_hex(8)}",
         "-days", "3650", "-extfile", str(cnf), "-extensions", "leaf_ext",
         "-out", str(cert)],
    ]  # fmt: skip
    for cmd in commands:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DovecotError(f"{' '.join(cmd)} failed:\n{result.stderr}")
    return ca, cert, key


def _passwd_line(name: str, password: str) -> str:
    # The name is also a file name (passwd.d/<name>) and a Dovecot %u path.
    if not _USERNAME_RE.fullmatch(name):
        raise ValueError(f"test user names must match {_USERNAME_RE.pattern}: {name!r}")
    if not password or any(c in password for c in ":\n\r\0"):
        raise ValueError(f"unusable in a passwd-file: {password!r}")
    return f"{name}:{{PLAIN}}{password}::::::\n"


@dataclass
class MailUser:
    """One IMAP account on a Dovecot instance, with IMAP helpers.

    Every helper opens its own short-lived connection, so helpers keep
    working across ``Dovecot.restart()``.
    """

    server: Dovecot
    username: str
    password: str = field(repr=False)

    @property
    def maildir(self) -> Path:
        """Root of this user's Maildir (INBOX lives here; Maildir++ layout)."""
        return self.server.mail_root / self.username / "Maildir"

    def client(self, *, tls: bool = False) -> imapclient.IMAPClient:
        """Return a logged-in IMAPClient (plain port, or implicit TLS if ``tls``).

        The caller owns the connection; IMAPClient is a context manager that
        logs out on exit.
        """
        if tls:
            if self.server.port_tls is None:
                raise DovecotError("this instance was started with ssl=False")
            client = imapclient.IMAPClient(
                self.server.host,
                port=self.server.port_tls,
                ssl=True,
                ssl_context=self.server.ssl_context(),
                timeout=30,
            )
        else:
            client = imapclient.IMAPClient(
                self.server.host, port=self.server.port_plain, ssl=False, timeout=30
            )
        try:
            client.login(self.username, self.password)
        except BaseException:
            client.shutdown()
            raise
        return client

    @contextmanager
    def _session(self) -> Iterator[imapclient.IMAPClient]:
        client = self.client()
        try:
            yield client
        finally:
            try:
                client.logout()
            except Exception:  # the server may be gone; drop the socket anyway
                client.shutdown()

    def append(
        self,
        folder: str,
        raw: bytes,
        flags: Sequence[str | bytes] = (),
        date: datetime | None = None,
    ) -> int:
        """APPEND ``raw`` to ``folder`` and return the new message's UID."""
        with self._session() as client:
            response = client.append(folder, raw, flags=flags, msg_time=date)
        match = _APPENDUID_RE.search(response)
        if match is None:
            raise DovecotError(f"no APPENDUID in APPEND response: {response!r}")
        return int(match.group(2))

    def create_folder(self, name: str, special_use: str | None = None) -> None:
        """CREATE ``name``, optionally with an RFC 6154 special-use flag.

        Dovecot 2.3 ignores ``CREATE name (USE (...))``, so a special-use
        flag (e.g. ``"\\Archive"``) is added to the server config instead
        (see ``Dovecot.add_special_use``): it applies to a folder of that
        name for every user.
        """
        with self._session() as client:
            client.create_folder(name)
        if special_use is not None:
            self.server.add_special_use(name, special_use)

    def delete_folder(self, name: str) -> None:
        """DELETE ``name`` (must exist)."""
        with self._session() as client:
            client.delete_folder(name)

    def folders(self) -> list[tuple[tuple[bytes, ...], str]]:
        """Return ``(flags, name)`` for every folder, special-use flags included."""
        with self._session() as client:
            typ, data = client._imap._simple_command("LIST", '""', '"*"', "RETURN", "(SPECIAL-USE)")
            if typ != "OK":
                raise DovecotError(f"LIST RETURN (SPECIAL-USE) failed: {data!r}")
            typ, lines = client._imap._untagged_response(typ, data, "LIST")
            parsed = client._proc_folder_list(lines)
        return [(tuple(flags), name) for flags, _delim, name in parsed]

    def uids(self, folder: str) -> list[int]:
        """Return the sorted UIDs in ``folder``."""
        with self._session() as client:
            client.select_folder(folder, readonly=True)
            return sorted(int(uid) for uid in client.search("ALL"))

    def fetch_raw(self, folder: str) -> dict[int, bytes]:
        """Return ``{uid: full RFC 822 bytes}`` for every message in ``folder``."""
        with self._session() as client:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            if not uids:
                return {}
            fetched = client.fetch(uids, [b"BODY.PEEK[]"])
            return {int(uid): data[b"BODY[]"] for uid, data in fetched.items()}

    def uidvalidity(self, folder: str) -> int:
        """Return the UIDVALIDITY of ``folder``."""
        with self._session() as client:
            status = client.folder_status(folder, [b"UIDVALIDITY"])
            return int(status[b"UIDVALIDITY"])

    def exists(self, folder: str) -> int:
        """Return the message count that SELECT reports for ``folder``."""
        with self._session() as client:
            return int(client.select_folder(folder, readonly=True)[b"EXISTS"])

    def folder_path(self, folder: str) -> Path:
        """Return the Maildir directory of ``folder`` (it need not exist)."""
        if folder.upper() == "INBOX":
            return self.maildir
        # Maildir++: "a/b" is stored as ".a.b"; IMAP names are modified UTF-7.
        encoded: str = encode_utf7(folder).decode("ascii")
        return self.maildir / ("." + encoded.replace("/", "."))

    def seed_maildir(self, folder: str, messages: Iterable[bytes], *, seen: bool = False) -> int:
        """Bulk-load ``messages`` by writing files straight into the Maildir.

        Much faster than APPEND (100,000 small messages take a few seconds);
        Dovecot assigns UIDs, in iteration order, on the next access to the
        folder.  The folder is created over IMAP first if it does not exist.
        Messages should use CRLF line ends, as over IMAP.  ``seen`` marks
        them \\Seen.  Returns the number of messages written.
        """
        path = self.folder_path(folder)
        if not (path / "cur").is_dir():
            with self._session() as client:
                if not client.folder_exists(folder):
                    client.create_folder(folder)
                # STATUS makes Dovecot create INBOX's directories on disk.
                client.folder_status(folder, [b"MESSAGES"])
        cur = path / "cur"
        if not cur.is_dir():
            raise DovecotError(f"Dovecot did not create {cur}")
        uid, gid = self.server.identity.mail_uid, self.server.identity.mail_gid
        chown = self.server.identity.as_root
        info = ":2,S" if seen else ":2,"
        # Dovecot orders new files by the <secs>.M<usecs> prefix, so a
        # strictly increasing usecs field keeps the iteration order as UID
        # order; the random tag keeps names unique across calls.
        stamp = int(time.time())
        tag = f"P{os.getpid()}R{secrets.token_hex(4)}"
        host = socket.gethostname().replace("/", "_").replace(":", "_")
        count = 0
        cur_fd = os.open(cur, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for count, raw in enumerate(messages, start=1):
                # S=<size> lets Dovecot skip a stat() per message.
                name = f"{stamp}.M{count}{tag}.{host},S={len(raw)}{info}"
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
                fd = os.open(name, flags, 0o600, dir_fd=cur_fd)
                try:
                    view = memoryview(raw)
                    while view:
                        view = view[os.write(fd, view) :]
                    if chown:
                        os.fchown(fd, uid, gid)
                finally:
                    os.close(fd)
        finally:
            os.close(cur_fd)
        return count


class Dovecot:
    """A throwaway Dovecot IMAP server; see the module docstring.

    ``Dovecot.start()`` creates and starts one.  ``stop()`` and ``restart()``
    keep the working directory, ports, users and mail; ``close()`` stops the
    server and deletes its files.  As a context manager it closes on exit.
    The IMAP helpers (``append``, ``uids``, ...) act on the default user;
    ``add_user()`` returns a ``MailUser`` with the same helpers.
    """

    host = HOST
    host_nostarttls = HOST_NOSTARTTLS

    def __init__(self, workdir: Path | None = None, *, ssl: bool = True) -> None:
        """Prepare config, certificates and the default user; do not start.

        ``workdir`` (default: a new temp dir) is chmod 0755 and must be
        reachable by the ``dovecot``/``dovenull``/``nextroundmail`` users
        when running as root, so pytest's 0700 ``tmp_path`` does not work.
        """
        self.binary = find_dovecot_binary()
        self.identity = _Identity.detect()
        self.ssl_enabled = ssl
        self._proc: subprocess.Popen[bytes] | None = None
        self._own_workdir = workdir is None
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="nextround-dovecot-"))
        self.workdir = workdir.resolve()
        # Unix socket paths are limited to ~108 bytes, so base_dir gets its
        # own short path even if workdir is deep inside some tmp tree.
        self.base_dir = Path(tempfile.mkdtemp(prefix="dc-"))
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise

    def _prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Dovecot's unprivileged processes must traverse these (mkdtemp gives 0700).
        self.workdir.chmod(0o755)
        self.base_dir.chmod(0o755)
        self.config_path = self.workdir / "dovecot.conf"
        self.log_path = self.workdir / "dovecot.log"
        self.stderr_path = self.workdir / "dovecot.stderr"
        self.passwd_dir = self.workdir / "passwd.d"
        self.mail_root = self.workdir / "mail"
        self.state_dir = self.workdir / "state"
        for directory in (self.passwd_dir, self.mail_root, self.state_dir):
            directory.mkdir(mode=0o755, exist_ok=True)
        if self.identity.as_root:
            os.chown(self.mail_root, self.identity.mail_uid, self.identity.mail_gid)

        self.port_plain = _free_port(HOST)
        self.port_tls: int | None = _free_port(HOST) if self.ssl_enabled else None
        self.port_nostarttls = _free_port(HOST_NOSTARTTLS)
        self.ca_file: Path | None = None
        self._cert: Path | None = None
        self._key: Path | None = None
        if self.ssl_enabled:
            self.ca_file, self._cert, self._key = _generate_certificates(self.workdir / "ssl")

        self._users: dict[str, str] = {}
        self._special_use: dict[str, str] = dict(SPECIAL_FOLDERS)
        self._config_generation = 0
        self.default_user = self.add_user(DEFAULT_USERNAME)
        self._write_config()

    @classmethod
    def start(cls, workdir: Path | None = None, *, ssl: bool = True) -> Self:
        """Create and start a server; return once every listener greets."""
        server = cls(workdir, ssl=ssl)
        try:
            server.launch()
        except BaseException:
            server.close()
            raise
        return server

    # -- configuration ---------------------------------------------------

    def _write_config(self) -> None:
        self._config_generation += 1
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(self._render_config())
        tmp.replace(self.config_path)

    def _render_config(self) -> str:
        ident = self.identity
        mailboxes = "".join(
            f'  mailbox "{name}" {{\n    special_use = {flag}\n'
            + ("    auto = subscribe\n" if name in SPECIAL_FOLDERS else "")
            + "  }\n"
            for name, flag in self._special_use.items()
        )
        if self.ssl_enabled:
            tls = (
                "ssl = yes\n"
                f"ssl_cert = <{self._cert}\n"
                f"ssl_key = <{self._key}\n"
                "ssl_min_protocol = TLSv1.2\n"
            )
            imaps = (
                "  inet_listener imaps {\n"
                f"    address = {HOST}\n"
                f"    port = {self.port_tls}\n"
                "    ssl = yes\n"
                "  }\n"
            )
        else:
            tls = "ssl = no\n"
            # Otherwise the built-in default imaps listener binds port 993.
            imaps = "  inet_listener imaps {\n    port = 0\n  }\n"
        if ident.as_root:
            unprivileged = ""
        else:
            # chroot needs root, and auth-worker defaults to user = root.
            unprivileged = (
                "".join(
                    f"service {name} {{\n  chroot =\n}}\n"
                    for name in ("imap-login", "anvil", "ipc", "aggregator", "old-stats")
                )
                + "service auth-worker {\n  user = $default_internal_user\n}\n"
            )
        return f"""\
# Generated by tests/dovecot.py for tests; not for production.
protocols = imap
listen = {HOST}, {HOST_NOSTARTTLS}
base_dir = {self.base_dir}
state_dir = {self.state_dir}
instance_name = nextround-test-{self.port_plain}
log_path = {self.log_path}
info_log_path = {self.log_path}
debug_log_path = {self.log_path}
default_login_user = {ident.login_user}
default_internal_user = {ident.internal_user}
default_internal_group = {ident.internal_group}
first_valid_uid = {ident.mail_uid}
first_valid_gid = {ident.mail_gid}
login_greeting = Dovecot ready, config {self._config_generation}.
# Tests log in with plain LOGIN over loopback without STARTTLS.
disable_plaintext_auth = no
# xoauth2: the token is checked by the passdb like a password, which lets tests log in
# with XOAUTH2 without an OAuth server.
auth_mechanisms = plain login xoauth2 oauthbearer
# Wrong-password tests would otherwise wait 2 s per failed login.
auth_failure_delay = 0
{tls}
mail_location = maildir:~/Maildir
mail_fsync = never
# IDLE falls back to polling if inotify is unavailable; keep that fast.
mailbox_idle_check_interval = 1 secs
# One passwd-file per user: Dovecot re-reads a changed passwd-file at most
# once per second, so a user appended to a shared file could not log in at
# once, while a new file is read on first use.
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_dir}/%u
}}
userdb {{
  driver = static
  args = uid={ident.mail_uid} gid={ident.mail_gid} home={self.mail_root}/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
{mailboxes}}}
protocol imap {{
  mail_max_userip_connections = 1000
}}
# No growing 2..15 s delays after failed logins from the same IP.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {self.port_plain}
  }}
{imaps}  inet_listener imap_nostarttls {{
    address = {HOST_NOSTARTTLS}
    port = {self.port_nostarttls}
  }}
}}
# Dovecot 2.3 has no per-listener ssl setting for non-imaps listeners, but
# settings can be filtered by local IP: no STARTTLS on this address.
local {HOST_NOSTARTTLS} {{
  ssl = no
}}
{unprivileged}"""

    def add_special_use(self, folder: str, flag: str) -> None:
        """Give every user's ``folder`` the special-use ``flag`` (e.g. ``\\\\Archive``).

        Rewrites the config and reloads Dovecot (SIGHUP); returns once new
        sessions get the new config.  Sessions that are already logged in
        keep the old one.  The folder itself is not created.
        """
        if not _SPECIAL_USE_RE.fullmatch(flag):
            raise ValueError(f"not a special-use flag: {flag!r}")
        if any(c in folder for c in '"\\\n\r\0') or not folder:
            raise ValueError(f"unusable folder name: {folder!r}")
        if self._special_use.get(folder) == flag:
            return
        self._special_use[folder] = flag
        self._write_config()
        if not self.running:
            return
        assert self._proc is not None
        self._proc.send_signal(signal.SIGHUP)
        # Reloading restarts the config and login processes; a greeting that
        # carries the new generation proves new sessions get the new config.
        expected = f"config {self._config_generation}.".encode()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                greeting = self._read_greeting(HOST, self.port_plain, tls=False, timeout=2.0)
            except (OSError, DovecotError):
                greeting = b""
            if expected in greeting:
                return
            if time.monotonic() > deadline:
                raise DovecotError(
                    f"Dovecot did not reload its config (last greeting {greeting!r})\n"
                    + self.diagnostics()
                )
            time.sleep(0.05)

    # -- users -----------------------------------------------------------

    @property
    def username(self) -> str:
        """Login name of the default user."""
        return self.default_user.username

    @property
    def password(self) -> str:
        """Password of the default user."""
        return self.default_user.password

    def add_user(self, name: str, password: str | None = None) -> MailUser:
        """Add a user (random password if None) with an empty mail store.

        Works while the server runs; the user can log in immediately.
        """
        if name in self._users:
            raise ValueError(f"user {name!r} already exists")
        if password is None:
            password = secrets.token_urlsafe(DEFAULT_PASSWORD_BYTES)
        self._write_passwd(name, password)
        self._users[name] = password
        return MailUser(self, name, password)

    def set_password(self, name: str, password: str) -> MailUser:
        """Change a user's password (e.g. to test authentication failures).

        Blocks for up to a second, see below.
        """
        if name not in self._users:
            raise KeyError(name)
        path = self.passwd_dir / name
        before = path.stat()
        self._write_passwd(name, password)
        self._users[name] = password
        # Dovecot re-stats a passwd-file at most once per second and only
        # compares its mtime (whole seconds) and size.  Force a new mtime,
        # then let the clock pass into the next second so that no lookup can
        # still share a second with the last, cached, stat.
        if int(path.stat().st_mtime) == int(before.st_mtime):
            bumped = int(before.st_mtime) + 1
            os.utime(path, (bumped, bumped))
        next_second = int(time.time()) + 1
        while time.time() < next_second:
            time.sleep(0.02)
        return MailUser(self, name, password)

    def user(self, name: str) -> MailUser:
        """Return the MailUser of an existing user."""
        return MailUser(self, name, self._users[name])

    def _write_passwd(self, name: str, password: str) -> None:
        line = _passwd_line(name, password)
        path = self.passwd_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(line)
        tmp.chmod(0o644)
        tmp.replace(path)

    # -- process control -------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the Dovecot master process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """PID of the Dovecot master (also its process group), if running."""
        return self._proc.pid if self._proc is not None else None

    def launch(self) -> None:
        """Start Dovecot (unless running); return once every listener greets."""
        if self.running:
            return
        with self.stderr_path.open("ab") as stderr:
            # A new session lets stop() reap every Dovecot child through the
            # process group, even if the master dies first.
            self._proc = subprocess.Popen(
                [self.binary, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _listeners(self) -> list[tuple[str, int, bool]]:
        found = [
            (HOST, self.port_plain, False),
            (HOST_NOSTARTTLS, self.port_nostarttls, False),
        ]
        if self.port_tls is not None:
            found.append((HOST, self.port_tls, True))
        return found

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        pending = self._listeners()
        while pending:
            proc = self._proc
            assert proc is not None
            if proc.poll() is not None:
                raise DovecotError(
                    f"dovecot exited with status {proc.returncode} during start-up\n"
                    + self.diagnostics()
                )
            host, port, tls = pending[0]
            try:
                self._read_greeting(host, port, tls, timeout=2.0)
            except (OSError, DovecotError) as exc:
                if time.monotonic() > deadline:
                    raise DovecotError(
                        f"no IMAP greeting on {host}:{port} within "
                        f"{START_TIMEOUT:.0f} s (last error: {exc!r})\n" + self.diagnostics()
                    ) from exc
                time.sleep(0.05)
            else:
                pending.pop(0)

    def _read_greeting(self, host: str, port: int, tls: bool, timeout: float) -> bytes:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            if tls:
                context = self.ssl_context()
                with context.wrap_socket(raw, server_hostname="localhost") as sock:
                    greeting = sock.recv(4096)
            else:
                greeting = raw.recv(4096)
        if not greeting.startswith(b"* OK"):
            raise DovecotError(f"unexpected greeting from {host}:{port}: {greeting!r}")
        return greeting

    def stop(self) -> None:
        """Stop Dovecot and all its processes; config, users and mail stay."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            # SIGTERM to the master alone takes a second (it waits for its
            # log process); the whole group shuts down in milliseconds.
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        _kill_process_group(proc.pid)

    def restart(self) -> None:
        """Stop and start again: same ports, config, users and mail."""
        self.stop()
        self.launch()

    def close(self) -> None:
        """Stop Dovecot and delete its files (workdir only if created here)."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.launch()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<Dovecot plain={self.port_plain} tls={self.port_tls} "
            f"nostarttls={self.port_nostarttls} workdir={self.workdir}>"
        )

    # -- diagnostics and TLS ----------------------------------------------

    def diagnostics(self, lines: int = 40) -> str:
        """Tail of the Dovecot log and of its stderr, for failure messages."""
        return (
            f"--- {self.log_path} (tail) ---\n{_tail(self.log_path, lines)}\n"
            f"--- {self.stderr_path} (tail) ---\n{_tail(self.stderr_path, lines)}"
        )

    def ssl_context(self) -> ssl_module.SSLContext:
        """Client SSLContext that trusts only this server's test CA."""
        if self.ca_file is None:
            raise DovecotError("this instance was started with ssl=False")
        return ssl_module.create_default_context(cafile=str(self.ca_file))

    # -- IMAP helpers for the default user --------------------------------

    def client(self, *, tls: bool = False) -> imapclient.IMAPClient:
        """Logged-in IMAPClient for the default user (plain port unless ``tls``)."""
        return self.default_user.client(tls=tls)

    def append(
        self,
        folder: str,
        raw: bytes,
        flags: Sequence[str | bytes] = (),
        date: datetime | None = None,
    ) -> int:
        """APPEND as the default user; return the new UID."""
        return self.default_user.append(folder, raw, flags, date)

    def create_folder(self, name: str, special_use: str | None = None) -> None:
        """CREATE a folder of the default user; see MailUser.create_folder."""
        self.default_user.create_folder(name, special_use)

    def delete_folder(self, name: str) -> None:
        """DELETE a folder of the default user."""
        self.default_user.delete_folder(name)

    def folders(self) -> list[tuple[tuple[bytes, ...], str]]:
        """``(flags, name)`` of the default user's folders."""
        return self.default_user.folders()

    def uids(self, folder: str) -> list[int]:
        """Sorted UIDs in the default user's ``folder``."""
        return self.default_user.uids(folder)

    def fetch_raw(self, folder: str) -> dict[int, bytes]:
        """``{uid: raw bytes}`` of the default user's ``folder``."""
        return self.default_user.fetch_raw(folder)

    def uidvalidity(self, folder: str) -> int:
        """UIDVALIDITY of the default user's ``folder``."""
        return self.default_user.uidvalidity(folder)

    def exists(self, folder: str) -> int:
        """EXISTS count of the default user's ``folder``."""
        return self.default_user.exists(folder)

    def seed_maildir(self, folder: str, messages: Iterable[bytes], *, seen: bool = False) -> int:
        """Bulk-load messages into the default user's Maildir; see MailUser."""
        return self.default_user.seed_maildir(folder, messages, seen=seen)


def live_group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp ...
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _kill_process_group(pgid: int) -> None:
    """SIGKILL what is left of a stopped Dovecot's process group and wait."""
    # The master normally takes its children down with it, but one stuck in
    # I/O could outlive it and keep a port or mail files busy.  Zombies are
    # ignored: without a reaping init they would never go away.
    deadline = time.monotonic() + STOP_TIMEOUT
    while True:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return  # group is gone (PermissionError: the id was recycled)
        if not Path("/proc").is_dir() or not live_group_members(pgid):
            return
        if time.monotonic() > deadline:
            raise DovecotError(f"Dovecot processes in group {pgid} did not exit")
        time.sleep(0.02)
