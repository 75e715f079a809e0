"""The seam to the mail server: a small protocol of our own, and folder discovery.

The core talks to a `Mailbox`; `imap.py` implements it with imapclient. Nothing outside that
adapter imports imapclient.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from nextround.daemon.errors import FolderError


@dataclass(frozen=True)
class FolderInfo:
    name: str
    flags: frozenset[str]  # as the server sent them, e.g. {"\\Drafts", "\\HasNoChildren"}


@dataclass(frozen=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int
    messages: int


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes
    size: int  # RFC822.SIZE as the server reports it (some servers only approximate it)
    limit: int  # the most bytes that were asked for
    # The server's own id for the conversation, when it keeps one (Gmail's X-GM-THRID, as
    # "x-gm-thrid:<n>"): replies are matched by it too, whatever their headers say.
    thread: str = ""
    # Why the server would not give this message (it answered NO when asked for it alone);
    # empty when it did. Unwitnessed: it gave no other message either, so the trouble may be
    # the server's, not this message's.
    refused: str = ""
    witnessed: bool = True

    @property
    def truncated(self) -> bool:
        return len(self.raw) >= self.limit


class Mailbox(Protocol):
    """What nextround needs from a mail server. UIDs always refer to the selected folder."""

    def list_folders(self) -> list[FolderInfo]: ...

    def status(self, folder: str) -> FolderStatus:
        """UIDVALIDITY and UIDNEXT without selecting: one cheap round trip."""
        ...

    def select(self, folder: str) -> FolderStatus:
        """Select read-only (EXAMINE): we never change flags on the user's mail."""
        ...

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs greater than `last_uid`, ascending (the `*` quirk already filtered out)."""
        ...

    def uids_since(self, day: date) -> list[int]:
        """UIDs of messages that arrived on or after `day`, ascending."""
        ...

    def fetch(self, uids: Sequence[int], max_bytes: int) -> Iterator[Fetched]:
        """Whole messages, each cut to `max_bytes`, in UID order; memory stays bounded."""
        ...

    def fetch_headers(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The header block of each message (for re-identifying after a UIDVALIDITY change)."""
        ...

    def append(self, folder: str, raw: bytes, flags: Sequence[str], when: datetime) -> int | None:
        """Store a message; return its UID when the server says (APPENDUID)."""
        ...

    def search_header(self, folder: str, name: str, value: str) -> dict[int, bytes]:
        """Messages in `folder` whose header `name` contains `value` (case-insensitive
        substring, as IMAP SEARCH defines it), with their header block of `HEADER_FIELDS`."""
        ...

    def folder_headers(self, folder: str) -> dict[int, bytes]:
        """`HEADER_FIELDS` of every message in `folder` (for Drafts, which stays small)."""
        ...

    def headers_of(self, folder: str, uids: Sequence[int]) -> dict[int, bytes]:
        """`HEADER_FIELDS` of these messages of `folder`; one no longer there is absent."""
        ...

    def noop(self) -> None: ...

    def logout(self) -> None: ...


# What nextround needs to recognise its own drafts and their sent copies.
HEADER_FIELDS = (
    "MESSAGE-ID",
    "IN-REPLY-TO",
    "REFERENCES",
    "X-NEXTROUND-APPLICATION",
    "TO",
    "SUBJECT",
    "DATE",
)


# Names clients and providers use when the server does not announce SPECIAL-USE (RFC 6154).
COMMON_NAMES = {
    "drafts": ("Drafts", "INBOX.Drafts", "[Gmail]/Drafts", "Draft", "Entwürfe"),
    "sent": (
        "Sent",
        "INBOX.Sent",
        "Sent Items",
        "Sent Messages",
        "[Gmail]/Sent Mail",
        "Sent Mail",
        "Gesendet",
    ),
}
SPECIAL_USE_FLAGS = {"drafts": "\\Drafts", "sent": "\\Sent"}


@dataclass(frozen=True)
class FolderChoice:
    name: str
    how: str  # "config", "special-use" or "common name"


def choose_folder(role: str, folders: Iterable[FolderInfo], override: str) -> FolderChoice:
    """The config override wins, then the SPECIAL-USE flag, then a common name."""
    return choose_folders(role, folders, override)[0]


def choose_folders(role: str, folders: Iterable[FolderInfo], override: str) -> list[FolderChoice]:
    """As `choose_folder`, with every folder the SPECIAL-USE flag marks: a server may mark
    two (Dovecot's own example marks "Sent" and "Sent Messages" \\Sent, and a phone and a
    desktop client may each keep their copies in one). The common name comes first, then
    by name: the server's LIST order may change from one session to the next."""
    listed = list(folders)
    names = {folder.name for folder in listed}
    if override:
        if override not in names:
            raise FolderError(f"[imap] {role} = {override!r}: no such folder on the server")
        return [FolderChoice(override, "config")]
    flag = SPECIAL_USE_FLAGS[role].lower()
    flagged = [folder.name for folder in listed if flag in {f.lower() for f in folder.flags}]
    if flagged:
        common = {name.lower(): rank for rank, name in enumerate(COMMON_NAMES[role])}
        flagged.sort(key=lambda name: (common.get(name.lower(), len(common)), name))
        return [FolderChoice(name, "special-use") for name in flagged]
    by_lower = {folder.name.lower(): folder.name for folder in listed}
    for candidate in COMMON_NAMES[role]:
        if candidate.lower() in by_lower:
            return [FolderChoice(by_lower[candidate.lower()], "common name")]
    raise FolderError(
        f"no {role} folder: none is marked {SPECIAL_USE_FLAGS[role]} and none has a common "
        f"name; set [imap] {role} to the folder's name"
    )
