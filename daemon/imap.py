"""The imapclient adapter behind the `Mailbox` protocol.

Every socket operation has a timeout. Every library error (socket, ssl, imaplib) is turned
into one of ours here, with a message that names the cause and never the password.
"""

from __future__ import annotations

import contextlib
import imaplib
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

import imapclient
from imapclient.exceptions import LoginError
from imapclient.response_parser import parse_fetch_response

from nextround.daemon.config import ImapConfig
from nextround.daemon.errors import (
    AuthError,
    ConnectError,
    DnsError,
    FolderError,
    MailboxError,
    RefusedError,
    TlsError,
    UnreadableError,
)
from nextround.daemon.mailbox import HEADER_FIELDS, Fetched, FolderInfo, FolderStatus

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 15.0
# Bodies are fetched in groups bounded by count and by bytes, so memory stays bounded.
FETCH_GROUP_MESSAGES = 100
FETCH_GROUP_BYTES = 16 * 1024 * 1024
SIZE_QUERY_CHUNK = 1000
# Larger than this, a message's size is asked before it is fetched; a group of the others
# stays within FETCH_GROUP_BYTES.
LARGE_MESSAGE = FETCH_GROUP_BYTES // FETCH_GROUP_MESSAGES
# RFC 5530's codes for a refusal that may pass: the command is tried again next cycle.
_TEMPORARY = ("[UNAVAILABLE]", "[INUSE]")
# Messages refused alone, with none given, before the rest are left unasked; and how many
# messages before them are asked, the last first, to tell whether the server gives any.
_HELD_BEFORE_WITNESS = 3
_WITNESSES = 20
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)


@contextlib.contextmanager
def translate_errors(host: str, doing: str) -> Iterator[None]:
    """Library errors in, our errors out, each naming the host and what we were doing."""
    try:
        yield
    except MailboxError:
        raise
    except LoginError as error:
        raise AuthError(f"{host}: login failed: {_server_text(error)}") from None
    except socket.gaierror as error:
        raise DnsError(f"{host}: cannot resolve host name: {error.strerror}") from None
    except ssl.SSLCertVerificationError as error:
        raise TlsError(
            f"{host}: certificate not trusted ({error.verify_message}); "
            "set [imap] ca_file for a self-signed server"
        ) from None
    except ssl.SSLError as error:
        raise TlsError(f"{host}: TLS failed while {doing}: {error.reason or error}") from None
    except ConnectionRefusedError:
        raise ConnectError(f"{host}: connection refused while {doing}") from None
    except TimeoutError:
        raise ConnectError(f"{host}: timed out while {doing}") from None
    except imaplib.IMAP4.abort as error:
        raise ConnectError(f"{host}: connection lost while {doing}: {error}") from None
    except imaplib.IMAP4.error as error:
        raise RefusedError(f"{host}: server refused while {doing}: {error}") from None
    except UnicodeError:
        # Never the error's own text: it quotes the character and its place, and what was
        # being encoded may be the password.
        raise MailboxError(f"{host}: something could not be encoded while {doing}") from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConnectError(f"{host}: network error while {doing}: {reason}") from None


def _server_text(error: Exception) -> str:
    text = str(error)
    return text.removeprefix("b'").removesuffix("'") or "rejected"


def tls_context(imap: ImapConfig) -> ssl.SSLContext:
    """System CAs plus `ca_file`; certificates and host names are always verified."""
    context = ssl.create_default_context()
    if imap.ca_file:
        try:
            context.load_verify_locations(cafile=imap.ca_file)
        except (OSError, ssl.SSLError) as error:
            raise TlsError(f"[imap] ca_file {imap.ca_file}: cannot load: {error}") from None
    return context


def _client(
    target: str, port: int, imap: ImapConfig, timeout: imapclient.SocketTimeout
) -> imapclient.IMAPClient:
    return imapclient.IMAPClient(
        target,
        port=port,
        ssl=imap.security == "tls",
        ssl_context=tls_context(imap) if imap.security == "tls" else None,
        timeout=timeout,
    )


def loopback_addresses(host: str, port: int) -> list[str]:
    """The addresses to reach `host` at in plain text. The configuration allows plain text
    to loopback names and addresses alone, but a name is the resolver's to answer
    ("localhost." or "localhost.localdomain" missing from /etc/hosts goes to DNS, which
    anyone on the network may answer): it is resolved once, refused unless every answer is
    loopback, and the connection goes to the addresses found, never to the name again."""
    with translate_errors(host, "looking up its address"):
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    # A zone index ("fe80::1%eth0") is no part of the address itself.
    if not all(ipaddress.ip_address(one.partition("%")[0]).is_loopback for one in addresses):
        raise TlsError(
            f"{host}: resolves to {', '.join(addresses)}, not to loopback: "
            'security = "plain" sends the password in clear text, so it is for loopback only'
        )
    return addresses


def untraced(client: imapclient.IMAPClient) -> imapclient.IMAPClient:
    """The client with imaplib's protocol trace off. imapclient sets imaplib's debug level to
    5 and sends the trace to its "imapclient.imaplib" logger, so imaplib builds the repr of
    every response, each fetched message whole, before the logger drops it (we cap imapclient
    at WARNING): two thirds of a fetch's CPU, and mail text copied into log strings. A
    client without imaplib underneath (a future imapclient) is left as it is."""
    inner = getattr(client, "_imap", None)
    if inner is not None:
        inner.debug = 0
    return client


def connect(imap: ImapConfig, secret: str) -> ImapMailbox:
    """Connect, secure the channel as configured, and log in (the secret is a password, or
    an OAuth2 access token when `auth = "oauth2"`)."""
    host, port = imap.host, imap.effective_port
    timeout = imapclient.SocketTimeout(
        connect=min(CONNECT_TIMEOUT, imap.timeout), read=imap.timeout
    )
    targets = loopback_addresses(host, port) if imap.security == "plain" else [host]
    with translate_errors(host, "connecting"):
        # Each address in turn, as a name's are tried (Debian's localhost is ::1 first, and a
        # server may listen on 127.0.0.1 alone); the last one's failure is the one told.
        for target in targets[:-1]:
            with contextlib.suppress(OSError):
                client = _client(target, port, imap, timeout)
                break
        else:
            client = _client(targets[-1], port, imap, timeout)
    try:
        untraced(client)
        with translate_errors(host, "securing the connection"):
            if imap.security == "starttls":
                # Never fall back to plain text when the server does not offer STARTTLS.
                if not client.has_capability("STARTTLS"):
                    raise TlsError(f"{host}: the server does not offer STARTTLS")
                client.starttls(tls_context(imap))
        with translate_errors(host, "logging in"):
            if imap.auth == "oauth2":
                try:
                    client.oauth2_login(imap.username, secret)
                except imaplib.IMAP4.error as error:
                    if isinstance(error, imaplib.IMAP4.abort):
                        raise
                    raise AuthError(f"{host}: XOAUTH2 login failed: {error}") from None
            elif (imap.username + secret).isascii():
                client.login(imap.username, secret)
            elif client.has_capability("AUTH=PLAIN"):
                client.plain_login(imap.username, secret)  # UTF-8, as RFC 4616 allows
            else:
                raise AuthError(
                    f"{host}: the user name or password is not ASCII, which LOGIN cannot "
                    "carry, and the server does not offer AUTHENTICATE PLAIN"
                )
        with translate_errors(host, "reading the server's capabilities"):
            gmail = bool(client.has_capability("X-GM-EXT-1"))
    except BaseException:
        _close_quietly(client)
        raise
    logger.debug("logged in to %s:%d as %s", host, port, imap.username)
    return ImapMailbox(client, host, gmail=gmail)


def _close_quietly(client: imapclient.IMAPClient) -> None:
    with contextlib.suppress(OSError, imaplib.IMAP4.error):
        client.shutdown()


class ImapMailbox:
    """A logged-in connection. Not thread-safe: one cycle uses it at a time."""

    def __init__(self, client: imapclient.IMAPClient, host: str, *, gmail: bool = False) -> None:
        self.client = client
        self.host = host
        self.selected: str | None = None
        # Gmail keeps its own conversation ids (X-GM-EXT-1): fetched with each message.
        self.gmail = gmail

    def _errors(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return translate_errors(self.host, doing)

    def list_folders(self) -> list[FolderInfo]:
        with self._errors("listing folders"):
            listed = self.client.list_folders()
        return [
            FolderInfo(name=str(name), flags=frozenset(_text(flag) for flag in flags))
            for flags, _delimiter, name in listed
        ]

    def status(self, folder: str) -> FolderStatus:
        if folder == self.selected:
            # RFC 3501 6.3.10: STATUS must not be used to check the selected mailbox for new
            # mail (servers may answer from stale state); selecting it again costs the same.
            return self.select(folder)
        with self._errors(f"asking the status of {folder}"):
            try:
                response = self.client.folder_status(
                    folder, [b"UIDVALIDITY", b"UIDNEXT", b"MESSAGES"]
                )
            except imaplib.IMAP4.error as error:
                if isinstance(error, imaplib.IMAP4.abort):
                    raise
                raise FolderError(f"{self.host}: folder {folder!r}: {error}") from None
        return _folder_status(response)

    def select(self, folder: str) -> FolderStatus:
        with self._errors(f"selecting {folder}"):
            try:
                self.selected = None
                response = self.client.select_folder(folder, readonly=True)
            except imaplib.IMAP4.error as error:
                if isinstance(error, imaplib.IMAP4.abort):
                    raise
                raise FolderError(f"{self.host}: folder {folder!r}: {error}") from None
        self.selected = folder
        return _folder_status(response)

    def uids_after(self, last_uid: int) -> list[int]:
        with self._errors("searching for new mail"):
            found = self.client.search(["UID", f"{last_uid + 1}:*"])
        # `n:*` always matches the highest UID, even when it is <= n.
        return sorted(uid for uid in found if uid > last_uid)

    def uids_since(self, day: date) -> list[int]:
        with self._errors("searching for recent mail"):
            found = self.client.search(["SINCE", day])
        return sorted(found)

    def fetch(self, uids: Sequence[int], max_bytes: int) -> Iterator[Fetched]:
        for start in range(0, len(uids), SIZE_QUERY_CHUNK):
            chunk = list(uids[start : start + SIZE_QUERY_CHUNK])
            try:
                sizes = self._sizes(chunk)
            except RefusedError:
                yield from self._one_by_one(chunk, max_bytes)
                continue
            for group in _groups(chunk, sizes, max_bytes):
                try:
                    found = self._fetch_group(group, max_bytes)
                except RefusedError:
                    yield from self._one_by_one(group, max_bytes)
                    continue
                yield from found

    def _sizes(self, chunk: list[int]) -> dict[int, int]:
        """Each message's size, or at most LARGE_MESSAGE. Memory stays bounded without asking
        every message's size (parsing that answer was a tenth of a first sync's IMAP time):
        only the few large ones are asked."""
        with self._errors("looking for large messages"):
            large = self.client.search(["UID", _uid_set(chunk), "LARGER", LARGE_MESSAGE])
        sizes = dict.fromkeys(chunk, LARGE_MESSAGE)  # at most, for all the others
        if large:
            with self._errors("fetching sizes"):
                found = self.client.fetch(sorted(large), [b"RFC822.SIZE"])
            sizes |= {uid: int(data.get(b"RFC822.SIZE", 0)) for uid, data in found.items()}
        return sizes

    def _one_by_one(self, uids: list[int], max_bytes: int) -> Iterator[Fetched]:
        """After the server refused a command naming these messages: each alone, so that one
        it cannot read (a damaged file, a size its index has wrong) stops no other. That one
        comes back `refused` (the sync decides what becomes of it), unless the server calls
        the refusal temporary: then the cycle fails as before. When it gives none of them,
        they come back `unwitnessed` unless it gives a message before them (`_serving`):
        perhaps the server's trouble, not theirs, which the sync gives longer to pass. Each
        message's size is asked first: where Dovecot refuses that, asked for the body it
        drops the connection (UnreadableError)."""
        held: list[Fetched] | None = []  # refused before the server gave any message
        for uid in uids:
            try:
                self._sizes([uid])
                found = self._fetch_group([uid], max_bytes)
            except RefusedError as error:
                if _temporary(error):
                    raise
                logger.warning("the server refused UID %d alone: %s", uid, error)
                refused = Fetched(uid=uid, raw=b"", size=0, limit=max_bytes, refused=str(error))
                if held is None:
                    yield refused
                    continue
                held.append(refused)
                if len(held) < _HELD_BEFORE_WITNESS:
                    continue
                # A few refused and none given: is it the server? If so, the rest (a
                # thousand, of a server refusing everything) are not asked this cycle.
                witnessed = self._serving(held[0].uid)
                yield from (replace(item, witnessed=witnessed) for item in held)
                if not witnessed:
                    raise RefusedError(f"the server gives no message now: {error}") from None
                held = None
                continue
            except ConnectError as error:
                raise UnreadableError(str(error), uid, witnessed=held is None) from None
            if found and held is not None:
                yield from held  # it serves: those were refused for themselves
                held = None
            yield from found
        if held:
            witnessed = self._serving(held[0].uid)
            yield from (replace(item, witnessed=witnessed) for item in held)

    def _serving(self, below: int) -> bool:
        """Whether the server gives one of the folder's last messages before `below` (its size
        and the start of its body), asked from the last down, as a run of damaged files is
        refused too: then the messages it refused alone were refused for themselves."""
        with self._errors("looking for a message to ask instead"):
            earlier = [uid for uid in self.client.search(["UID", f"1:{below}"]) if uid < below]
        for uid in sorted(earlier, reverse=True)[:_WITNESSES]:
            try:
                self._sizes([uid])
                with self._errors("asking for another message"):
                    self._fetch_bodies([uid], [b"BODY.PEEK[]<0.1024>"])
            except RefusedError:
                continue
            return True
        return False

    def _fetch_group(self, group: list[int], max_bytes: int) -> list[Fetched]:
        items = [b"RFC822.SIZE", f"BODY.PEEK[]<0.{max_bytes}>".encode()]
        if self.gmail:
            items.append(b"X-GM-THRID")
        with self._errors("fetching messages"):
            response = self._fetch_bodies(group, items)
        # A message expunged meanwhile is simply absent.
        return [
            fetched(uid, data, int(data.get(b"RFC822.SIZE", 0)), max_bytes)
            for uid in group
            if (data := response.pop(uid, None)) is not None
        ]

    def _fetch_bodies(self, uids: list[int], items: list[bytes]) -> dict[int, dict[bytes, Any]]:
        """imapclient's `fetch`, but the answer read by `simple_fetch` where it can: its parser
        reads every character outside the bodies in Python, a sixth of a first sync's time in
        this process, which is the one fetching for the readers. imaplib's public `uid` on
        imapclient's connection; a client without imaplib underneath fetches as it always has."""
        inner = getattr(self.client, "_imap", None)
        if not isinstance(inner, imaplib.IMAP4):
            return dict(self.client.fetch(uids, items))
        typ, data = inner.uid("FETCH", _uid_set(uids), f"({b' '.join(items).decode()})")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"FETCH failed: {data[0]!r}")
        found = simple_fetch(data)
        if found is None:
            found = dict(parse_fetch_response(data, normalise_times=True, uid_is_key=True))
        return found

    def fetch_headers(self, uids: Sequence[int]) -> dict[int, bytes]:
        result: dict[int, bytes] = {}
        for start in range(0, len(uids), SIZE_QUERY_CHUNK):
            chunk = list(uids[start : start + SIZE_QUERY_CHUNK])
            try:
                result |= self._headers(chunk)
            except RefusedError:
                # Each alone: one the server will not give is left out: taken as new, its
                # fetch is refused too, and the sync decides what becomes of it.
                for uid in chunk:
                    try:
                        result |= self._headers([uid])
                    except RefusedError as error:
                        if _temporary(error):
                            raise
        return result

    def _headers(self, uids: list[int]) -> dict[int, bytes]:
        with self._errors("fetching headers"):
            response = self.client.fetch(uids, [b"BODY.PEEK[HEADER]"])
        return {uid: bytes(data.get(b"BODY[HEADER]", b"")) for uid, data in response.items()}

    def append(self, folder: str, raw: bytes, flags: Sequence[str], when: datetime) -> int | None:
        with self._errors(f"saving a message to {folder}"):
            response = self.client.append(folder, raw, flags=tuple(flags), msg_time=when)
        match = _APPENDUID.search(response if isinstance(response, bytes) else b"")
        return int(match.group(2)) if match else None

    def search_header(self, folder: str, name: str, value: str) -> dict[int, bytes]:
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            return {}  # no header field holds a line break or NUL; IMAP cannot even send one
        self.select(folder)
        with self._errors(f"searching {folder}"):
            if value.isascii():
                # Quoted, always: imapclient quotes a value only for a space, a quote or a
                # backslash, and a Message-ID may hold "(" or "{", which the server then reads
                # as syntax (BAD, at every cycle). A criteria string goes as it is.
                quoted = value.replace("\\", "\\\\").replace('"', '\\"')
                uids = self.client.search(f'HEADER {name} "{quoted}"')
            else:
                uids = self.client.search(["HEADER", name, value], charset="UTF-8")  # a literal
        return self._header_fields(sorted(uids))

    def folder_headers(self, folder: str) -> dict[int, bytes]:
        status = self.select(folder)
        if status.messages == 0:
            return {}
        with self._errors(f"listing {folder}"):
            uids = self.client.search(["ALL"])
        return self._header_fields(sorted(uids))

    def headers_of(self, folder: str, uids: Sequence[int]) -> dict[int, bytes]:
        self.select(folder)
        return self._header_fields(sorted(uids))

    def _header_fields(self, uids: list[int]) -> dict[int, bytes]:
        item = f"BODY.PEEK[HEADER.FIELDS ({' '.join(HEADER_FIELDS)})]".encode()
        result: dict[int, bytes] = {}
        for start in range(0, len(uids), SIZE_QUERY_CHUNK):
            with self._errors("fetching headers"):
                response = self.client.fetch(uids[start : start + SIZE_QUERY_CHUNK], [item])
            for uid, data in response.items():
                # The server names the item back in its own spelling; take the one BODY[...].
                values = [value for key, value in data.items() if key.startswith(b"BODY[")]
                result[uid] = bytes(values[0]) if values else b""
        return result

    def noop(self) -> None:
        with self._errors("checking the connection"):
            self.client.noop()

    def logout(self) -> None:
        try:
            with self._errors("logging out"):
                self.client.logout()
        except MailboxError as error:
            logger.debug("logout failed, closing: %s", error)
            _close_quietly(self.client)


def fetched(uid: int, data: dict[bytes, Any], size: int, limit: int) -> Fetched:
    """One message of a FETCH response, as imapclient parsed it."""
    raw = data.get(b"BODY[]<0>")
    if raw is None:
        raw = data.get(b"BODY[]", b"")
    thread = data.get(b"X-GM-THRID")
    if isinstance(thread, bytes):
        thread = thread.decode("ascii", "replace")
    return Fetched(
        uid=uid,
        raw=bytes(raw),
        size=size,
        limit=limit,
        thread=f"x-gm-thrid:{thread}" if str(thread or "").isdigit() else "",
    )


# One message of a FETCH answer in the usual shape: "12 (UID 345 RFC822.SIZE 7700 BODY[]<0>
# {7700}", the body, then ")". Items other than the body are a name and a number each.
_SIMPLE_FETCH = re.compile(rb"\d+ \(((?:[A-Za-z0-9.-]+ \d+ )*)BODY\[\](<0>)? \{\d+\}")


def simple_fetch(data: Sequence[Any]) -> dict[int, dict[bytes, Any]] | None:
    """A FETCH answer as imaplib hands it over, by UID, as imapclient's parser reads it: each
    item by its upper-cased name, numbers as ints, the body as bytes. None when any part of
    it is in another shape (items after the body, a quoted or NIL body, an unsolicited
    FETCH of flags...): imapclient's parser reads those."""
    if data == [None]:
        return {}
    found: dict[int, dict[bytes, Any]] = {}
    if len(data) % 2:
        return None
    for index in range(0, len(data), 2):
        item, end = data[index], data[index + 1]
        if type(item) is not tuple or len(item) != 2 or end != b")":
            return None
        match = _SIMPLE_FETCH.fullmatch(item[0])
        if match is None:
            return None
        words = match.group(1).upper().split()
        values = words[1::2]
        if any(value[:1] == b"0" and value != b"0" for value in values):
            return None  # imapclient keeps 0123 as bytes, not as the number
        fields: dict[bytes, Any] = {
            name: int(value) for name, value in zip(words[::2], values, strict=True)
        }
        uid = fields.pop(b"UID", None)
        if uid is None or uid in found:
            return None  # imapclient merges the answers for one UID
        fields[b"BODY[]<0>" if match.group(2) else b"BODY[]"] = item[1]
        found[uid] = fields
    return found


def _temporary(error: RefusedError) -> bool:
    return any(code in str(error).upper() for code in _TEMPORARY)


def _uid_set(uids: Sequence[int]) -> str:
    """An IMAP UID set, runs written as ranges: "1:40,42,45:99"."""
    runs: list[list[int]] = []
    for uid in sorted(uids):
        if runs and uid == runs[-1][1] + 1:
            runs[-1][1] = uid
        else:
            runs.append([uid, uid])
    return ",".join(f"{low}:{high}" if high > low else str(low) for low, high in runs)


def _groups(uids: list[int], sizes: dict[int, int], max_bytes: int) -> Iterator[list[int]]:
    group: list[int] = []
    total = 0
    for uid in uids:
        size = min(sizes[uid], max_bytes)
        if group and (len(group) >= FETCH_GROUP_MESSAGES or total + size > FETCH_GROUP_BYTES):
            yield group
            group, total = [], 0
        group.append(uid)
        total += size
    if group:
        yield group


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _folder_status(response: dict[Any, Any]) -> FolderStatus:
    def number(key: bytes) -> int:
        value = response.get(key, response.get(key.decode(), 0))
        if isinstance(value, list | tuple):
            value = value[0] if value else 0
        return int(value or 0)

    return FolderStatus(
        uidvalidity=number(b"UIDVALIDITY"),
        uidnext=number(b"UIDNEXT"),
        messages=number(b"MESSAGES") or number(b"EXISTS"),
    )
