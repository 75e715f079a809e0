"""Parsing into the typed record: a table of real-world shapes, and hostile values folded."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nextround.classifier import text as text_module
from nextround.classifier.message import message_ids, one_line
from nextround.classifier.text import html_to_text
from nextround.daemon.errors import MessageParseError
from nextround.daemon.parse import (
    header_message_id,
    parse_message,
    parse_quick,
    synthetic_message_id,
)

PLAIN = b"""From: Jane Doe <Jane.Doe@Acme.com>
To: Alex <alex@example.org>
Reply-To: Recruiting <talent@acme.com>
Subject: Your application
Message-ID: <m1@acme.com>
In-Reply-To: <a@x>
References: <root@x> <a@x>
Date: Tue, 03 Nov 2026 10:00:00 +0100
List-Unsubscribe: <mailto:u@acme.com>
Auto-Submitted: auto-generated
X-Nextround-Application: 7 request
Content-Type: text/plain; charset=utf-8

Thank you for applying.
"""

HTML_ONLY = b"""From: hr@acme.com
Subject: =?utf-8?q?Ihre_Bewerbung_=E2=80=93_Absage?=
Message-ID: <m2@acme.com>
Content-Type: text/html; charset=utf-8

<html><head><style>p{color:red}</style><script>alert(1)</script></head>
<body><p>Sehr geehrte Frau M&uuml;ller,</p><p>leider <b>nicht</b>.</p></body></html>
"""

INJECTION = (
    b"From: =?utf-8?q?Evil=0D=0ABcc:_x@evil.org?= <hr@acme.com>\r\n"
    b"Subject: =?utf-8?b?"
    + __import__("base64").b64encode(b"Hi\r\nBcc: victim@evil.org")
    + b"?=\r\nMessage-ID: <m3@acme.com>\r\n\r\nbody\r\n"
)


def test_plain_message_fields() -> None:
    message = parse_message(PLAIN)
    assert message.message_id == "<m1@acme.com>"
    assert message.from_ is not None
    assert message.from_.email == "jane.doe@acme.com"
    assert message.from_.name == "Jane Doe"
    assert [str(address) for address in message.reply_to] == ["Recruiting <talent@acme.com>"]
    assert [address.email for address in message.to] == ["alex@example.org"]
    assert message.subject == "Your application"
    assert message.date == datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
    assert message.in_reply_to == ("<a@x>",)
    assert message.references == ("<root@x>", "<a@x>")
    assert message.thread_ids == ("<a@x>", "<root@x>")
    assert message.text.strip() == "Thank you for applying."
    assert message.auto_submitted == "auto-generated"
    assert message.list_headers == {"list-unsubscribe": "<mailto:u@acme.com>"}
    assert message.headers["x-nextround-application"] == "7 request"


def test_html_only_becomes_text() -> None:
    message = parse_message(HTML_ONLY)
    assert message.subject == "Ihre Bewerbung \u2013 Absage"
    assert "Sehr geehrte Frau Müller," in message.text
    assert "leider nicht ." in message.text or "leider nicht." in message.text
    assert "alert" not in message.text
    assert "color" not in message.text


def test_cr_lf_in_encoded_words_never_survive() -> None:
    message = parse_message(INJECTION)
    assert "\r" not in message.subject and "\n" not in message.subject
    assert message.subject == "Hi Bcc: victim@evil.org"
    assert message.from_ is not None
    assert "\n" not in message.from_.name and "\r" not in message.from_.name


def test_missing_message_id_gets_a_stable_synthetic_one() -> None:
    raw = b"From: a@b.c\nSubject: hello\n\nbody\n"
    first = parse_message(raw).message_id
    assert first.endswith("@nextround.invalid>")
    assert parse_message(raw).message_id == first
    assert synthetic_message_id(raw) == first
    assert header_message_id(b"From: a@b.c\nSubject: hello\n\n") == first


def test_header_message_id_matches_the_parser() -> None:
    header = PLAIN.split(b"\n\n", 1)[0] + b"\n\n"
    assert header_message_id(header) == parse_message(PLAIN).message_id


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty message"),
        (b"   \r\n  ", "empty message"),
        (b"just some text without any header at all\n", "no"),
    ],
)
def test_unparsable(raw: bytes, reason: str) -> None:
    with pytest.raises(MessageParseError, match=reason):
        parse_message(raw)


@pytest.mark.parametrize(
    ("raw", "check"),
    [
        # A declared boundary that never appears.
        (
            b"From: a@b.c\nMessage-ID: <b@x>\nContent-Type: multipart/mixed; boundary=zzz\n\nhi\n",
            "<b@x>",
        ),
        # An unknown charset.
        (
            b"From: a@b.c\nMessage-ID: <c@x>\nContent-Type: text/plain; charset=x-nope\n\nhi\n",
            "<c@x>",
        ),
        # Invalid base64.
        (
            b"From: a@b.c\nMessage-ID: <d@x>\nContent-Transfer-Encoding: base64\n\n!!!not base64\n",
            "<d@x>",
        ),
        # Raw 8-bit bytes in a header.
        (b"From: J\xf6rg <j@x.de>\nMessage-ID: <e@x>\nSubject: Gr\xfc\xdfe\n\nhi\n", "<e@x>"),
        # An encoded-word whose charset name is not a charset name.
        (
            b"From: =?x\xdd?q?abc?= <a@b.c>\nSubject: =?x\xdd?q?a?=\nMessage-ID: <cs@x>\n\nhi\n",
            "<cs@x>",
        ),
    ],
)
def test_broken_mail_still_parses(raw: bytes, check: str) -> None:
    assert parse_message(raw).message_id == check


def test_unparseable_date_is_none() -> None:
    assert parse_message(b"From: a@b.c\nDate: yesterday-ish\n\nx").date is None


def test_html_to_text_blocks() -> None:
    text = html_to_text("<div>a</div><div>b<br>c</div>")
    assert [line for line in text.splitlines() if line] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>a<br>b<br/>c</p>", "a\nb\nc"),
        ("<meta charset='iso-8859-1'><p>caf\u00e9</p>", "caf\u00e9"),  # the str is already text
        ("<title>T</title><style>p{}</style><script>a<b</script><p>body", "body"),
        ("<!--[if mso]>hidden<![endif]-->shown", "shown"),
        ("a &amp; b&nbsp;&#233; &bogus;", "a & b \u00e9 &bogus;"),  # nbsp is a space
        ("<p>Hi</p><![<![<![ x", "Hi"),  # html.parser raised AssertionError here
        ("<p>Hi</p>" + "<!--" * 1_000, "Hi"),  # and took quadratic time here
        ("<p>Hi</p>" + "</" * 1_000 + " more", "Hi"),
        ("Initech</br>After careful consideration", "Initech\nAfter careful consideration"),
        ("a</BR >b</p>c", "a\nb\nc"),  # HTML5: "</br>" is <br>, a stray "</p>" a paragraph
        ("<p>a<b>x</p>y", "ax\ny"),
        ("<textarea>a</p>b</textarea>", "a</p>b"),
        ("lone \udcff surrogate", "lone \ufffd\ufffd\ufffd surrogate"),
        ("", ""),
        ("<", "<"),
    ],
)
def test_html_to_text_reads_html_as_browsers_do(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize("unfinished", ["<script>", "<textarea>", "<plaintext>", "<!--", "<p"])
def test_html_read_in_part_leaves_nothing_for_the_next(unfinished: str) -> None:
    html = "<p>" + "word " * 2_000 + unfinished + "x" * 5_000 + "<p>more"
    assert html_to_text(html, at_least=10).startswith("word word")
    assert html_to_text("<p>after</p>") == "after"  # the parser is reused: it starts afresh


def test_html_is_read_by_threads_that_end_once_they_have_read_enough(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # libxml2 keeps every name a thread's parser meets while the thread lives: past
    # MAX_FED characters, a thread hands its HTML to a parsing thread that ends in its turn.
    monkeypatch.setattr(text_module, "MAX_FED", 500)
    monkeypatch.setattr(text_module, "_parsing", None)  # as if no thread had handed any over
    started: list[text_module._Parsing] = []

    class Counted(text_module._Parsing):
        def __init__(self) -> None:
            super().__init__()
            started.append(self)

    monkeypatch.setattr(text_module, "_Parsing", Counted)
    texts = []

    def read() -> None:  # in a thread of its own: a reader of its own, fresh
        for number in range(6):
            tags = [f"x{number}n{i}" for i in range(40)]
            names = "".join(f"<{tag} a{tag}=1>w{i}</{tag}>" for i, tag in enumerate(tags))
            texts.append(html_to_text(f"<p>mail {number}</p>{names}"))

    worker = threading.Thread(target=read)
    worker.start()
    worker.join()
    assert [text.split()[:2] for text in texts] == [["mail", str(n)] for n in range(6)]
    assert all(text.endswith("w38w39") for text in texts)
    # The first document took the thread's own parser past 500 characters; each later one
    # was read in a parsing thread, which then ended.
    assert len(started) == 5
    assert not any(parsing.thread.is_alive() for parsing in started)


def test_a_document_that_fails_in_the_parsing_thread_leaves_it_usable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(text_module, "MAX_FED", 50)
    monkeypatch.setattr(text_module, "_parsing", None)
    real = text_module._Reader.text
    outcomes: list[str] = []

    def failing(reader: text_module._Reader, html: str, at_least: int | None) -> str:
        if "fail" in html:
            raise MemoryError("as if the machine ran out")
        return real(reader, html, at_least)

    monkeypatch.setattr(text_module._Reader, "text", failing)

    def read() -> None:
        html_to_text("".join(f"<t{i} a{i}=1>w</t{i}>" for i in range(10)))  # spends the reader
        for html in ("<p>fail</p>", "<p>after</p>", "<p>and after</p>"):
            try:
                outcomes.append(html_to_text(html))
            except MemoryError:
                outcomes.append("raised")

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "html_to_text hung after a failure in the parsing thread"
    assert outcomes == ["raised", "after", "and after"]


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<b>" * 2_000 + "deep</b> words" + "</i>" * 100 + " &amp; more", "deep words & more"),
        ("<div>" * 600 + "</x>" * 600 + "<p>after", "after"),
        (  # the new document starts after the script, not inside it
            "<span>" * 520
            + "<script>var s='"
            + "x" * 2_100
            + "';document.write('<title>'+t+'</'+'title>')</script><p>We regret to inform you",
            "We regret to inform you",
        ),
    ],
)
def test_html_too_deep_to_parse_keeps_its_words(html: str, text: str) -> None:
    # libxml2 takes quadratic time over end tags this deep: past MAX_DEPTH, the rest is
    # parsed as a document of its own.
    assert html_to_text(html) == text


_HTML_PIECES = st.sampled_from(
    ["<p>", "</p>", "<br>", "<div>", "</div>", "<style>", "</style>", "<b>", "</b>", "&amp;",
     "&nbsp;", "&#233;", "&", "<", ">", " ", "  ", "\n", "\r\n", "\n\n\n", "\t", "word",
     "Wort", "café", "<!-- c -->", "<a href='x'>", "</a>", "<script>x<y</script>", "\u2028",
     "&#" + "0" * 40 + "65;", "&#x" + "0" * 40 + "41;", "&" + "a" * 40 + ";"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_HTML_PIECES, max_size=400), st.integers(1, 100))
def test_html_read_until_enough_text_is_a_prefix_of_the_whole(
    pieces: list[str], at_least: int
) -> None:
    html = "".join(pieces)
    with mock.patch.object(text_module, "_CHUNK", 16):  # small steps, so most HTML takes several
        whole, start = html_to_text(html), html_to_text(html, at_least=at_least)
    assert whole.startswith(start)
    assert len(start) >= min(at_least, len(whole))


def test_long_html_is_read_only_until_enough_text() -> None:
    html = "<p>Thank you for applying.</p>" * 20_000
    start = html_to_text(html, at_least=600)
    assert 600 <= len(start) < 10_000 and html_to_text(html).startswith(start)


MULTIPART = b"""From: "Lee, Sam" <sam.lee@globex.example>
To: alex@example.org
Subject: =?iso-8859-1?q?R=FCckmeldung?= zu Ihrer Bewerbung
Message-ID: <m4@globex.example>
Date: Wed, 04 Nov 2026 08:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Leider m=FCssen wir Ihnen mitteilen, dass wir uns anders entschieden haben.
--b1
Content-Type: text/html; charset=utf-8

<p>Leider m&uuml;ssen wir Ihnen mitteilen ...</p>
--b1--
"""

ATTACHED = b"""From: hr@initech.example
Subject: Offer letter
Message-ID: <m5@initech.example>
Content-Type: multipart/mixed; boundary="b2"

--b2
Content-Type: text/plain; charset=utf-8

Please find the offer attached.
--b2
Content-Type: text/plain; name="terms.txt"
Content-Disposition: attachment; filename="terms.txt"

Not part of the body.
--b2--
"""


NESTED = (
    b"From: Talent <talent@hooli.example>\r\nSubject: Update\r\nMessage-ID: <m6@hooli.example>\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\npreamble\r\n--outer\r\n'
    b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n--inner\r\n'
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + __import__("base64").encodebytes("Wir haben uns für jemand anderen entschieden.".encode())
    + b"\r\n--inner\r\nContent-Type: text/html\r\n\r\n<p>html twin</p>\r\n--inner--\r\n"
    b"--outer\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"JVBERi0xLjQK\r\n--outer--\r\n"
)


RAW_UTF8 = (
    "From: Jürgen Müller <j.mueller@acme.example>\r\nSubject: Ihre Bewerbung: Rückmeldung\r\n"
    "Message-ID: <first@acme.example>\r\nMessage-ID: <second@acme.example>\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\nLeider nein.\r\n"
).encode()


@pytest.mark.parametrize(
    "raw",
    [PLAIN, HTML_ONLY, INJECTION, MULTIPART, NESTED, RAW_UTF8],
    ids=["plain", "html-only", "injection", "multipart", "nested-base64", "raw-utf8-duplicates"],
)
def test_quick_reading_agrees_with_the_full_parse(raw: bytes) -> None:
    """Triage decides on `parse_quick`; what it reads must be what the full parse reads."""
    quick, full = parse_quick(raw), parse_message(raw)
    assert quick is not None
    for name in ("message_id", "subject", "from_", "reply_to", "to", "date", "in_reply_to"):
        assert getattr(quick, name) == getattr(full, name), name
    assert quick.references == full.references
    assert quick.headers == full.headers
    assert " ".join(quick.text.split()) == " ".join(full.text.split())
    assert "\r" not in quick.subject and "\n" not in quick.subject
    assert quick.message_id == header_message_id(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"just some text without any header at all\n",
        # Words only after a style block longer than the prefix: only a full parse can tell.
        b"From: a@b.c\nMessage-ID: <s@x>\nContent-Type: text/html\n\n<style>"
        + b"p{}" * 30_000
        + b"</style><p>We regret to inform you</p>",
        # Parts the quick walk does not read: a named text part, a forwarded message, an RFC
        # 2231 boundary, nesting deeper than it goes.
        ATTACHED,
        b"From: a@b.c\nMessage-ID: <f@x>\nContent-Type: multipart/mixed; boundary=z\n\n--z\n"
        b"Content-Type: message/rfc822\n\nFrom: hr@x\nSubject: Absage\n\nLeider nein.\n--z--\n",
        b"From: a@b.c\nMessage-ID: <g@x>\nContent-Type: multipart/alternative; boundary*=''b1"
        b"\n\n--b1\nContent-Type: text/plain\n\nWe regret to inform you.\n--b1--\n",
        b"From: a@b.c\nMessage-ID: <h@x>\n"
        + b"".join(
            b"Content-Type: multipart/mixed; boundary=d%d\n\n--d%d\n" % (n, n) for n in range(8)
        )
        + b"Content-Type: text/plain\n\ndeep\n",
    ],
    ids=[
        "empty",
        "no-headers",
        "style-block",
        "named-text-part",
        "forwarded-message",
        "rfc2231-boundary",
        "too-deep",
    ],
)
def test_quick_reading_declines_what_it_cannot_judge(raw: bytes) -> None:
    assert parse_quick(raw) is None


@pytest.mark.parametrize("name", ["From", "Message-ID", "Subject"])
def test_an_encoded_word_with_a_nul_in_its_charset_is_refused_or_read(name: str) -> None:
    """Found in review: it raised a bare ValueError out of the cycle, every cycle."""
    raw = (
        b"From: a@b.example\r\nSubject: hi\r\nMessage-ID: <x@y>\r\n".replace(
            name.encode() + b": ", name.encode() + b": =?a\x00b?Q?x?= ", 1
        )
        + b"\r\nbody\r\n"
    )
    assert header_message_id(raw)
    try:
        message = parse_message(raw)
    except MessageParseError:
        return
    assert message.message_id
    quick = parse_quick(raw)
    assert quick is None or quick == message


# Every kind of character one_line treats apart: white space (ASCII and not), control bytes,
# characters that are neither (a zero-width space, a BOM), ordinary ones.
_LINE_CHARS = st.sampled_from(
    [chr(code) for code in range(0x21)]
    + ["\x7f", "\x85", "\xa0", "\u2028", "\u3000", "\u200b", "\ufeff", "a", "\u00e9", "<", ">"]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_LINE_CHARS, max_size=30).map("".join))
def test_one_line_and_message_ids_read_as_their_regular_expressions(value: str) -> None:
    without_controls = re.sub(r"[\x00-\x08\x0e-\x1b\x7f]", "", value)
    assert one_line(value) == re.sub(r"\s+", " ", without_controls).strip()
    assert message_ids(value) == tuple(re.findall(r"<[^<>\s]+>", without_controls))
