"""The quick reading's own parsers give what the standard library gives, whenever they give
anything: header fields (BytesHeaderParser), Content-Type parameters (email.message's
get_param) and single addresses (getaddresses). They decline what they do not read, and the
caller then uses the standard library; they must never read something differently."""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.message import Message as MimeMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP, compat32
from email.utils import getaddresses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nextround.daemon.parse import (
    _SIMPLE_ADDRESS,
    _addresses,
    _date,
    _fields,
    _Head,
    _is_file,
    _params,
    _parsed_date,
    _raw_text,
    header_end,
    header_message_id,
    parse_message,
    parse_quick,
)

# Pieces that matter to a header or address reader: separators, quotes, escapes, folding,
# 8-bit bytes, encoded-words.
_HEADER_PIECES = st.sampled_from(
    [
        "Subject", "From", "To", "X-Thing", "Content-Type", ":", ": ", " ", "\t", "\r\n",
        "\n", "\r", "\r\n ", "\n\t", "a", "Zz", "=?utf-8?q?x?=", "From ", "é", "\x00", ";",
        '"', "<", ">", "@", ",", "(", ")", "\\",
    ]
)  # fmt: skip
_NAME_PIECES = st.sampled_from(
    [
        "Ann",
        "Lee",
        " ",
        "  ",
        "\t",
        ".",
        ",",
        "'",
        "Ünï",
        "(x)",
        '"',
        "\\",
        ":",
        ";",
        "@",
        "-",
        "=?",
        "?=",
    ]
)
_LOCAL_PIECES = st.sampled_from(["a", "Bo", ".", "+tag", "-", "_", "..", '"', " ", "é", "!"])
_DOMAIN_PIECES = st.sampled_from(["example", ".", "org", "-", "x1", "..", "[1.2.3.4]", " "])


@st.composite
def _address_like(draw: st.DrawFn) -> str:
    """Mostly well-formed single addresses, with odd characters mixed in."""
    local = "".join(draw(st.lists(_LOCAL_PIECES, min_size=1, max_size=4)))
    domain = "".join(draw(st.lists(_DOMAIN_PIECES, min_size=1, max_size=4)))
    address = f"{local}@{domain}"
    name = "".join(draw(st.lists(_NAME_PIECES, max_size=6)))
    form = draw(st.sampled_from(["bare", "angle", "name", "quoted"]))
    space = draw(st.sampled_from(["", " ", "\t", "  "]))
    if form == "bare":
        return f"{space}{address}{space}"
    if form == "angle":
        return f"{space}<{address}>"
    if form == "quoted":
        return f'"{name}"{space}<{address}>'
    return f"{name}{space}<{address}>{space}"


def _standard_fields(block: bytes) -> list[tuple[str, str]]:
    parsed = BytesHeaderParser(policy=compat32).parsebytes(block)
    return [(name.lower(), _raw_text(value)) for name, value in parsed.raw_items()]


@pytest.mark.parametrize(
    "block",
    [
        b"From: A <a@example.org>\r\nSubject: Hi\r\n\r\n",
        b"Subject: folded\r\n\tacross\r\n  lines\r\nTo: b@example.org\r\n\r\n",
        b"Subject: Gr\xc3\xbc\xc3\x9fe\r\nX-Latin: caf\xe9\r\n\r\n",
        b"Subject:no space\nSubject:   second\n\n",
        b"Subject: no blank line at the end",
        b"X-Empty:\r\nX-Spaces:   \r\n\r\n",
        b"X-Latin: caf\xe9\r\n\tsuite \xe9t\xe9\r\nSubject: \xc3\xa9\r\n\r\n",  # not UTF-8
        b"Subject: mixed\r\n\tline\n ends\r\nTo: b@example.org\n\n",
    ],
)
def test_header_fields_as_the_email_package_reads_them(block: bytes) -> None:
    assert _fields(block) == _standard_fields(block)


@pytest.mark.parametrize(
    "block",
    [
        b"From someone@example.org Mon Jan  1 00:00:00 2024\r\nSubject: x\r\n\r\n",  # mbox
        b" continued before any field\r\nSubject: x\r\n\r\n",
        b"Subject: x\r\nthis line has no name\r\nTo: y\r\n\r\n",
        b"Bad Name: x\r\n\r\n",
        b": no name\r\n\r\n",
        b"Subject: x\r\nNo-Colon\r\n\r\n",
    ],
)
def test_header_blocks_it_does_not_read_are_declined(block: bytes) -> None:
    assert _fields(block) is None


@st.composite
def _header_block(draw: st.DrawFn) -> str:
    """Mostly well-formed fields (folded or not, CRLF or LF), with odd pieces mixed in."""
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from(["Subject", "From", "X-Thing", "DKIM-Signature", "A"]))
        value = "".join(draw(st.lists(_HEADER_PIECES, max_size=6)))
        end = draw(st.sampled_from(["\r\n", "\n"]))
        fold = draw(st.sampled_from(["", f"{end}\t", f"{end} ", f"{end}  more"]))
        lines.append(f"{name}:{value}{fold}{end}")
    blank = draw(st.sampled_from(["\r\n", "\n", ""]))
    return "".join(lines) + blank


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.lists(_HEADER_PIECES, max_size=30).map("".join), _header_block()))
def test_header_fields_match_the_email_package_on_generated_blocks(text: str) -> None:
    block = text.encode("utf-8")
    fields = _fields(block)
    if fields is not None:
        assert fields == _standard_fields(block)


def _standard_content_type(value: str) -> tuple[str, dict[str, str | None]]:
    message = MimeMessage()
    message["Content-Type"] = value
    names = ("boundary", "charset", "name", "format")
    return message.get_content_type(), {name: message.get_param(name) for name in names}  # type: ignore[misc]


def _quick_content_type(value: str) -> tuple[str, dict[str, str | None]] | None:
    kind, params = _Head([("content-type", value)]).content_type()
    if params is None:
        return None
    return kind, {name: params.get(name) for name in ("boundary", "charset", "name", "format")}


@pytest.mark.parametrize(
    "value",
    [
        "text/plain",
        'text/plain; charset="UTF-8"',
        "TEXT/HTML;charset=iso-8859-1;",
        'multipart/alternative;\r\n\tboundary="=_b0123"',
        "multipart/mixed; boundary=simple; charset=a; charset=b",
        "nonsense",
        "text/plain/extra; charset=utf-8",
        'text/plain; name="notes.txt"',
    ],
)
def test_content_type_parameters_as_the_email_package_reads_them(value: str) -> None:
    assert _quick_content_type(value) == _standard_content_type(value)


@pytest.mark.parametrize(
    "rest",
    [
        "; boundary*=utf-8''x",  # RFC 2231
        '; boundary="a\\"b"',  # an escape
        "; flag; boundary=x",  # a parameter without a value
        "; boundary=a b",
        '; boundary="unbalanced',
    ],
)
def test_parameter_lists_it_does_not_read_are_declined(rest: str) -> None:
    assert _params(rest) is None


def test_remembered_parameters_cannot_be_changed_for_later_mail() -> None:
    head = _Head([("content-type", "text/plain; charset=utf-8")])
    _, params = head.content_type()
    assert params is not None
    with pytest.raises(TypeError):
        params["charset"] = "koi8-r"  # type: ignore[index]
    assert _Head([("content-type", "text/plain; charset=utf-8")]).content_type()[1] == {
        "charset": "utf-8"
    }


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["text/plain", "multipart/mixed", "text/html", "x"]),
    st.lists(
        st.sampled_from(
            [";", " ", "boundary", "charset", "name", "=", '"', "abc", "=_x", "*", "\\", "\t"]
        ),
        max_size=14,
    ),
)
def test_content_type_parameters_match_on_generated_values(kind: str, pieces: list[str]) -> None:
    value = kind + "".join(pieces)
    quick = _quick_content_type(value)
    if quick is not None:
        assert quick == _standard_content_type(value)


@settings(max_examples=600, deadline=None)
@given(_address_like())
def test_a_simple_address_reads_as_getaddresses_reads_it(value: str) -> None:
    match = _SIMPLE_ADDRESS.fullmatch(value)
    if match is None:
        return
    quoted, phrase, bracketed, bare = match.groups()
    name = quoted if quoted is not None else " ".join((phrase or "").split())
    assert [(name, bracketed or bare)] == getaddresses([value])


ANN, BO = ("Ann", "ann@example.org"), ("Bo", "bo@example.org")
FORGED = "=?utf-8?q?Ann=0D=0ABcc=3A_x=40evil=2Eorg?= <ann@example.org>"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Ann Lee <Ann.Lee@Example.org>", [("Ann Lee", "ann.lee@example.org")]),
        ('"Lee, Ann" <ann@example.org>', [("Lee, Ann", "ann@example.org")]),
        ("ann@example.org", [("", "ann@example.org")]),
        # Not simple: read by getaddresses, with the same result as before.
        ("Ann <ann@example.org>, Bo <bo@example.org>", [ANN, BO]),
        (FORGED, [("Ann Bcc: x@evil.org", "ann@example.org")]),
        # An encoded-word inside a quoted string is read with it: what it decodes to (a
        # comma, an address) stays in the name, as mail clients show it.
        ('"=?utf-8?q?Lee,_Ann?=" <ann@example.org>', [("Lee, Ann", "ann@example.org")]),
        (
            '"=?utf-8?q?Ann_<x@evil.org>?=" <ann@example.org>',
            [("Ann <x@evil.org>", "ann@example.org")],
        ),
        ('"Ann" <ann@example.org>, =?utf-8?q?B?= "o" <bo@example.org>', [ANN, ("B o", BO[1])]),
        # An encoded-word that decodes to another is decoded once: the inner one stays text.
        (
            '"=?utf-8?q?Ann_=3D=3Futf-8=3Fq=3F=3D3Cx=3D40evil.org=3D3E=3F=3D?=" <ann@example.org>',
            [("Ann =?utf-8?q?=3Cx=40evil.org=3E?=", "ann@example.org")],
        ),
        ('"Ann =?utf-8?q?Lee?= <ann@example.org>', []),  # never closed: all one quoted string
        ("", []),
        ("  ", []),
    ],
)
def test_addresses(value: str, expected: list[tuple[str, str]]) -> None:
    assert [(address.name, address.email) for address in _addresses(value)] == expected


# -- found in review ---------------------------------------------------------------------------


def test_a_header_of_nothing_but_spaces_is_read_at_once() -> None:
    """The address pattern once tried every way of splitting a run of spaces: 2,000 took 9 s,
    20,000 hours. It must fail at once, in both readings."""
    raw = b"From:\r\n" + b" " * 20_000 + b"\r\nSubject: hello\r\nMessage-ID: <a@b.c>\r\n\r\nbody"
    quick = parse_quick(raw)
    assert quick is not None and quick.from_ is None and quick.subject == "hello"
    assert parse_message(raw).from_ is None
    assert _addresses("a " * 50_000) == ()


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Type: multipart/alternative; boundary=<b1>\r\n",  # get_param strips <>
        b"Content-Type: multipart/alternative\r\n",  # no boundary: nothing to split on
        b"Content-Type: multipart/alternative; boundary=zz\r\n",  # never appears
    ],
)
def test_multiparts_it_cannot_split_as_the_email_package_would_go_to_the_full_parse(
    headers: bytes,
) -> None:
    raw = (
        b"From: Ann <ann@example.org>\r\nSubject: Your application\r\n" + headers + b"\r\n"
        b"--b1\r\nContent-Type: text/plain\r\n\r\nUnfortunately we will not move forward.\r\n"
        b"--b1--\r\n"
    )
    assert parse_quick(raw) is None
    if b"<b1>" in headers:
        assert "Unfortunately" in parse_message(raw).text


@pytest.mark.parametrize(
    ("name", "value"),
    [("content-type", "name=notes.txt"), ("content-disposition", "filename=notes.txt")],
)
def test_a_parameter_in_place_of_the_type_is_declined(name: str, value: str) -> None:
    head = _Head([(name, value)])
    if name == "content-type":
        assert head.content_type()[1] is None
    else:
        assert _is_file(value)


def test_an_8bit_message_id_reads_the_same_from_the_header_block() -> None:
    raw = b"Message-ID: <caf\xc3\xa9@example.org>\r\nFrom: a@example.org\r\n\r\nhi\r\n"
    quick = parse_quick(raw)
    assert quick is not None
    assert header_message_id(raw) == quick.message_id == parse_message(raw).message_id


# -- whole messages: the quick reading stands in for the full parse -----------------------------

_WORDS = st.sampled_from(
    ["Thank", "you", "for", "applying", "Müller", "café", "señor", "—", "€", "Ünïcödé", "we",
     "regret", "\t", "  ", "<b>", "&amp;", "=", "=?", "?=", ".", "\u00a0", "日本"]
)  # fmt: skip
_TEXT = st.lists(_WORDS, max_size=60).map(" ".join)
_LINES = st.lists(_TEXT, min_size=1, max_size=8).map("\n".join)


@st.composite
def ordinary_mail(draw: st.DrawFn) -> bytes:
    """Mail as mail programs write it (the email package's generator, CRLF on the wire):
    encoded-word subjects and names, plain, HTML-only, alternative and mixed bodies in
    7bit, 8bit, quoted-printable or base64, UTF-8 or latin-1, with an attachment or not."""
    mail = EmailMessage()
    mail["From"] = Address(draw(_TEXT), "jane.doe", "acme.example")
    mail["To"] = "Alex <alex@example.org>"
    mail["Subject"] = draw(_TEXT)
    mail["Message-ID"] = f"<{draw(st.integers(0, 10**9))}@acme.example>"
    mail["Date"] = "Tue, 03 Nov 2026 10:00:00 +0100"
    for name in draw(
        st.lists(st.sampled_from(["List-Id", "Precedence", "In-Reply-To"]), unique=True)
    ):
        mail[name] = "<list.acme.example>"
    charset = draw(st.sampled_from(["utf-8", "iso-8859-1"]))
    cte = draw(st.sampled_from(["7bit", "8bit", "quoted-printable", "base64"]))
    text, html = draw(_LINES), "<p>" + draw(_LINES).replace("\n", "<br>") + "</p>"
    if charset == "iso-8859-1":
        text = text.encode("latin-1", "replace").decode("latin-1")
        html = html.encode("latin-1", "replace").decode("latin-1")
    if cte == "7bit" and not (text + html).isascii():
        cte = "8bit"
    form = draw(st.sampled_from(["plain", "html", "alternative"]))
    if form in ("plain", "alternative"):
        mail.set_content(text, charset=charset, cte=cte)
    if form == "html":
        mail.set_content(html, subtype="html", charset=charset, cte=cte)
    if form == "alternative":
        mail.add_alternative(html, subtype="html", charset=charset, cte=cte)
    if draw(st.booleans()):
        mail.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    for number, part in enumerate(mail.walk()):
        if part.is_multipart():
            part.set_boundary(f"=_b{number}")  # not the email package's random one
    return mail.as_bytes(policy=SMTP)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(ordinary_mail())
def test_ordinary_mail_is_read_quickly_and_as_the_full_parse_reads_it(raw: bytes) -> None:
    """Triage reads mail that may be job mail and fits in QUICK_PREFIX with the quick reading
    alone: it must read exactly what mail-parser reads, every field."""
    quick, full = parse_quick(raw), parse_message(raw)
    assert quick is not None  # the mail of every day: read quickly
    assert quick == full


_HEAD = (
    b"From: Jane <jane@acme.example>\r\nTo: alex@example.org\r\nSubject: Your application\r\n"
    b"Message-ID: <1@acme.example>\r\nDate: Tue, 03 Nov 2026 10:00:00 +0100\r\n"
)
_MIXED = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"


@pytest.mark.parametrize(
    "raw",
    [
        # Found in review: each was read differently from mail-parser.
        _HEAD
        + b"Content-Type: text/plain; charset=iso-2022-jp\r\n\r\n"
        + "お祈り申し上げます".encode("iso-2022-jp")
        + b"\r\n",
        _HEAD + b"Content-Type: text/plain; charset=utf-7\r\n\r\n+AGE- regret\r\n",
        _HEAD + b"Content-Type: text/plain; charset=cp037\r\n\r\nWe regret\r\n",
        _HEAD + b"Content-Type: application/plain\r\n\r\nWe regret to inform you\r\n",
        _HEAD + _MIXED + b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--bfake\r\n"
        b"Content-Type: text/plain\r\n\r\ninjected\r\n--b--\r\n",
        _HEAD
        + _MIXED
        + b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--x\r\nmore\r\n--b--\r\n",
        _HEAD
        + b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64 \r\n\r\naGVsbG8=\r\n",
        _HEAD
        + _MIXED
        + b"--b\r\nContent-Type: text/plain\r\n\r\n\r\n--b\r\nContent-Type: text/plain"
        b"\r\n\r\nhello\r\n--b--\r\n",
    ],
    ids=[
        "iso-2022-jp",
        "utf-7",
        "ebcdic",
        "application-plain",
        "prefix-delimiter",
        "closing-delimiter-and-more",
        "encoding-with-space",
        "empty-part-first",
    ],
)
def test_mail_parser_reads_these_its_own_way_so_they_are_declined_or_read_alike(
    raw: bytes,
) -> None:
    quick = parse_quick(raw)
    assert quick is None or quick == parse_message(raw)


def test_an_empty_text_part_beside_the_html_one_leaves_the_html_as_the_text() -> None:
    """A rejection with an empty text/plain alternative: its words are in the HTML one."""
    raw = _HEAD + (
        b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n--b1\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n\r\n--b1\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>We have decided to move forward with "
        b"another candidate.</p>\r\n--b1--\r\n"
    )
    quick = parse_quick(raw)
    assert quick is not None and quick == parse_message(raw)
    assert "another candidate" in quick.text


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b" ", b"\n\r"]), max_size=12))
def test_the_end_of_the_header_block_is_where_the_blank_line_pattern_finds_it(
    pieces: list[bytes],
) -> None:
    raw = b"".join(pieces)
    found = _BLANK_LINE.search(raw)
    assert header_end(raw) == (found.span() if found else None)


def test_a_long_line_without_a_colon_is_declined_in_one_pass() -> None:
    # Tried at every byte, a field pattern would backtrack over the whole line from each:
    # minutes for a 64 KB header. Anchored to line starts and possessive, it is one pass.
    assert _fields(b"x" * 65_536 + b"\r\n\r\n") is None
    assert _fields(b"Subject: a\r\n" + b"y" * 65_536 + b"\r\n\r\n") is None


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(["", "Mon, ", "Sun, ", "Xyz, "]),
    st.integers(0, 40),
    st.sampled_from(["Jan", "Feb", "Nov", "Dec", "Foo", "nov"]),
    st.one_of(st.integers(0, 9999), st.sampled_from([1970, 2026, 9999])),
    st.tuples(st.integers(0, 25), st.integers(0, 61), st.integers(0, 61)),
    st.sampled_from("+-"),
    st.tuples(st.integers(0, 30), st.integers(0, 99)),
)
def test_a_date_in_the_rfc_5322_form_reads_as_parsedate_reads_it(
    weekday: str,
    day: int,
    month: str,
    year: int,
    time: tuple[int, int, int],
    sign: str,
    zone: tuple[int, int],
) -> None:
    value = (
        f"{weekday}{day} {month} {year} {time[0]:02d}:{time[1]:02d}:{time[2]:02d} "
        f"{sign}{zone[0]:02d}{zone[1]:02d}"
    )
    read, expected = _date(value), _parsed_date(value)
    assert read == expected
    assert read is None or expected is None or read.tzinfo == expected.tzinfo


@pytest.mark.parametrize(
    "value",
    [
        "=?utf-8?q?a?= " + '"\\' * 32_000,  # quotes that never close, each escaped
        '"' + "a\\" * 50_000,
        '"=?' * 30_000,
    ],
    ids=["escaped-quotes", "backslashes", "open-words"],
)
def test_unbalanced_quotes_are_read_in_one_pass(value: str) -> None:
    # Scanned again from every quote, these took minutes (found in review): each quoted
    # string is now read once, to its end when it never closes.
    assert _addresses(value) == ()
