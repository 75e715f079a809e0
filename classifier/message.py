"""The typed record of one parsed message: what the classifier and the lifecycle read.

Values from headers are decoded and have every run of white space (CR and LF included) folded
into one space, so nothing taken from a mail can break a header line we later write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from email.errors import HeaderParseError
from email.header import decode_header, make_header

# C0 controls that are not white space, and DEL: never meaningful in a header value.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")
# The most a header-derived value keeps (RFC 5322's line limit): folding a megabyte-long
# subject would stall the cycle for minutes.
MAX_HEADER_CHARS = 998
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
# What a Message-ID we write may hold: printable ASCII but the angle brackets; and at most
# this long, so that "In-Reply-To: " and the id keep within a line's 998 characters.
_WRITABLE_ID = re.compile(r"<[!-;=?-~]+>")
MAX_WRITTEN_ID = 900
# An address we write into a draft's To: a dot-atom local part (no quotes, commas or a second
# "@", which a mail client could read as another recipient) at a plain host name.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# ASCII only: the email package writes any other address as an encoded-word, which no
# client reads as an address.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})*")


def one_line(value: str) -> str:
    """Fold all white space, CR and LF included, into single spaces; drop control bytes."""
    if not value.isprintable():  # printable text has no control bytes: most values
        value = _CONTROLS.sub("", value)
    return " ".join(value.split())  # str.split's white space is the same as \s


def header_safe(value: str) -> str:
    """A value from a mail, made safe for a header we write: encoded-words decoded (so a
    CR/LF hidden in one is seen), white space folded, and no encoded-word left that a mail
    library could decode into a line break later."""
    text = value
    for _ in range(3):  # encoded-words may hide more encoded-words
        try:
            decoded = str(make_header(decode_header(text)))
        except (ValueError, LookupError, UnicodeError, HeaderParseError):
            break
        if decoded == text:
            break
        text = decoded
    return one_line(text)[:MAX_HEADER_CHARS].replace("=?", "= ?")


def safe_message_id(value: str) -> str:
    """A Message-ID for a header we write: one `<...>` token of printable ASCII, or "".
    Never one with an encoded-word in it: the email package decodes those in In-Reply-To
    and References when it writes them (before Python 3.11.10), and one hidden in another
    decodes into a line break, a header line of the sender's choosing. Threading is lost
    for such an id; no real server makes one. Nor one nextround made up for mail that had
    none (at nextround.invalid): it threads to nothing, and would show the tool in what the
    user sends."""
    found = _WRITABLE_ID.fullmatch(value.strip())
    if found is None or "=?" in value or len(value) > MAX_WRITTEN_ID:
        return ""
    if found.group(0).lower().endswith("nextround.invalid>"):
        return ""
    return found.group(0)


def plain_address(email: str) -> bool:
    """Whether `email` is one plain address we may write into a header: see _PLAIN_ADDRESS."""
    return len(email) <= 254 and "=?" not in email and _PLAIN_ADDRESS.fullmatch(email) is not None


def message_ids(value: str) -> tuple[str, ...]:
    """The `<id>` tokens of an In-Reply-To or References header, in order."""
    if not value:
        return ()
    return tuple(_MESSAGE_ID.findall(value if value.isprintable() else _CONTROLS.sub("", value)))


@dataclass(frozen=True)
class Address:
    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2].lower()

    @property
    def local_part(self) -> str:
        return self.email.rpartition("@")[0].lower()


@dataclass(frozen=True)
class Message:
    message_id: str
    subject: str = ""
    from_: Address | None = None
    reply_to: tuple[Address, ...] = ()
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    date: datetime | None = None
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    text: str = ""
    # Headers that tell mailing lists and automatic mail apart (List-*, Auto-Submitted,
    # X-Autoreply, Precedence, X-Nextround-*, X-GM-THRID), lower-cased names.
    headers: dict[str, str] = field(default_factory=dict)
    # True when only a prefix of an oversized message was fetched.
    truncated: bool = False
    # The server's conversation id (see `Fetched.thread`), or "".
    conversation: str = ""

    @property
    def auto_submitted(self) -> str | None:
        return self.headers.get("auto-submitted")

    @property
    def list_headers(self) -> dict[str, str]:
        return {name: value for name, value in self.headers.items() if name.startswith("list-")}

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Every Message-ID this message answers, nearest first."""
        seen: dict[str, None] = dict.fromkeys(self.in_reply_to)
        seen.update(dict.fromkeys(reversed(self.references)))
        return tuple(seen)

    @property
    def conversation_keys(self) -> tuple[str, ...]:
        """What ties this message to a conversation: the Message-IDs it answers and the
        server's conversation id."""
        return (*self.thread_ids, self.conversation) if self.conversation else self.thread_ids
