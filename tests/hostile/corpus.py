"""A corpus of hostile and broken mail, generated in code: each case is raw RFC 822 bytes.

Nothing large is committed: the multi-megabyte cases are built when a test asks for them
(`Case.build()`), and every case is deterministic (same bytes on every run).

`KNOWN_BUGS` names the defects this corpus found in nextround (see the report in the test
module); a case that trips one says so in `Case.bugs`, per stage ("parse" or "draft"), and
its test is a strict xfail until the bug is fixed.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

CRLF = b"\r\n"
MB = 1_000_000

# Template syntax a hostile sender may put anywhere; rendered, each would betray itself.
TEMPLATE_MARKERS = (
    "{{ 7*7 }}",
    "{% for x in range(3) %}loop{% endfor %}",
    "{{ config }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ identity.email }}",
    "{# comment #}",
)
# What evaluated template syntax would have produced (checked only when the mail itself
# does not contain the text already).
EVALUATION_TRACES = ("49", "looplooploop", "<class", "<module", "Undefined", "jinja2")

# Defects this corpus found in nextround, by name; empty since they were fixed (the names and
# descriptions are in the git history and CHANGELOG). A case that trips a new one declares it
# in `Case.bugs` and its test is a strict xfail until the fix lands.
KNOWN_BUGS: dict[str, str] = {}


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]
    # Stage ("parse" or "draft") -> KNOWN_BUGS key, when the case trips a known defect.
    bugs: Mapping[str, str] = field(default_factory=dict)
    # Tens of megabytes when built: generated at test time only.
    big: bool = False
    # Millions of small allocations: tracemalloc would slow the parse 10-40x, so its memory
    # is measured as the growth of the process's peak RSS instead.
    heavy: bool = False


REJECTION_BODY = (
    "Dear Alex,\r\n\r\nThank you for taking the time to interview for the Backend Engineer "
    "position at Acme. After careful consideration we have decided to move forward with "
    "another candidate. We wish you the best in your search.\r\n\r\nJane Recruiter\r\n"
    "Talent Acquisition, Acme\r\n"
)


def message_id(name: str) -> str:
    return f"<{name}@hostile.test>"


def headers(
    name: str,
    *,
    subject: bytes = b"Your application",
    sender: bytes = b"Jane Recruiter <jane@acme.example>",
    extra: Iterable[bytes] = (),
    omit: Iterable[bytes] = (),
) -> list[bytes]:
    """A plausible header block (as lines without line ends) for case `name`."""
    skipped = {header.lower() for header in omit}
    lines = [
        b"From: " + sender,
        b"To: Alex Doe <alex@example.org>",
        b"Subject: " + subject,
        b"Date: Tue, 03 Nov 2026 10:00:00 +0100",
        b"Message-ID: " + message_id(name).encode(),
        b"MIME-Version: 1.0",
    ]
    kept = [line for line in lines if line.split(b":", 1)[0].lower() not in skipped]
    return [*kept, *extra]


def assemble(head: Iterable[bytes], body: bytes, eol: bytes = CRLF) -> bytes:
    return eol.join(head) + eol + eol + body


def simple(
    name: str,
    body: bytes = REJECTION_BODY.encode(),
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    encoding: bytes | None = None,
    subject: bytes = b"Your application",
    sender: bytes = b"Jane Recruiter <jane@acme.example>",
) -> bytes:
    extra = [b"Content-Type: " + content_type]
    if encoding is not None:
        extra.append(b"Content-Transfer-Encoding: " + encoding)
    return assemble(headers(name, extra=extra, subject=subject, sender=sender), body)


def html(name: str, body: bytes) -> bytes:
    """`simple`, as text/html."""
    return simple(name, body, content_type=b"text/html")


def multipart(name: str, boundary: bytes, parts: Iterable[bytes], close: bool = True) -> bytes:
    head = headers(name, extra=[b'Content-Type: multipart/mixed; boundary="' + boundary + b'"'])
    body = b"This is a multi-part message in MIME format.\r\n"
    for part in parts:
        body += b"--" + boundary + CRLF + part + CRLF
    if close:
        body += b"--" + boundary + b"--" + CRLF
    return assemble(head, body)


def part(content_type: bytes, body: bytes, encoding: bytes | None = None) -> bytes:
    lines = [b"Content-Type: " + content_type]
    if encoding is not None:
        lines.append(b"Content-Transfer-Encoding: " + encoding)
    return CRLF.join(lines) + CRLF + CRLF + body


def q_word(text: str, charset: str = "utf-8") -> bytes:
    """An RFC 2047 Q encoded-word for any text, CR and LF included."""
    encoded = "".join(
        "_"
        if byte == 0x20
        else chr(byte)
        if chr(byte).isascii() and chr(byte).isalnum()
        else f"={byte:02X}"
        for byte in text.encode(charset)
    )
    return f"=?{charset}?q?{encoded}?=".encode("ascii")


def b_word(text: str, charset: str = "utf-8") -> bytes:
    return b"=?" + charset.encode() + b"?b?" + base64.b64encode(text.encode(charset)) + b"?="


def injection_rejection(name: str) -> bytes:
    """A real rejection whose Subject and sender name hide CR/LF in encoded-words and whose
    body carries template syntax: the case the integration test drafts for."""
    subject = b"Your application at Acme " + q_word("\r\nBcc: x@evil.example\r\nX-Evil: 1")
    sender = q_word("Jane\r\nBcc: victim@evil.example") + b" <jane@acme.example>"
    body = REJECTION_BODY.replace(
        "Jane Recruiter", "Jane Recruiter {{ 7*7 }} {% for x in range(3) %}loop{% endfor %}"
    )
    return simple(name, body.encode(), subject=subject, sender=sender)


# -- builders for the cases --------------------------------------------------------------------


def _nested_multiparts(name: str, depth: int) -> bytes:
    head = headers(name, extra=[b"Content-Type: multipart/mixed; boundary=b0"])
    body = b""
    for level in range(1, depth):
        body += b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (
            level - 1,
            level,
        )
    body += b"--b%d\r\nContent-Type: text/plain\r\n\r\n" % (depth - 1) + REJECTION_BODY.encode()
    for level in range(depth - 1, -1, -1):
        body += b"\r\n--b%d--\r\n" % level
    return assemble(head, body)


def _nested_rfc822(name: str, depth: int) -> bytes:
    inner = b"From: deep@acme.example\r\nSubject: deep\r\n\r\nThe innermost message.\r\n"
    for level in range(depth):
        inner = (
            b"From: level%d@acme.example\r\nSubject: level %d\r\n"
            b"Content-Type: message/rfc822\r\n\r\n" % (level, level) + inner
        )
    return simple(name, inner, content_type=b"message/rfc822")


def _attachment(name: str, size: int) -> bytes:
    payload = base64.encodebytes((bytes(range(256)) * (size // 256 + 1))[:size])
    return multipart(
        name,
        b"att",
        [
            part(b"text/plain; charset=utf-8", REJECTION_BODY.encode()),
            part(
                b'application/pdf; name="portfolio.pdf"',
                payload,
                b"base64",
            ).replace(
                b"\r\n\r\n",
                b'\r\nContent-Disposition: attachment; filename="portfolio.pdf"\r\n\r\n',
                1,
            ),
        ],
    )


def body_with(eol: bytes) -> bytes:
    return REJECTION_BODY.encode().replace(CRLF, eol)


def _with_raw_header(name: str, line: bytes, omit: Iterable[bytes] = ()) -> bytes:
    head = headers(name, omit=omit, extra=[line, b"Content-Type: text/plain; charset=utf-8"])
    return assemble(head, REJECTION_BODY.encode())


def _template_everywhere(name: str) -> bytes:
    markers = " ".join(TEMPLATE_MARKERS).encode()
    body = (REJECTION_BODY + "\r\n" + "\r\n".join(TEMPLATE_MARKERS) + "\r\n").encode()
    return simple(
        name,
        body,
        subject=b"Backend Engineer " + markers,
        sender=b'"{{ 7*7 }} {{ config }}" <jane@acme.example>',
    )


def _cases() -> list[Case]:
    cases: list[Case] = []

    def add(
        name: str,
        build: Callable[[str], bytes],
        bugs: Mapping[str, str] | None = None,
        big: bool = False,
        heavy: bool = False,
    ) -> None:
        cases.append(Case(name, lambda: build(name), dict(bugs or {}), big, heavy or big))

    # -- malformed MIME ------------------------------------------------------------------
    add(
        "boundary-never-appears",
        lambda n: assemble(
            headers(n, extra=[b'Content-Type: multipart/mixed; boundary="NEVER"']),
            b"--SOMETHING-ELSE\r\nContent-Type: text/plain\r\n\r\n" + REJECTION_BODY.encode(),
        ),
    )
    add(
        "nested-boundaries-wrong",
        lambda n: assemble(
            headers(n, extra=[b'Content-Type: multipart/mixed; boundary="outer"']),
            b'--outer\r\nContent-Type: multipart/alternative; boundary="inner"\r\n\r\n'
            b"--outer\r\nContent-Type: text/plain\r\n\r\nclosed by the outer boundary\r\n"
            b"--inner\r\nContent-Type: text/html\r\n\r\n<p>after the outer part</p>\r\n"
            b"--inner--\r\n--inner--\r\n--outer--\r\n--outer--\r\n",
        ),
    )
    add(
        "boundary-is-prefix-of-inner",
        lambda n: assemble(
            headers(n, extra=[b"Content-Type: multipart/mixed; boundary=a"]),
            b"--a\r\nContent-Type: multipart/mixed; boundary=aa\r\n\r\n--aa\r\n"
            b"Content-Type: text/plain\r\n\r\nwhich one?\r\n--a--\r\n--aa--\r\n",
        ),
    )
    add(
        "multipart-without-boundary",
        lambda n: simple(n, REJECTION_BODY.encode(), content_type=b"multipart/mixed"),
    )
    add(
        "multipart-empty-boundary",
        lambda n: simple(n, b"--\r\n\r\nbody\r\n----\r\n", content_type=b'multipart/mixed; b=""'),
    )
    add(
        "multipart-unterminated",
        lambda n: multipart(
            n, b"u", [part(b"text/plain", REJECTION_BODY.encode()), b"Content-Type: text/"], False
        ),
    )
    add(
        "content-type-garbage",
        lambda n: simple(n, REJECTION_BODY.encode(), content_type=b';;;/;="\x7f; charset=='),
    )
    add(
        "multipart-nested-100",
        lambda n: _nested_multiparts(n, 100),
    )
    add(
        "multipart-nested-1000",
        lambda n: _nested_multiparts(n, 1000),
        heavy=True,
    )
    add("rfc822-nested-100", lambda n: _nested_rfc822(n, 100))

    # -- missing headers -----------------------------------------------------------------
    add("no-from", lambda n: assemble(headers(n, omit=[b"From"]), REJECTION_BODY.encode()))
    add("no-date", lambda n: assemble(headers(n, omit=[b"Date"]), REJECTION_BODY.encode()))
    add(
        "no-message-id",
        lambda n: assemble(headers(n, omit=[b"Message-ID"]), REJECTION_BODY.encode()),
    )
    add(
        "only-from",
        lambda n: assemble([b"From: jane@acme.example"], REJECTION_BODY.encode()),
    )
    add("no-headers-only-body", lambda n: REJECTION_BODY.encode())
    add("blank-line-then-body", lambda n: CRLF + REJECTION_BODY.encode())
    add("empty", lambda n: b"")
    add("whitespace-only", lambda n: b" \r\n\t\r\n\r\n")
    add("header-without-colon", lambda n: b"this is not a header\r\n" + simple(n))
    add("no-header-body-separator", lambda n: CRLF.join(headers(n)))

    # -- duplicated headers --------------------------------------------------------------
    add(
        "two-from",
        lambda n: assemble(
            headers(n, extra=[b"From: Mallory <mallory@evil.example>"]), REJECTION_BODY.encode()
        ),
    )
    add(
        "two-subject",
        lambda n: assemble(
            headers(n, extra=[b"Subject: second subject\r\n\tfolded"]), REJECTION_BODY.encode()
        ),
    )
    add(
        "two-message-id",
        lambda n: assemble(
            headers(n, extra=[b"Message-ID: <second@hostile.test>"]), REJECTION_BODY.encode()
        ),
    )

    # -- raw 8-bit headers ---------------------------------------------------------------
    add(
        "subject-latin1-raw",
        lambda n: simple(n, subject=b"Ihre Bewerbung \xe9\xe8 M\xfcller", sender=b"a@acme.example"),
    )
    add(
        "subject-utf8-raw",
        lambda n: simple(n, subject="Ihre Bewerbung \u2013 Grüße 你好".encode()),
    )
    add(
        "from-latin1-raw",
        lambda n: simple(n, sender=b"Ren\xe9 M\xfcller <rene@acme.example>"),
    )
    add(
        "from-utf8-raw",
        lambda n: simple(n, sender="Jürgen Groß <juergen@acme.example>".encode()),
    )
    add(
        "from-8bit-address",
        lambda n: simple(n, sender="Jürgen <jürgen@acme.example>".encode()),
    )
    add(
        "headers-invalid-utf8",
        lambda n: simple(
            n, subject=b"\xff\xfe\xc3\x28\xa0\xa1", sender=b"\xc3 <a\xff@acme.example>"
        ),
    )

    # -- unknown charsets ----------------------------------------------------------------
    add(
        "body-charset-x-unknown",
        lambda n: simple(
            n, b"caf\xe9 " + REJECTION_BODY.encode(), content_type=b"text/plain; charset=x-unknown"
        ),
    )
    add(
        "body-charset-utf-99",
        lambda n: simple(n, b"caf\xe9", content_type=b'text/plain; charset="utf-99"'),
    )
    add(
        "html-charset-utf-99",
        lambda n: simple(n, b"<p>caf\xe9</p>", content_type=b'text/html; charset="utf-99"'),
    )
    add(
        "encoded-word-charset-x-unknown",
        lambda n: simple(
            n, subject=b"=?x-unknown?q?caf=E9?=", sender=b"=?utf-99?q?Ren=E9?= <r@acme.example>"
        ),
    )
    add(
        "charset-with-nul",
        lambda n: simple(n, b"body", content_type=b"text/plain; charset=utf\x00-8"),
    )

    # -- broken transfer encodings -------------------------------------------------------
    add(
        "base64-invalid",
        lambda n: simple(n, b"!!!! not base64 at all ****\r\n=====\r\n", encoding=b"base64"),
    )
    add(
        "base64-bad-padding",
        lambda n: simple(n, base64.b64encode(REJECTION_BODY.encode())[:-3], encoding=b"base64"),
    )
    add(
        "base64-binary-garbage",
        lambda n: simple(n, base64.b64encode(bytes(range(256)) * 8), encoding=b"base64"),
    )
    add(
        "quoted-printable-invalid",
        lambda n: simple(n, b"caf=E9 =ZZ =\r\n=0 trailing=", encoding=b"quoted-printable"),
    )
    add(
        "quoted-printable-soft-breaks-only",
        lambda n: simple(n, b"=\r\n" * 10_000, encoding=b"quoted-printable"),
    )
    add(
        "unknown-transfer-encoding",
        lambda n: simple(n, b"begin 644 x\r\n`\r\nend\r\n", encoding=b"x-uuencode-ish"),
    )
    add(
        "binary-body",
        lambda n: simple(n, bytes(range(256)) * 16, encoding=b"binary"),
    )

    # -- size ----------------------------------------------------------------------------
    add(
        "line-5mb",
        lambda n: simple(n, b"rejected " * (5 * MB // 9 + 1) + CRLF),
        big=True,
    )
    add("attachment-30mb", lambda n: _attachment(n, 30 * MB), big=True)
    # Runs of blank lines once cost seconds each in the search for quoted history.
    add("signature-dashes-then-blank-lines", lambda n: simple(n, b"Hi,\r\n--" + CRLF * 12_000))
    add(
        "blank-lines-then-rejection",
        lambda n: simple(n, b" \r\n\t" * 6_000 + REJECTION_BODY.encode()),
    )
    add(
        "header-line-1mb",
        lambda n: simple(n, subject=b"x" * MB),
    )
    add(
        "subject-1mb-of-words",
        lambda n: simple(n, subject=b"ab " * (MB // 3)),
    )
    add(
        "from-header-256k",
        lambda n: simple(n, sender=b"J" * 256_000 + b" <jane@acme.example>"),
        heavy=True,
    )
    add(
        "references-10k-ids",
        lambda n: _with_raw_header(
            n, b"References: " + b" ".join(b"<r%d@x>" % i for i in range(10_000))
        ),
    )
    add(
        "to-10k-addresses",
        lambda n: _with_raw_header(
            n, b"Cc: " + b", ".join(b"p%d@x.example" % i for i in range(10_000))
        ),
        heavy=True,
    )

    # -- HTML bombs ----------------------------------------------------------------------
    add(
        "html-100k-nested-div",
        lambda n: html(n, b"<div>" * 100_000 + b"deep" + b"</div>" * 100_000),
        heavy=True,
    )
    add(
        "html-1mb-entities",
        lambda n: html(n, b"&amp;&#x1F600;&nbsp;&bogus;" * (MB // 27)),
        heavy=True,
    )
    add(
        "html-script-only",
        lambda n: html(n, b"<script>" + b"alert(1);" * 10_000 + b"</script>"),
    )
    add(
        "html-style-only",
        lambda n: html(n, b"<style>p{color:red}</style>"),
    )
    add(
        "html-unclosed-script",
        lambda n: html(n, b"<p>hi</p><script>" + b"x" * MB),
    )
    add(
        "html-unclosed-comment",
        lambda n: html(n, b"<!--" + b"<div>" * 200_000),
        heavy=True,
    )
    # Unclosed constructs: html.parser (Python < 3.13.4) took quadratic time over these, and
    # raised AssertionError on a broken marked section.
    add(
        "html-unclosed-comments",
        lambda n: html(n, b"<p>Hi</p>" + b"<!--" * 25_000),
        heavy=True,
    )
    add(
        "html-unclosed-end-tags",
        lambda n: html(n, b"<p>Hi</p>" + b"</" * 50_000),
        heavy=True,
    )
    # libxml2 searched the open elements for each of these: quadratic time this deep.
    add(
        "html-deep-with-stray-end-tags",
        lambda n: html(n, REJECTION_BODY.encode() + b"<b>" * 100_000 + b"</i>" * 75_000),
        heavy=True,
    )
    # Tag and attribute names made up by the thousand: libxml2 keeps every one it meets.
    add(
        "html-60k-distinct-names",
        lambda n: html(
            n,
            REJECTION_BODY.encode()
            + b"".join(b"<t%d a%d=1>w</t%d>" % (i, i, i) for i in range(60_000)),
        ),
        heavy=True,
    )
    add(
        "html-end-br-between-sentences",
        lambda n: html(n, REJECTION_BODY.replace("\r\n", "</br>").encode()),
    )
    add(
        "html-broken-marked-sections",
        lambda n: html(n, REJECTION_BODY.encode() + b"<![" * 1_000),
    )
    add(
        "html-300k-angle-brackets",
        lambda n: html(n, b"<" * 300_000),
        heavy=True,
    )

    # -- NUL and odd line ends -----------------------------------------------------------
    add(
        "nul-in-subject",
        lambda n: simple(n, subject=b"Your\x00application"),
    )
    add(
        "nul-in-encoded-subject",
        lambda n: simple(n, subject=q_word("Your\x00application")),
    )
    add(
        "nul-in-display-name",
        lambda n: simple(n, sender=b"Jane\x00Doe <jane@acme.example>"),
    )
    add(
        "nul-in-message-id",
        lambda n: _with_raw_header(
            n, b"Message-ID: <nul\x00id@hostile.test>", omit=[b"Message-ID"]
        ),
    )
    add(
        "nul-in-header-name",
        lambda n: _with_raw_header(n, b"X-Fo\x00o: bar"),
    )
    add("cr-only-line-ends", lambda n: assemble(headers(n), body_with(b"\r"), b"\r"))
    add("lf-only-line-ends", lambda n: assemble(headers(n), body_with(b"\n"), b"\n"))
    add(
        "mixed-line-ends",
        lambda n: (
            b"From: a@acme.example\rSubject: mixed\nMessage-ID: <mixed@hostile.test>\r\n"
            b"\n\rbody\r\r\n"
        ),
    )

    # -- dates ---------------------------------------------------------------------------
    add(
        "date-year-9999-west",
        lambda n: _with_raw_header(n, b"Date: Fri, 31 Dec 9999 23:59:59 -0100", [b"Date"]),
    )
    add(
        "message-id-with-encoded-word-opener",
        lambda n: _with_raw_header(n, b"Message-ID: <a=?b@hostile.test>", [b"Message-ID"]),
    )
    add(
        "date-garbage",
        lambda n: _with_raw_header(n, b"Date: 99 Foo 99999999999 99:99:99 +9999", [b"Date"]),
    )

    # -- header injection ----------------------------------------------------------------
    add(
        "crlf-in-raw-display-name",
        lambda n: simple(n, sender=b'"Evil\rBcc: x@evil.example" <hr@acme.example>'),
    )
    add(
        "crlf-in-raw-subject",
        lambda n: simple(n, subject=b"Hi\rBcc: x@evil.example\rX-Evil: 1"),
    )
    add(
        "q-word-crlf-subject",
        lambda n: simple(n, subject=b"=?utf-8?q?Hi=0D=0ABcc:_x@evil?="),
    )
    add(
        "b-word-crlf-subject",
        lambda n: simple(n, subject=b_word("Hi\r\nBcc: x")),
    )
    add(
        "q-word-crlf-display-name",
        lambda n: simple(n, sender=b"=?utf-8?q?Evil=0D=0ABcc:_x@evil?= <hr@acme.example>"),
    )
    add(
        "b-word-crlf-display-name",
        lambda n: simple(n, sender=b_word("Evil\r\nBcc: x@evil.example") + b" <hr@acme.example>"),
    )
    add(
        "encoded-word-hides-encoded-word",
        lambda n: simple(
            n,
            subject=b_word(b_word(b_word(q_word("Hi\r\nBcc: x@evil").decode()).decode()).decode()),
        ),
    )
    add(
        "encoded-word-forges-address",
        lambda n: simple(
            n, sender=q_word("x@evil.example>, Evil <y@evil.example") + b" <hr@acme.example>"
        ),
    )
    add(
        "encoded-word-in-message-id",
        lambda n: _with_raw_header(
            n,
            b"Message-ID: " + q_word("<a@b>\r\nBcc: x@evil.example"),
            [b"Message-ID"],
        ),
    )
    add(
        "line-separators-u2028-u0085",
        lambda n: simple(
            n,
            subject=q_word("Hi\u2028Bcc: x@evil\u2029X: y\u0085Z: z"),
            sender="Jane\u2028Bcc: x@evil \u0085<jane@acme.example>".encode(),
        ),
    )
    add(
        "line-separators-raw-utf8",
        lambda n: simple(n, subject="Hi\u2028Bcc: x@evil\u0085X-Evil: 1".encode()),
    )
    add(
        "vertical-tab-form-feed",
        lambda n: simple(n, subject=b"Hi\x0bBcc: x\x0cX: y\x1cZ: z"),
    )
    add(
        "bad-base64-encoded-word-subject",
        lambda n: simple(n, subject=b"Your application at Acme =?utf-8?b?A?="),
    )
    add(
        "bad-base64-encoded-word-display-name",
        lambda n: simple(n, sender=b"=?utf-8?b?A?= <jane@acme.example>"),
    )
    add("injection-rejection", injection_rejection)

    # -- template syntax -----------------------------------------------------------------
    add(
        "template-in-body",
        lambda n: simple(n, ("\r\n".join(TEMPLATE_MARKERS) + "\r\n" + REJECTION_BODY).encode()),
    )
    add(
        "template-in-subject",
        lambda n: simple(n, subject=" ".join(TEMPLATE_MARKERS).encode()),
    )
    add(
        "template-in-display-name",
        lambda n: simple(
            n, sender=b'"{{ 7*7 }} {% for x in range(3) %}x{% endfor %}" <j@acme.example>'
        ),
    )
    add(
        "template-in-encoded-words",
        lambda n: simple(
            n,
            subject=b_word("{{ 7*7 }} Backend Engineer"),
            sender=q_word("{{ config }}") + b" <j@acme.example>",
        ),
    )
    add("template-everywhere", _template_everywhere)
    return cases


CASES: tuple[Case, ...] = tuple(_cases())
BY_NAME: dict[str, Case] = {case.name: case for case in CASES}
assert len(BY_NAME) == len(CASES), "case names must be unique"
