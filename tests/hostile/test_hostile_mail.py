"""Hostile and broken mail, from parsing to the draft, and once through the real pipeline.

Contract checked for every corpus case (`corpus.py`) and for every Hypothesis example:

* parse: `parse_message` returns a `Message` or raises `MessageParseError`, nothing else,
  within a minute; its memory peak stays under 8 x the input size + 50 MB (generous: the
  30 MB attachment, 40 MB encoded, peaks near 310 MB). Memory is the tracemalloc peak, except
  for the few allocation-heavy cases (`Case.heavy`: HTML bombs, 1000-deep nesting, the big
  ones) where tracemalloc would slow the parse 10-40x; for those it is the growth of the
  process's peak RSS, with the kernel's high-water mark reset first (/proc/self/clear_refs).
  `Message.text` is at most `MAX_TEXT_CHARS`; no header-derived field (subject, names,
  emails, Message-IDs, kept headers) holds CR, LF, U+2028, U+2029, U+0085 or NUL.
* draft: built as the engine builds one (reply subject, From as the contact, company and role
  from the mail or else its display name and subject), the draft's header block holds only
  the headers nextround writes, each once, never Bcc or Cc, in printable ASCII; template
  syntax from the mail comes out literally or not at all; and it is built within 5 s.

Known defects found by this corpus are listed in `corpus.KNOWN_BUGS`: a case that trips one
xfails (and fails once the bug no longer reproduces, so the entry gets removed); Hypothesis
examples that trip one are counted, not failed, so the property test keeps hunting new ones.

`python tests/hostile/test_hostile_mail.py --report` runs the corpus without pytest and prints
"cases tried: N, parsed: P, skipped with reason: S, crashes: C".
"""

from __future__ import annotations

import base64
import email
import email.policy
import logging
import quopri
import re
import signal
import sqlite3
import sys
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

# Run as a script, `tests/` must be importable as conftest.py makes it under pytest.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest
from hostile.corpus import BY_NAME as CASE_BY_NAME
from hostile.corpus import (
    CASES,
    EVALUATION_TRACES,
    KNOWN_BUGS,
    MB,
    TEMPLATE_MARKERS,
    Case,
    b_word,
    injection_rejection,
    message_id,
    q_word,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support import INTERVIEW_REJECTION

from nextround.classifier.extract import extract_company, extract_role
from nextround.classifier.message import Address, Message, plain_address, safe_message_id
from nextround.classifier.text import MAX_TEXT_CHARS
from nextround.daemon.drafts import (
    DraftSpec,
    Renderer,
    build_draft,
    draft_variables,
    reply_subject,
    template_name,
)
from nextround.daemon.errors import MessageParseError
from nextround.daemon.parse import (
    QUICK_PREFIX,
    header_message_id,
    parse_message,
    parse_quick,
    synthetic_message_id,
)

if TYPE_CHECKING:
    from dovecot import MailUser
    from support import ConfigWriter

# -- the contract ------------------------------------------------------------------------------

FORBIDDEN_IN_FIELDS = {
    "\r": "CR",
    "\n": "LF",
    "\u2028": "U+2028",
    "\u2029": "U+2029",
    "\u0085": "U+0085",
    "\x00": "NUL",
}
WRITTEN_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "X-Nextround-Application",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
)
MEMORY_FACTOR, MEMORY_SLACK = 8, 50 * MB
PARSE_SECONDS, DRAFT_SECONDS = 60.0, 5.0
# Not in any corpus mail: if it shows up in a body, a template evaluated mail text.
IDENTITY = Address("Alex Doe", "alex.canary@nextround.test")
NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
RENDERER = Renderer()


@dataclass(frozen=True)
class Problem:
    text: str
    bug: str | None = None  # a KNOWN_BUGS key when this is a known defect

    def __str__(self) -> str:
        return f"{self.text} [known bug: {self.bug}]" if self.bug else self.text


@dataclass
class Parsed:
    size: int
    message: Message | None = None
    refusal: str | None = None  # MessageParseError's reason
    crash: str | None = None  # anything else that was raised
    peak: int = 0
    memory: str = "not measured"
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)


@dataclass
class Drafted:
    raw: bytes | None = None
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)


class TimeLimitExceeded(BaseException):
    """A BaseException, so no `except Exception` in the code under test can swallow it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` (SIGALRM; a no-op off the main thread)."""
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeLimitExceeded(f"took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class PeakRss:
    """Growth of the process's peak RSS over a block, read from /proc (Linux): the kernel's
    high-water mark is reset first (`clear_refs` 5), so earlier cases do not count."""

    STATUS, CLEAR = Path("/proc/self/status"), Path("/proc/self/clear_refs")

    def __init__(self) -> None:
        self.baseline = self.peak = 0

    @classmethod
    def available(cls) -> bool:
        try:
            cls.CLEAR.write_text("5")
        except OSError:
            return False
        return "VmHWM" in cls._status()

    @classmethod
    def _status(cls) -> dict[str, int]:
        fields = (line.split(":", 1) for line in cls.STATUS.read_text().splitlines())
        return {key: int(value.split()[0]) * 1024 for key, value in fields if key.startswith("Vm")}

    def __enter__(self) -> PeakRss:
        self.CLEAR.write_text("5")
        self.baseline = self._status()["VmRSS"]
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = max(0, self._status()["VmHWM"] - self.baseline)


@contextmanager
def traced_peak(result: Parsed, how: str) -> Iterator[None]:
    """Record in `result` the peak memory of the block, measured `how`."""
    if how == "rss" and PeakRss.available():
        rss = PeakRss()
        try:
            with rss:
                yield
        finally:
            result.peak, result.memory = rss.peak, "peak RSS growth"
        return
    if how == "none":
        yield
        return
    tracemalloc.start()
    try:
        yield
    finally:
        result.peak, result.memory = tracemalloc.get_traced_memory()[1], "tracemalloc peak"
        tracemalloc.stop()


def parse_checked(raw: bytes, *, memory: str = "tracemalloc") -> Parsed:
    """Parse `raw` and check the parse half of the contract; `memory` is "tracemalloc",
    "rss" (for allocation-heavy input, see `Case.heavy`) or "none"."""
    result = Parsed(size=len(raw))
    started = time.perf_counter()
    try:
        with traced_peak(result, memory), time_limit(PARSE_SECONDS):
            result.message = parse_message(raw)
    except MessageParseError as error:
        result.refusal = str(error) or "(no reason given)"
    except TimeLimitExceeded as error:
        result.crash = f"parse_message {error}"
    except Exception as error:
        result.crash = f"{type(error).__name__}: {error}"
    result.seconds = time.perf_counter() - started
    if result.crash is not None:
        bug = "date-overflow" if result.crash.startswith("OverflowError: date value") else None
        result.problems.append(Problem(f"parse_message raised {result.crash}", bug))
    if result.refusal is not None and not result.refusal.strip():
        result.problems.append(Problem("MessageParseError without a reason"))
    bound = MEMORY_FACTOR * len(raw) + MEMORY_SLACK
    if result.peak > bound:
        result.problems.append(
            Problem(
                f"parse memory ({result.memory}) reached {result.peak / MB:.1f} MB "
                f"(bound {bound / MB:.1f} MB)"
            )
        )
    if result.message is not None:
        result.problems.extend(field_problems(result.message))
    return result


def header_fields(message: Message) -> Iterator[tuple[str, str]]:
    """Every field of `message` that came from a header."""
    yield "subject", message.subject
    yield "message_id", message.message_id
    addresses = [("from", message.from_)] if message.from_ else []
    addresses += [(f"reply_to[{i}]", a) for i, a in enumerate(message.reply_to)]
    addresses += [(f"to[{i}]", a) for i, a in enumerate(message.to)]
    for label, address in addresses:
        yield f"{label}.name", address.name
        yield f"{label}.email", address.email
    for label, ids in (("in_reply_to", message.in_reply_to), ("references", message.references)):
        for i, value in enumerate(ids):
            yield f"{label}[{i}]", value
    for name, value in message.headers.items():
        yield f"headers[{name!r}]", value


def field_problems(message: Message) -> list[Problem]:
    problems = []
    if len(message.text) > MAX_TEXT_CHARS:
        problems.append(Problem(f"text has {len(message.text)} chars > {MAX_TEXT_CHARS}"))
    for label, value in header_fields(message):
        problems += forbidden_in(value, f"{label} contains")
    return problems


def forbidden_in(value: str, where: str) -> list[Problem]:
    """A problem when `value` holds a character no header may carry (NUL is a known bug)."""
    found = [name for char, name in FORBIDDEN_IN_FIELDS.items() if char in value]
    if not found:
        return []
    bug = "controls-survive" if found == ["NUL"] else None
    return [Problem(f"{where} {', '.join(found)}: {value[:80]!r}", bug)]


def engine_like_draft(message: Message) -> tuple[DraftSpec, bytes]:
    """The request draft for `message`, built the way `Engine.draft_spec` and `write_draft`
    build it, with every value from the mail at its most hostile."""
    contact = message.from_ or (message.reply_to[0] if message.reply_to else None)
    company = extract_company(message) or (contact.name if contact else None) or None
    role = extract_role(message) or message.subject or None
    variables = draft_variables(
        IDENTITY,
        contact,
        company,
        role,
        "interview",
        False,
        rejected_on=message.date.date() if message.date else None,
    )
    spec = DraftSpec(
        application_id=1,
        step="request",
        identity=IDENTITY,
        to=contact,
        subject=reply_subject(message.subject),
        answers=message.message_id,
        references=message.references,
        variables=variables,
    )
    body = RENDERER.render(template_name("request", "interview"), variables)
    raw, _ = build_draft(spec, body, NOW)
    return spec, raw


def draft_checked(message: Message) -> Drafted:
    """Build the draft for `message` and check the draft half of the contract."""
    result = Drafted()
    started = time.perf_counter()
    try:
        with time_limit(DRAFT_SECONDS):
            spec, raw = engine_like_draft(message)
    except TimeLimitExceeded as error:
        result.problems.append(Problem(f"building the draft {error}", "slow-fold"))
        return result
    except Exception as error:
        bug = "bad-encoded-word" if type(error).__name__ == "HeaderParseError" else None
        result.problems.append(Problem(f"drafting raised {type(error).__name__}: {error}", bug))
        return result
    finally:
        result.seconds = time.perf_counter() - started
    result.raw = raw
    # Only one plain address is ever written into To (plain_address); any other, none.
    has_to = spec.to is not None and plain_address(spec.to.email)
    threaded = bool(safe_message_id(spec.answers))
    result.problems.extend(draft_header_problems(raw, has_to=has_to, threaded=threaded))
    result.problems.extend(template_problems(message, spec, raw))
    return result


def draft_header_problems(raw: bytes, *, has_to: bool, threaded: bool = True) -> list[Problem]:
    """Only our headers, each once, on clean CRLF lines of printable ASCII. Not `threaded`
    (the id answered is one no header may carry): no In-Reply-To or References at all."""
    problems = []
    head, separator, _ = raw.partition(b"\r\n\r\n")
    if not separator:
        return [Problem("the draft has no blank line after its header block")]
    names: list[str] = []
    for line in head.split(b"\r\n"):
        if b"\r" in line or b"\n" in line:
            problems.append(Problem(f"bare CR or LF in a header line: {line[:80]!r}"))
        controls = {byte for byte in line if (byte < 0x20 and byte != 0x09) or byte == 0x7F}
        if controls:
            bug = "controls-survive" if not controls & {0x0A, 0x0D} else None
            problems.append(Problem(f"control bytes in a header line: {line[:80]!r}", bug))
        if not line.isascii():
            problems.append(Problem(f"8-bit bytes in a header line: {line[:80]!r}"))
        if line[:1] not in (b" ", b"\t"):
            names.append(line.split(b":", 1)[0].decode("ascii", "replace").strip().lower())
    counts = Counter(names)
    allowed = {name.lower() for name in WRITTEN_HEADERS}
    for name in sorted(set(counts) - allowed):
        problems.append(Problem(f"header {name!r} is not one nextround writes"))
    if counts["bcc"] or counts["cc"]:
        problems.append(Problem("the draft has a Bcc or Cc header"))
    expected = dict.fromkeys(allowed, 1)  # every draft answers a message: In-Reply-To too
    expected["to"] = 1 if has_to else 0
    if not threaded:
        expected["in-reply-to"] = expected["references"] = 0
    for name, count in expected.items():
        if counts[name] != count:
            problems.append(Problem(f"header {name!r} appears {counts[name]} times, not {count}"))
    for name, value in decoded_headers(raw):
        problems += forbidden_in(value, f"{name} decodes to")
    return problems


_FOLD = re.compile(r"\r?\n(?=[ \t])")


def decoded_headers(raw: bytes) -> list[tuple[str, str]]:
    """The draft's headers as a mail client reads them: unfolded, encoded-words decoded.
    (The compat32 parser and `decode_header` are linear; policy.default's header parser
    takes seconds on a megabyte of encoded-words.)"""
    parsed = email.message_from_bytes(raw.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
    result = []
    for name, value in parsed.items():
        text = _FOLD.sub("", str(value))
        try:
            text = str(make_header(decode_header(text)))
        except (HeaderParseError, LookupError, UnicodeError, ValueError) as error:
            text = f"{text} (undecodable: {error})"
        result.append((name, text))
    return result


def draft_body(raw: bytes) -> str:
    parsed = email.message_from_bytes(raw)
    payload = parsed.get_payload(decode=True)
    assert isinstance(payload, bytes), "the draft is a single text/plain part"
    return payload.decode(parsed.get_content_charset() or "ascii")


def template_problems(message: Message, spec: DraftSpec, raw: bytes) -> list[Problem]:
    """Mail text in a template variable is printed, never evaluated."""
    problems = []
    body = draft_body(raw)
    sender = message.from_ or Address("", "")
    values = [spec.variables.get(name) for name in ("company", "role", "contact_first_name")]
    haystack = "\n".join(
        [message.subject, message.text, sender.name, sender.email, *(v or "" for v in values)]
    )
    for trace in (*EVALUATION_TRACES, IDENTITY.email):
        if trace in body and trace not in haystack:
            problems.append(Problem(f"{trace!r} is in the draft body but nowhere in the mail"))
    for label in ("company", "role"):
        value = spec.variables.get(label)
        if value and str(value) not in body:
            problems.append(Problem(f"{label} {str(value)[:60]!r} was not printed literally"))
    return problems


# -- a tally for the session summary and the report ---------------------------------------------


@dataclass
class Tally:
    tried: set[str] = field(default_factory=set)
    parsed: set[str] = field(default_factory=set)
    refused: dict[str, str] = field(default_factory=dict)
    crashed: dict[str, str] = field(default_factory=dict)
    drafted: set[str] = field(default_factory=set)
    known: Counter[str] = field(default_factory=Counter)
    examples: Counter[str] = field(default_factory=Counter)

    def record(self, name: str, result: Parsed) -> None:
        self.tried.add(name)
        if result.message is not None:
            self.parsed.add(name)
        elif result.refusal is not None:
            self.refused[name] = result.refusal
        else:
            self.crashed[name] = result.crash or "?"

    def line(self) -> str:
        return (
            f"cases tried: {len(self.tried)}, parsed: {len(self.parsed)}, "
            f"skipped with reason: {len(self.refused)}, crashes: {len(self.crashed)}"
        )

    def lines(self) -> list[str]:
        lines = [f"hostile mail corpus: {self.line()}, drafted: {len(self.drafted)}"]
        if self.examples:
            lines.append(
                f"hostile mail hypothesis: examples: {self.examples['tried']}, "
                f"parsed: {self.examples['parsed']}, "
                f"skipped with reason: {self.examples['refused']}, "
                f"crashes: {self.examples['crashed']}"
            )
        lines += [f"  crash: {name}: {why}" for name, why in sorted(self.crashed.items())]
        lines += [f"  known bug hit {n}x: {bug}" for bug, n in sorted(self.known.items())]
        return lines


TALLY = Tally()
_PARSED: dict[str, Parsed] = {}


class _SummaryPlugin:
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if TALLY.tried or TALLY.examples:
            terminalreporter.section("hostile mail")
            for line in TALLY.lines():
                terminalreporter.write_line(line)


@pytest.fixture(scope="module", autouse=True)
def _session_summary(request: pytest.FixtureRequest) -> None:
    manager = request.config.pluginmanager
    if not manager.has_plugin("hostile-mail-summary"):
        manager.register(_SummaryPlugin(), "hostile-mail-summary")


def parsed_case(case: Case) -> Parsed:
    if case.name not in _PARSED:
        result = parse_checked(case.build(), memory="rss" if case.heavy else "tracemalloc")
        _PARSED[case.name] = result
        TALLY.record(case.name, result)
    return _PARSED[case.name]


def judge(case: Case, stage: str, problems: Sequence[Problem]) -> None:
    """Fail on problems; xfail on exactly the known bug the case declares for `stage`."""
    declared = case.bugs.get(stage)
    unknown = [problem for problem in problems if problem.bug is None or problem.bug != declared]
    assert not unknown, f"{case.name} ({stage}):\n" + "\n".join(f"  {p}" for p in unknown)
    if declared is not None:
        if not problems:
            pytest.fail(f"known bug {declared!r} no longer shows: remove it from {case.name}")
        pytest.xfail(f"known bug {declared!r}, see corpus.KNOWN_BUGS")


# -- (a) and (b): the corpus -------------------------------------------------------------------

CASE_IDS = [case.name for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_parse_contract(case: Case) -> None:
    result = parsed_case(case)
    for problem in result.problems:
        if problem.bug:
            TALLY.known[problem.bug] += 1
    judge(case, "parse", result.problems)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_draft_contract(case: Case) -> None:
    parsed = parsed_case(case)
    if parsed.message is None:  # refused (counted as skipped) or crashed (test_parse says so)
        judge(case, "draft", [p for p in parsed.problems if p.bug == case.bugs.get("draft")])
        return
    result = draft_checked(parsed.message)
    if result.raw is not None:
        TALLY.drafted.add(case.name)
    for problem in result.problems:
        if problem.bug:
            TALLY.known[problem.bug] += 1
    judge(case, "draft", result.problems)


def test_corpus_covers_the_brief() -> None:
    """The named kinds of hostile mail are all there, and the big ones are really big."""
    for name in (
        "boundary-never-appears",
        "nested-boundaries-wrong",
        "no-from",
        "no-date",
        "no-message-id",
        "no-headers-only-body",
        "two-from",
        "two-subject",
        "two-message-id",
        "subject-latin1-raw",
        "subject-utf8-raw",
        "from-latin1-raw",
        "from-utf8-raw",
        "body-charset-x-unknown",
        "body-charset-utf-99",
        "base64-invalid",
        "quoted-printable-invalid",
        "multipart-nested-100",
        "line-5mb",
        "attachment-30mb",
        "html-100k-nested-div",
        "html-1mb-entities",
        "html-script-only",
        "html-style-only",
        "nul-in-subject",
        "header-line-1mb",
        "cr-only-line-ends",
        "q-word-crlf-subject",
        "b-word-crlf-subject",
        "q-word-crlf-display-name",
        "line-separators-u2028-u0085",
        "template-in-body",
        "template-in-subject",
        "template-in-display-name",
    ):
        assert name in CASE_BY_NAME, name
    assert all(case.bugs.keys() <= {"parse", "draft"} for case in CASES)
    assert all(bug in KNOWN_BUGS for case in CASES for bug in case.bugs.values())
    line = CASE_BY_NAME["line-5mb"].build()
    assert len(max(line.split(b"\r\n"), key=len)) >= 5 * MB
    assert b"\r\n" not in CASE_BY_NAME["cr-only-line-ends"].build()
    assert b"=0D=0ABcc:_x@evil" in CASE_BY_NAME["q-word-crlf-subject"].build()
    assert base64.b64encode(b"Hi\r\nBcc: x") in CASE_BY_NAME["b-word-crlf-subject"].build()


# A property of the parsed message and of its draft's decoded headers.
Check = Callable[[Message, dict[str, str]], bool]


def _sender_is(email_: str, name: str | None = None) -> Check:
    """The sender's address (and, if given, display name) survive as the mail wrote them."""

    def check(message: Message, draft: dict[str, str]) -> bool:
        sender = message.from_
        return sender is not None and sender.email == email_ and name in (None, sender.name)

    return check


def _draft_answers_its_id(message: Message, draft: dict[str, str]) -> bool:
    return draft.get("In-Reply-To") == draft.get("References") == message.message_id


FIDELITY: list[tuple[str, Check, str | None]] = [
    (
        "from-utf8-raw",
        _sender_is("juergen@acme.example", "J\u00fcrgen Gro\u00df"),
        None,
    ),
    ("subject-utf8-raw", lambda m, d: "Gr\u00fc\u00dfe" in m.subject, None),
    (
        "q-word-crlf-display-name",
        _sender_is("hr@acme.example"),
        None,
    ),
    ("b-word-crlf-display-name", _sender_is("hr@acme.example", "Evil Bcc: x@evil.example"), None),
    (
        "encoded-word-forges-address",
        _sender_is("hr@acme.example", "x@evil.example>, Evil <y@evil.example"),
        None,
    ),
    # An encoded-word in an id is dropped, threading and all: the email package decodes one
    # there when it writes the header, and one hidden in another decodes into a line break.
    ("message-id-with-encoded-word-opener", lambda m, d: "In-Reply-To" not in d, None),
    ("injection-rejection", _draft_answers_its_id, None),
]


@pytest.mark.parametrize(("name", "check", "bug"), FIDELITY, ids=[name for name, _, _ in FIDELITY])
def test_hostile_values_keep_their_meaning(name: str, check: Check, bug: str | None) -> None:
    """Made safe is not enough: the sender stays the sender, and the reply stays threaded."""
    message = parse_message(CASE_BY_NAME[name].build())
    _, raw = engine_like_draft(message)
    holds = check(message, dict(decoded_headers(raw)))
    if bug is None:
        assert holds, (message, raw.partition(b"\r\n\r\n")[0])
    elif holds:
        pytest.fail(f"known bug {bug!r} no longer shows: remove it from FIDELITY")
    else:
        pytest.xfail(f"known bug {bug!r}, see corpus.KNOWN_BUGS")


# -- (c): the property test --------------------------------------------------------------------

CHARSETS = ("utf-8", "iso-8859-1", "us-ascii", "windows-1252", "x-unknown", "utf-99", "utf-7", "")
ENCODINGS = ("7bit", "8bit", "binary", "base64", "quoted-printable", "x-bogus", "")
HEADER_NAMES = (
    "From",
    "To",
    "Cc",
    "Bcc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
    "X-Nextround-Application",
    "Auto-Submitted",
    "List-Id",
    "Precedence",
)
NASTY = (
    "\r\n",
    "\r",
    "\n",
    "\x00",
    "\u2028",
    "\u2029",
    "\u0085",
    "\x0b",
    "\x0c",
    "\t",
    "Bcc: x@evil.example",
    "=?",
    "?=",
    '"',
    "<",
    ">",
    ",",
    ":",
    ";",
    "@",
    "\\",
    *TEMPLATE_MARKERS,
)
hostile_text = st.lists(st.one_of(st.text(max_size=12), st.sampled_from(NASTY)), max_size=8).map(
    "".join
)


def encoded_word(text: str, label: str, kind: str) -> bytes:
    """An encoded-word of `text`'s UTF-8 bytes, labelled with any charset name at all."""
    word = q_word(text) if kind == "q" else b_word(text)
    return word.replace(b"=?utf-8?", b"=?" + label.encode() + b"?", 1)


@st.composite
def header_values(draw: st.DrawFn) -> bytes:
    text = draw(hostile_text)
    kind = draw(st.sampled_from(["utf-8", "latin-1", "q", "b", "bytes", "address", "date"]))
    if kind == "utf-8":
        return text.encode("utf-8")
    if kind == "latin-1":
        return text.encode("latin-1", "replace")
    if kind in ("q", "b"):
        return encoded_word(text, draw(st.sampled_from(CHARSETS)), kind)
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "date":
        when = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
        offset = draw(st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59))
        return format_datetime(when.replace(tzinfo=timezone(timedelta(minutes=offset)))).encode()
    name = draw(st.sampled_from([text.encode("utf-8"), encoded_word(text, "utf-8", "q")]))
    local = draw(st.sampled_from([b"jane", b"j\xc3\xbcrgen", b'"a b"', b"", b"x@y"]))
    return name + b" <" + local + b"@" + draw(st.sampled_from([b"acme.example", b""])) + b">"


header_names = st.one_of(
    st.sampled_from(HEADER_NAMES),
    st.text(alphabet="abcXYZ-_0\x00\x7f é", min_size=1, max_size=12),
).map(lambda name: name.encode("utf-8"))


@st.composite
def leaf_parts(draw: st.DrawFn) -> bytes:
    content_type = draw(
        st.sampled_from(
            ["text/plain", "text/html", "application/octet-stream", "message/rfc822", "x/y", ""]
        )
    )
    charset = draw(st.sampled_from(CHARSETS))
    encoding = draw(st.sampled_from(ENCODINGS))
    text = draw(hostile_text)
    if content_type == "text/html":
        text = draw(st.sampled_from(["<div>", "<script>", "<style>", "&amp;", "<!--", ""])) + text
    try:
        payload = text.encode(charset or "utf-8")
    except (LookupError, UnicodeError):
        payload = text.encode("utf-8")
    if encoding == "base64":
        payload = base64.encodebytes(payload)
    elif encoding == "quoted-printable":
        payload = quopri.encodestring(payload)
    if draw(st.booleans()):  # break it
        payload = draw(st.sampled_from([b"=ZZ", b"!!", b"=", b"\x00", b"\xff"])) + payload[1:]
    parameter = b"; charset=" + charset.encode() if charset else b""
    lines = [b"Content-Type: " + content_type.encode() + parameter]
    if encoding:
        lines.append(b"Content-Transfer-Encoding: " + encoding.encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


boundaries = st.one_of(
    st.sampled_from(["b", "a", "aa", "--", "", " ", "=_Part_0", '"']),
    st.text(alphabet="abz019'()+_,-./:=? ", min_size=1, max_size=70),
)


def multipart_parts(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        parts = draw(st.lists(children, max_size=4))
        boundary = draw(boundaries).encode()
        used = draw(st.sampled_from([boundary, boundary, b"other", boundary + b"x"]))
        subtype = draw(st.sampled_from([b"mixed", b"alternative", b"related", b"digest"]))
        param = draw(st.sampled_from([b'; boundary="%s"' % boundary, b"; boundary=%s" % boundary]))
        if draw(st.integers(0, 9)) == 0:
            param = b""
        body = b"preamble\r\n"
        for part in parts:
            body += b"--" + used + b"\r\n" + part + b"\r\n"
        if draw(st.booleans()):
            body += b"--" + used + b"--\r\n"
        return b"Content-Type: multipart/" + subtype + param + b"\r\n\r\n" + body

    return build()


mime_trees = st.recursive(leaf_parts(), multipart_parts, max_leaves=6)


@st.composite
def hostile_messages(draw: st.DrawFn) -> bytes:
    lines: list[bytes] = []
    known_names = st.sampled_from(["From", "Subject", "Message-ID", "Date", "To"])
    for known in draw(st.lists(known_names, unique=True)):  # a list: set order is per process
        lines.append(known.encode() + b": " + draw(header_values()))
    for name, value in draw(st.lists(st.tuples(header_names, header_values()), max_size=6)):
        lines.append(name + b":" + draw(st.sampled_from([b" ", b"", b"\t"])) + value)
    lines = draw(st.permutations(lines))
    raw = b"\r\n".join(lines) + b"\r\n" + draw(mime_trees)
    eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r"]))
    return raw.replace(b"\r\n", eol)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw=hostile_messages())
def test_generated_mail_keeps_the_contract(raw: bytes) -> None:
    TALLY.examples["tried"] += 1
    parsed = parse_checked(raw)
    problems = list(parsed.problems)
    if parsed.message is not None:
        TALLY.examples["parsed"] += 1
        problems += draft_checked(parsed.message).problems
    elif parsed.refusal is not None:
        TALLY.examples["refused"] += 1
        event(f"refused: {parsed.refusal.split(':')[0]}")
    else:
        TALLY.examples["crashed"] += 1
    for problem in problems:
        if problem.bug is not None:
            TALLY.known[problem.bug] += 1
            event(f"known bug: {problem.bug}")
    unknown = [problem for problem in problems if problem.bug is None]
    assert not unknown, "\n".join(str(problem) for problem in unknown)


# -- the quick reading: triage decides on it, and takes it as the full parse for mail that fits --


def quick_agrees(raw: bytes) -> bool:
    """Whether `parse_quick` read `raw`; when it did, it must read it as the full parse does:
    a first sync uses it in place of mail-parser for mail within QUICK_PREFIX."""
    quick = parse_quick(raw)
    if quick is None or len(raw) > QUICK_PREFIX:
        return False
    try:
        full = parse_message(raw)
    except MessageParseError as error:
        pytest.fail(f"read quickly, refused by the full parse: {error}")
    differences = {
        name: (getattr(quick, name), getattr(full, name))
        for name in quick.__dataclass_fields__
        if getattr(quick, name) != getattr(full, name)
    }
    assert not differences, differences
    return True


def test_the_quick_reading_declines_or_reads_as_the_full_parse() -> None:
    """Every case of the corpus: declined (parsed in full), or read exactly as in full."""
    read = [case.name for case in CASES if not case.big and quick_agrees(case.build())]
    assert len(read) >= 30, read  # the corpus's ordinary-looking mail is read quickly


@settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw=hostile_messages())
def test_generated_mail_is_read_quickly_as_the_full_parse_reads_it(raw: bytes) -> None:
    event("read quickly" if quick_agrees(raw) else "declined")


# -- (d) and (e): through the real pipeline -----------------------------------------------------

PIPELINE_CASES = (
    "line-5mb",
    "multipart-nested-100",
    "injection-rejection",
    "html-100k-nested-div",
    "template-everywhere",
    "encoded-word-forges-address",
    "b-word-crlf-display-name",
    "no-headers-only-body",
)


def normal_rejection(user: MailUser, name: str = "normal-rejection") -> EmailMessage:
    sender, subject, body = INTERVIEW_REJECTION
    message = EmailMessage()
    message["From"] = sender
    message["To"] = f"Alex Doe <{user.username}>"
    message["Subject"] = subject
    message["Date"] = format_datetime(NOW - timedelta(hours=1))
    message["Message-ID"] = message_id(name)
    message.set_content(body)
    return message


@dataclass(frozen=True)
class Row:
    message_id: str
    status: str
    error: str | None
    size: int


def inbox_rows(config: Path) -> list[Row]:
    database = config.parent / "state" / "state.db"
    with closing(sqlite3.connect(database)) as connection:
        rows = connection.execute(
            "SELECT message_id, status, error, size FROM messages WHERE folder = 'INBOX'"
        ).fetchall()
    return [Row(str(a), str(b), None if c is None else str(c), int(d)) for a, b, c, d in rows]


def once(config: Path) -> tuple[int, str, str]:
    from support import run_cli

    result = run_cli("-c", str(config), "once", "--now", NOW.isoformat())
    return result.code, result.out, result.err


def own_message_id(raw: bytes) -> str:
    """The id a log line should name: the mail's own Message-ID, else the synthetic one."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    found = header_message_id(head + b"\r\n\r\n")
    return found if not found.endswith("@nextround.invalid>") else synthetic_message_id(raw)


def drafts_by_answer(user: MailUser) -> dict[str, bytes]:
    """Drafts in Drafts, by the Message-ID they answer; every one passes the header check."""
    found = {}
    for uid, raw in user.fetch_raw("Drafts").items():
        problems = draft_header_problems(raw, has_to=b"\r\nTo: " in raw.split(b"\r\n\r\n")[0])
        assert not problems, f"draft {uid}: " + "; ".join(map(str, problems))
        draft = email.message_from_bytes(raw, policy=email.policy.default)
        found[str(draft["In-Reply-To"])] = raw
    return found


def test_nastiest_cases_through_the_real_pipeline(
    mailbox_user: MailUser, write_config: ConfigWriter
) -> None:
    config = write_config(mailbox_user)
    for name in PIPELINE_CASES:
        mailbox_user.append("INBOX", CASE_BY_NAME[name].build(), date=NOW - timedelta(hours=2))
    normal = normal_rejection(mailbox_user)
    mailbox_user.append("INBOX", normal.as_bytes(), date=NOW - timedelta(hours=1))
    stored = mailbox_user.fetch_raw("INBOX")  # as the server keeps them
    assert len(stored) == len(PIPELINE_CASES) + 1

    code, out, err = once(config)
    assert code == 0, err

    rows = {row.message_id: row for row in inbox_rows(config)}
    assert len(rows) == len(stored), (sorted(rows), err)
    for raw in stored.values():
        expected = own_message_id(raw)
        row = rows.get(expected)
        assert row is not None, f"no row for {expected}: {sorted(rows)}"
        assert row.status in ("parsed", "unparsable"), (expected, row)
        if row.status == "unparsable":
            assert row.error, row
            assert f"skipping unparsable message {expected}" in err, err[-2000:]
    assert rows[message_id("normal-rejection")].status == "parsed"
    assert rows[message_id("line-5mb")].size > 5 * MB

    drafts = drafts_by_answer(mailbox_user)
    assert message_id("normal-rejection") in drafts, (out, sorted(drafts))
    injected = drafts.get(message_id("injection-rejection"))
    assert injected is not None, (out, sorted(drafts))
    draft = email.message_from_bytes(injected, policy=email.policy.default)
    assert isinstance(draft, EmailMessage)
    assert str(draft["To"]).endswith("<jane@acme.example>")
    body = str(draft.get_content())
    assert "49" not in body and "looplooploop" not in body
    for raw in drafts.values():  # one recipient each, never one a mail smuggled in
        to = email.message_from_bytes(raw, policy=email.policy.default)["To"]
        recipients = [address.addr_spec for address in to.addresses] if to else []
        assert len(recipients) <= 1 and not any("evil" in r for r in recipients), recipients


def test_oversized_message_is_fetched_as_a_prefix_and_still_classified(
    mailbox_user: MailUser, write_config: ConfigWriter
) -> None:
    config = write_config(mailbox_user, extra="[sync]\nmax_message_bytes = 65536\n")
    message = normal_rejection(mailbox_user, "oversized-rejection")
    payload = (bytes(range(256)) * (2 * MB // 256 + 1))[: 2 * MB]
    message.add_attachment(payload, maintype="application", subtype="pdf", filename="cv.pdf")
    raw = message.as_bytes()
    assert len(raw) > 2 * MB
    mailbox_user.append("INBOX", raw, date=NOW - timedelta(hours=1))

    code, out, err = once(config)
    assert code == 0, err

    [row] = inbox_rows(config)
    assert row.message_id == message_id("oversized-rejection")
    assert row.status == "parsed", row
    assert row.size > 2_000_000
    assert message_id("oversized-rejection") in drafts_by_answer(mailbox_user), out


# Bugs this corpus found (all fixed), shown where they hurt: each made a whole cycle fail, or
# logged the wrong id.


def test_a_date_at_the_end_of_time_does_not_stop_the_cycle(
    mailbox_user: MailUser, write_config: ConfigWriter
) -> None:
    config = write_config(mailbox_user)
    when = NOW - timedelta(hours=1)
    mailbox_user.append("INBOX", CASE_BY_NAME["date-year-9999-west"].build(), date=when)
    mailbox_user.append("INBOX", normal_rejection(mailbox_user).as_bytes(), date=when)
    code, _, err = once(config)
    assert code == 0, err
    assert message_id("normal-rejection") in drafts_by_answer(mailbox_user)


def test_a_rejection_with_a_broken_encoded_word_subject_is_drafted(
    mailbox_user: MailUser, write_config: ConfigWriter
) -> None:
    config = write_config(mailbox_user)
    raw = injection_rejection("broken-word").replace(
        b"Subject: Your application at Acme ", b"Subject: Your application at Acme =?utf-8?b?A?= "
    )
    mailbox_user.append("INBOX", raw, date=NOW - timedelta(hours=1))
    mailbox_user.append("INBOX", normal_rejection(mailbox_user).as_bytes(), date=NOW)
    code, _, err = once(config)
    assert code == 0, err
    drafts = drafts_by_answer(mailbox_user)
    assert message_id("normal-rejection") in drafts
    assert message_id("broken-word") in drafts


def test_a_skipped_message_is_logged_under_its_own_message_id(
    mailbox_user: MailUser, write_config: ConfigWriter
) -> None:
    config = write_config(mailbox_user)
    raw = CASE_BY_NAME["multipart-nested-1000"].build()
    mailbox_user.append("INBOX", raw, date=NOW - timedelta(hours=1))
    code, _, err = once(config)
    assert code == 0, err
    [row] = inbox_rows(config)
    assert row.status == "unparsable"
    assert f"skipping unparsable message {message_id('multipart-nested-1000')}" in err, err
    assert row.message_id == message_id("multipart-nested-1000")


# -- the report ---------------------------------------------------------------------------------


def report(argv: Sequence[str]) -> int:
    """Every corpus case, parsed and drafted, one line each, then the totals."""
    logging.getLogger("mailparser").setLevel(logging.CRITICAL)
    skip_big = "--no-big" in argv
    tally = Tally()
    problems = 0
    for case in CASES:
        if skip_big and case.big:
            continue
        parsed = parse_checked(case.build(), memory="rss" if case.heavy else "tracemalloc")
        tally.record(case.name, parsed)
        found = list(parsed.problems)
        if parsed.message is not None:
            drafted = draft_checked(parsed.message)
            found += drafted.problems
            if drafted.raw is not None:
                tally.drafted.add(case.name)
        outcome = "parsed" if parsed.message else "skipped" if parsed.refusal else "CRASH"
        reason = f" ({parsed.refusal})" if parsed.refusal else ""
        print(
            f"{case.name:40} {outcome}{reason:.70} {parsed.seconds:6.2f} s, "
            f"{parsed.memory} {parsed.peak / MB:6.1f} MB for {parsed.size / MB:6.2f} MB"
        )
        for problem in found:
            problems += 1
            if problem.bug:
                tally.known[problem.bug] += 1
            print(f"    {problem}")
    print(tally.line() + f", problems: {problems}")
    for bug, description in KNOWN_BUGS.items():
        if tally.known[bug]:
            print(f"known bug {bug} ({tally.known[bug]}x): {description}")
    return 0 if not tally.crashed and not problems else 1


@pytest.mark.parametrize(
    "display_name",
    [
        "Recruiting Team at Acme Corporation International Holdings, evil@attacker.example, Jane",
        "J" * 80 + ", evil@attacker.example,",
    ],
)
def test_a_long_display_name_adds_no_recipient(display_name: str) -> None:
    """The email package (3.11.7) folds a long quoted display name without its quotes, and
    its commas and addresses would name more recipients: To is written by hand."""
    raw = (
        f'From: "{display_name}" <jane@acme.example>\r\n'
        "To: alex@example.org\r\nSubject: Your application\r\n"
        "Date: Mon, 01 Jan 2024 09:00:00 +0000\r\nMessage-ID: <rej-1@acme.example>\r\n"
        "\r\nHi Alex,\r\n\r\nWe will not move forward with your application.\r\n"
    ).encode()
    message = parse_message(raw)
    assert message.from_ is not None and message.from_.email == "jane@acme.example"
    _, draft = engine_like_draft(message)
    to = email.message_from_bytes(draft, policy=email.policy.default)["To"]
    assert [a.addr_spec for a in to.addresses] == ["jane@acme.example"], str(to)


if __name__ == "__main__":
    if "--report" in sys.argv[1:]:
        sys.exit(report(sys.argv[1:]))
    sys.exit(pytest.main([__file__, *sys.argv[1:]]))
