"""RFC 822 bytes -> `Message`, with mail-parser; HTML-only mail turned into text.

Hostile input is expected: a failure raises MessageParseError with a short reason, and the
caller records it and goes on with the next message.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from email.errors import CharsetError, HeaderParseError
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from types import MappingProxyType
from typing import Any, TypeVar

import mailparser
from mailparser.utils import decode_header_part

from nextround.classifier.message import (
    MAX_HEADER_CHARS,
    Address,
    Message,
    message_ids,
    one_line,
)
from nextround.classifier.text import MAX_TEXT_CHARS, html_to_text
from nextround.daemon.errors import MessageParseError

logger = logging.getLogger(__name__)

_KEPT_HEADERS = frozenset(
    ("auto-submitted", "x-autoreply", "x-autorespond", "precedence", "x-gm-thrid")
)
_KEPT_PREFIXES = ("list-", "x-nextround-")


def header_end(raw: bytes) -> tuple[int, int] | None:
    """Where the header block ends: the span of the first blank line (`\r?\n\r?\n`), found
    with bytes.find (a regular expression tried at every byte cost several times more)."""
    bare = raw.find(b"\n\n")
    crlf = raw.find(b"\n\r\n", 0, len(raw) if bare < 0 else bare + 2)
    if crlf >= 0:
        first, end = crlf, crlf + 3
    elif bare >= 0:
        first, end = bare, bare + 2
    else:
        return None
    return (first - 1 if first and raw[first - 1] == 13 else first), end  # 13: CR


def synthetic_message_id(raw: bytes) -> str:
    """A stable id for mail without a Message-ID, from its header block."""
    span = header_end(raw)
    header = raw[: span[0]] if span else raw[:4096]
    return f"<{hashlib.sha256(header).hexdigest()[:32]}@nextround.invalid>"


def parse_message(raw: bytes, *, truncated: bool = False) -> Message:
    if not raw.strip():
        raise MessageParseError("empty message")
    try:
        parsed = mailparser.parse_from_bytes(raw)
        headers: dict[str, Any] = parsed.headers
        raw_headers = {name.lower(): _raw_text(value) for name, value in parsed.message.raw_items()}
        text_plain: list[str] = list(parsed.text_plain)
        text_html: list[str] = list(parsed.text_html)
    except Exception as error:  # noqa: BLE001 - mail-parser may raise anything on hostile input
        raise MessageParseError(f"unparsable MIME: {type(error).__name__}: {error}") from None
    if not headers:
        raise MessageParseError("no header block")
    lowered = {str(name).lower(): value for name, value in headers.items()}
    known = ("from", "subject", "date", "message-id", "to")
    if not any(name in lowered for name in known):
        raise MessageParseError("no From, Subject, Date, Message-ID or To header")
    decoded = {name: _header_text(value) for name, value in lowered.items()}
    return _record(raw, decoded, raw_headers, _text(text_plain, text_html), truncated)


# The bytes `parse_quick` reads: headers plus the start of the body, enough for the 12,000
# characters of text the classifier looks at in all but HTML-heavy mail.
QUICK_PREFIX = 65_536
_QUICK_MIN_TEXT = 200
_QUICK_DEPTH, _QUICK_PARTS = 5, 20  # how deep and how many parts the quick walk looks
_QUICK_HEADERS = ("from", "to", "subject", "date", "message-id", "in-reply-to", "references")
_READ_HEADERS = frozenset((*_QUICK_HEADERS, "reply-to", *_KEPT_HEADERS))
_SEVEN_BIT = (bytes(range(128)), b"\x1b$B$*5'\x1b(B", b"\x1b$)C\x0e!!\x0f", b"+AGE-", b"~{<:~}")
# What may follow a boundary on its delimiter line, as the email package reads it.
_DELIMITER_END = re.compile(rb"(?:--)?[ \t]*")
# Repeated, these read the same in both: addresses from the last, the Message-ID's first id.
_LAST_OR_FIRST = frozenset(("from", "to", "reply-to", "message-id"))
_ADDRESS_HEADERS = frozenset(("from", "to", "reply-to"))
_CACHED_CHARS = 1_000
T = TypeVar("T")


def _remembered(read: Callable[[str], T]) -> Callable[[str], T]:
    """`read`, keeping what it gave for the header values seen last: senders, recipients and
    many subjects repeat from mail to mail. Short values only, so the cache stays small."""
    cached = functools.lru_cache(maxsize=1024)(read)

    @functools.wraps(read)
    def remembered(value: str) -> T:
        return cached(value) if len(value) <= _CACHED_CHARS else read(value)

    return remembered


def parse_quick(
    raw: bytes, *, truncated: bool = False, text_chars: int | None = None
) -> Message | None:
    """Headers and the start of the text, with the standard library alone: enough to decide
    whether a message deserves `parse_message` (mail-parser reads all of it, several times
    slower). None when the prefix does not show enough to decide on. With `text_chars`, the
    text stops after that many characters (HTML is read only that far)."""
    if not raw.strip():
        return None
    try:
        items, body = _split(raw[:QUICK_PREFIX], strict=True)
        plain: list[str] = []
        html: list[str] = []
        if not _text_parts(_Head(items), body, plain, html, _QUICK_DEPTH):
            return None  # a part the quick walk does not read: only a full parse can tell
    except Exception:  # noqa: BLE001 - anything odd goes to the full parser, which decides
        return None
    # As parse_message reads them: addresses from the last header of a name, everything else
    # (Message-ID above all: header_message_id must agree) from the first.
    raw_headers = dict(items)
    first = dict(reversed(items))
    used = {name for name in first if name in _READ_HEADERS or name.startswith(_KEPT_PREFIXES)}
    joined = used - _LAST_OR_FIRST  # mail-parser joins their repeats: "a, b"
    if len(joined) < sum(name in joined for name, _ in items) or not all(
        _plain_value(value) for name in used if "=?" in (value := first[name])
    ):
        return None  # mail-parser reads these its own way: let it
    if not any(name in first for name in ("from", "subject", "date", "message-id", "to")):
        return None
    # Addresses are read from the raw values (`_addresses`), so only the rest is decoded.
    decoded = {
        name: _decode_words(value)
        for name, value in first.items()
        if name in used and name not in _ADDRESS_HEADERS
    }
    text = _text(plain, html, max(text_chars, _QUICK_MIN_TEXT) if text_chars else None)
    if len(raw) > QUICK_PREFIX and len(text.strip()) < _QUICK_MIN_TEXT:
        return None  # e.g. a large style block before the words: only a full parse can tell
    return _record(raw, decoded, raw_headers, text[:text_chars] if text_chars else text, truncated)


@_remembered
def _plain_value(value: str) -> bool:
    """A header value the quick reading reads exactly as mail-parser does: encoded-words
    that decode (it drops or refuses what does not)."""
    if "=?" not in value:
        return True
    try:
        make_header(decode_header(value))
    except (ValueError, LookupError, UnicodeError, HeaderParseError, CharsetError):
        return False
    return True


def _text(plain: list[str], html: list[str], at_least: int | None = None) -> str:
    """The text/plain parts, or else the HTML ones as text (see `html_to_text`)."""
    if plain:
        return "\n\n".join(plain)
    return html_to_text("\n".join(html), at_least) if html else ""


def _record(
    raw: bytes, headers: dict[str, str], raw_headers: dict[str, str], text: str, truncated: bool
) -> Message:
    """The Message from decoded header values and the raw ones (for addresses), by lower-cased
    name, and the text: the same for the full parse and the quick reading."""
    found = message_ids(headers.get("message-id", ""))
    from_list = _addresses(raw_headers.get("from", ""))
    return Message(
        message_id=found[0] if found else synthetic_message_id(raw),
        subject=one_line(headers.get("subject", ""))[:MAX_HEADER_CHARS],
        from_=from_list[0] if from_list else None,
        reply_to=_addresses(raw_headers.get("reply-to", "")),
        to=_addresses(raw_headers.get("to", "")),
        cc=_addresses(raw_headers.get("cc", "")),
        date=_date(headers.get("date", "")),
        in_reply_to=message_ids(headers.get("in-reply-to", "")),
        references=message_ids(headers.get("references", "")),
        text=text[:MAX_TEXT_CHARS],
        headers={
            name: one_line(value)
            for name, value in headers.items()
            if name in _KEPT_HEADERS or name.startswith(_KEPT_PREFIXES)
        },
        truncated=truncated,
    )


class _Unread(Exception):
    """Something the quick reading does not read exactly as the full parse does."""


def _split(raw: bytes, *, strict: bool = False) -> tuple[list[tuple[str, str]], bytes]:
    """A part's header fields (lower-cased name, value) and its body (as bytes). `strict`:
    raise _Unread rather than read a header block as the email package would."""
    span = header_end(raw)
    if span is None and strict:
        raise _Unread("no end of the header block (or line ends the full parse reads its way)")
    header, body = (raw[: span[1]], raw[span[1] :]) if span else (raw, b"")
    items = _fields(header)
    if items is None and strict:
        raise _Unread("a header block the email package reads its own way")
    if strict and not header.isascii():
        header.decode("utf-8")  # raw 8-bit bytes not UTF-8: mail-parser drops them, we do not
    if items is None:  # something the email package reads its own way: let it
        parsed = BytesHeaderParser(policy=compat32).parsebytes(header)
        items = [(name.lower(), _raw_text(value)) for name, value in parsed.raw_items()]
    return items, body


def _fields(header: bytes) -> list[tuple[str, str]] | None:
    """The fields of a header block exactly as BytesHeaderParser(policy=compat32) and
    `_raw_text` read them, several times faster; None for a block with anything but fields
    and their continuation lines (an mbox From_ line, a line without a name, a bare CR),
    which the email package treats in ways of its own."""
    block = header.rstrip(b"\r\n")
    if not block or block[:1] in (b" ", b"\t") or b"\r" in block.replace(b"\r\n", b""):
        return None
    try:  # UTF-8 as a whole, as most blocks are (ASCII above all): decoded once, not by field
        text, by_field = block.decode("utf-8"), False
    except UnicodeDecodeError:
        text, by_field = block.decode("latin-1"), True  # byte for byte, each value decoded alone
    # Line by line (a regular expression spends many times longer testing each character):
    # a CR can only end a line here, so each line keeps its own, and a value its line breaks.
    names: list[str] = []
    values: list[str] = []
    folded: dict[int, list[str]] = {}  # a field's continuation lines, joined once at the end
    for line in text.split("\n"):
        if line[:1] in (" ", "\t"):
            folded.setdefault(len(values) - 1, []).append(line)
            continue
        name, colon, value = line.partition(":")
        if not (colon and name and name.isascii() and name.isprintable()) or " " in name:
            return None  # not a field: no name (printable ASCII, no space) before a colon
        names.append(name.lower())
        values.append(value.lstrip(" \t"))
    for index, lines in folded.items():
        values[index] = "\n".join([values[index], *lines])
    fields = [(name, value.removesuffix("\r")) for name, value in zip(names, values, strict=True)]
    if by_field:
        return [(name, _text_of(value.encode("latin-1"))) for name, value in fields]
    return fields


def _text_of(value: bytes) -> str:
    """Raw 8-bit header bytes (RFC 6532) as UTF-8, else latin-1: what `_raw_text` gives."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


class _Head:
    """A part's header fields, read the way `email.message.Message` reads the few the quick
    walk needs. A parameter list in any but the plain form (RFC 2231 names, backslash
    escapes, comments, unbalanced quotes) is None: the walk then leaves the message to the
    full parse."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self.first = dict(reversed(items))  # the first field of a name wins

    def get(self, name: str) -> str | None:
        return self.first.get(name)

    def content_type(self) -> tuple[str, Mapping[str, str] | None]:
        value = self.get("content-type")
        if value is None:
            return "text/plain", _NO_PARAMS
        kind, params = _value_and_params(value)
        return (kind if kind.count("/") == 1 else "text/plain"), params


_NO_PARAMS: Mapping[str, str] = MappingProxyType({})


@_remembered  # so the parameters are read-only: every later caller shares them
def _value_and_params(value: str) -> tuple[str, Mapping[str, str] | None]:
    """`value; name=...` (Content-Type, Content-Disposition): the value, lower-cased, and its
    parameters. A quote before the first ";" makes the email package split the parameters
    differently, and an "=" there makes it read a parameter: forms the quick walk does not
    read (None)."""
    kind, _, rest = value.partition(";")
    kind = kind.strip().lower()
    if '"' in kind or "=" in kind:
        return kind, None
    params = _params(rest)
    return kind, None if params is None else MappingProxyType(params)


_PARAM = re.compile(r'\s*([!#$%&\'+\-.0-9A-Z^_`a-z|~]+)\s*=\s*(?:"([^"\\]*)"|([^;"\s]*))\s*(?:;|$)')


def _params(text: str) -> dict[str, str] | None:
    """`name=value; name="value"` as email.message's get_param reads them (names lower-cased,
    the first of a name wins); None when the list is in any other form."""
    params: dict[str, str] = {}
    position, end = 0, len(text.rstrip())
    while position < end:
        match = _PARAM.match(text, position)
        if match is None or match.end() == position:
            return None
        name, quoted, token = match.groups()
        if "*" in name:
            return None  # RFC 2231
        if quoted is None and len(token) > 1 and token[0] == "<" and token[-1] == ">":
            return None  # get_param would strip the angle brackets
        params.setdefault(name.lower(), quoted if quoted is not None else token)
        position = match.end()
    return params


def _text_parts(headers: _Head, body: bytes, plain: list[str], html: list[str], depth: int) -> bool:
    """The text/plain and text/html parts, decoded, in order: a MIME walk that reads only
    the part headers, not every line of every part as the email package's parser does.
    False when it met something it does not read (a forwarded message, a named text part,
    a parameter list in an unusual form, too deep, too many parts)."""
    kind, params = headers.content_type()
    if params is None:
        return False
    if kind.startswith("multipart/"):
        boundary = params.get("boundary")
        if not boundary or depth <= 0 or boundary != "".join(boundary.split()):
            return False  # none, too deep, or white space the email package reads its way
        delimiter = b"\n--" + boundary.encode("latin-1", "replace")
        chunks = (b"\n" + body).split(delimiter, _QUICK_PARTS)
        if len(chunks) == 1:
            return False  # no delimiter at all: the full parse decides what the text is
        for chunk in chunks[1:]:
            line = chunk.split(b"\n", 1)[0].rstrip(b"\r")
            if not _DELIMITER_END.fullmatch(line):
                return False  # "--b1x" is not the delimiter "--b1": lines the parse reads its way
            if line.startswith(b"--"):
                return True  # the closing delimiter
            if len(chunks) > _QUICK_PARTS and chunk is chunks[-1]:
                return False  # more parts than the quick walk reads
            # The line break before a delimiter is the delimiter's: CRLF, or LF.
            chunk = chunk.removesuffix(b"\r")
            part = chunk.split(b"\n", 1)[1] if b"\n" in chunk else b""
            items, part_body = _split(part, strict=True)
            if not _text_parts(_Head(items), part_body, plain, html, depth - 1):
                return False
        return False  # no closing delimiter: where the last part ends is the full parse's call
    if kind.startswith("message/"):
        return False
    if kind not in ("text/plain", "text/html"):
        # mail-parser takes any .../plain or .../html part for text: let it.
        return kind.rpartition("/")[2] not in ("plain", "html")
    disposition = headers.get("content-disposition")
    if params.get("name") or (disposition is not None and _is_file(disposition)):
        return False  # a text file: mail-parser's choice whether it is the body
    payload = _decoded(body, headers.get("content-transfer-encoding") or "")
    charset = params.get("charset", "").lower() or "utf-8"
    if not _ascii_compatible(charset):
        return False  # ISO-2022-JP, UTF-7, EBCDIC...: mail-parser keeps 7-bit text as it is
    # Text that is not what its charset says: mail-parser has its own ways with it.
    text = payload.decode(charset)
    if text:  # mail-parser keeps no empty part (an empty text/plain beside the HTML one)
        (plain if kind == "text/plain" else html).append(text)
    return True


@functools.lru_cache(maxsize=64)
def _ascii_compatible(charset: str) -> bool:
    """A known charset that reads 7-bit bytes as ASCII: not one with shifts or escapes in
    them (ISO-2022, UTF-7, HZ), nor EBCDIC or UTF-16."""
    try:
        return all(sample.decode(charset) == sample.decode("ascii") for sample in _SEVEN_BIT)
    except (LookupError, UnicodeError, ValueError):
        return False


def _is_file(disposition: str) -> bool:
    """Content-Disposition: an attachment, or anything with a file name (or unreadable)."""
    _, params = _value_and_params(disposition)
    return params is None or bool(params.get("filename")) or "attachment" in disposition


def _decoded(body: bytes, encoding: str) -> bytes:
    if encoding != encoding.strip():
        raise _Unread("white space around the transfer encoding")  # the email package keeps it
    encoding = encoding.lower()
    if encoding == "base64":
        joined = b"".join(body.split())
        if len(joined) % 4:
            raise _Unread("base64 cut short")  # the email package gives up and keeps it raw
        return binascii.a2b_base64(joined)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(body)
    return body


def _header_text(value: Any) -> str:
    """mail-parser gives strings, lists of strings, or (name, address) pairs."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        parts = []
        for item in value:
            if isinstance(item, list | tuple) and len(item) == 2:
                name, email = item
                parts.append(f"{name} <{email}>" if name else str(email))
            else:
                parts.append(str(item))
        return ", ".join(parts)
    return str(value)


MAX_NAME_CHARS = 200


def _raw_text(value: object) -> str:
    """A raw header value as text: raw 8-bit bytes (RFC 6532) read as UTF-8, else latin-1."""
    text = str(value)
    try:
        raw = text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


_ADDR_SPEC = (
    r'[^\s"(),.:;<>@\[\\\]]+(?:\.[^\s"(),.:;<>@\[\\\]]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*'
)
_NAME_WORD = r'[^\s"(),.:;<>@\[\\\]]+'
# `addr@example.com`, `<addr@example.com>`, `Name <addr@...>` or `"Name" <addr@...>` with
# nothing in the name that getaddresses reads specially: what it gives, computed directly.
# Possessive quantifiers, and a name that cannot end in whitespace: a header of nothing but
# spaces fails at once instead of after every way of splitting them (a hang, found in review).
_SIMPLE_ADDRESS = re.compile(
    rf'\s*+(?:(?:"([^"\\\r\n]*)"|({_NAME_WORD}(?:[^\S\r\n]+{_NAME_WORD})*)?)\s*+<({_ADDR_SPEC})>'
    rf"|({_ADDR_SPEC}))\s*+"
)
_SIMPLE_ADDRESS_CHARS = 1_000


# A quoted string (to its end, if it is never closed) or an encoded-word outside one, found
# in one pass: replaced text is never read again, and no quote is scanned from twice. An
# encoded-word in a quoted string is against RFC 2047, but common ("=?utf-8?...?="
# <a@example.org>): the quoted string is read as a whole, or what the word decodes to would
# stand outside the quotes.
_QUOTED_OR_WORD = re.compile(
    r'"((?:[^"\\]++|\\.)*+)(?:"|\\?\Z)|=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=', re.DOTALL
)


def _requoted(match: re.Match[str]) -> str:
    """An encoded-word, or a quoted string with one in it, as one quoted string of what it
    decodes to (no quote or backslash left in it); any other quoted string as it is."""
    quoted, text = match.group(1), match.group(0)
    if quoted is not None:
        if "=?" not in quoted:
            return text
        text = quoted
    return '"' + one_line(_decode_words(text)).replace("\\", "").replace('"', "'") + '"'


@_remembered
def _addresses(value: str) -> tuple[Address, ...]:
    """Addresses from the raw header. Each encoded-word (with the quoted string it stands in,
    if any) becomes a quoted string first, so what it decodes to (CR/LF, commas, colons, @,
    quotes) can neither forge nor hide an address."""
    if not value or value.isspace():
        return ()  # no header (most Reply-To): getaddresses finds no address in it either
    value = value[:100_000]
    if "=?" in value:
        value = _QUOTED_OR_WORD.sub(_requoted, value)
    simple = _SIMPLE_ADDRESS.fullmatch(value) if len(value) <= _SIMPLE_ADDRESS_CHARS else None
    if simple is not None:  # one plain address, as most are: getaddresses is slow
        quoted_name, phrase, bracketed, bare = simple.groups()
        name = quoted_name if quoted_name is not None else " ".join((phrase or "").split())
        pairs = [(name, bracketed or bare)]
    else:
        pairs = getaddresses([value])
    result = []
    for name, email in pairs:
        email = one_line(email).strip("<>").lower()
        if "@" not in email or " " in email or len(email) > 320:
            continue
        display = one_line(name).strip("\"' ")[:MAX_NAME_CHARS]
        result.append(Address(name=display, email=email))
    return tuple(result)


@_remembered
def _decode_words(value: str) -> str:
    """Encoded-words decoded as mail-parser decodes those of the full parse; the value as it
    is when they cannot be (a charset name with a NUL in it, say)."""
    if "=?" not in value:
        return value  # no encoded-word: nothing to decode
    try:
        return str(decode_header_part(value))
    except (ValueError, LookupError, UnicodeError, HeaderParseError, CharsetError):
        return value


# RFC 5322's own form, as nearly all mail writes its Date: read directly, the way
# parsedate_to_datetime reads it (several times slower); any other form goes to it.
_CANONICAL_DATE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?(\d{1,2}) ([A-Z][a-z]{2}) (\d{4}) "
    r"(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def _date(value: str) -> datetime | None:
    if not value:
        return None
    canonical = _CANONICAL_DATE.fullmatch(value)
    if canonical is not None:
        day, name, year, hour, minute, second, sign, hours, minutes = canonical.groups()
        month = _MONTHS.get(name)
        offset = (int(hours) * 3600 + int(minutes) * 60) * (-1 if sign == "-" else 1)
        # Two-digit years and day-of-month swaps are parsedate's to read.
        if month is not None and int(year) >= 100 and abs(offset) < 86_400:
            try:
                local = datetime(
                    int(year), month, int(day), int(hour), int(minute), int(second),
                    tzinfo=timezone(timedelta(seconds=offset)),
                )  # fmt: skip
                return local.astimezone(UTC)
            except (ValueError, OverflowError):
                return None  # a day, hour or second out of range: parsedate's reading fails too
    return _parsed_date(value)


def _parsed_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # year 9999 west of UTC
        return None


def header_message_id(raw: bytes) -> str:
    """The Message-ID of a message (or its header block), exactly as `parse_message` would
    compute it; only the header block is read."""
    span = header_end(raw)
    header = raw[: span[1]] if span else raw[:65536]
    items, _ = _split(header)
    value = next((value for name, value in items if name == "message-id"), "")
    found = message_ids(_decode_words(value))
    return found[0] if found else synthetic_message_id(header)
