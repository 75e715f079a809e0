"""FETCH answers: the adapter reads Gmail's conversation id (X-GM-THRID) as Gmail sends it,
and reads the usual answers itself (simple_fetch) exactly as imapclient's parser does."""

from __future__ import annotations

import pytest
from imapclient.response_parser import parse_fetch_response

from nextround.daemon.imap import fetched, simple_fetch

RAW = b"From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n"


def response(items: bytes) -> dict[int, dict[bytes, object]]:
    line = b"7 (" + items + b" UID 12 BODY[]<0> {%d}" % len(RAW)
    parsed = parse_fetch_response([(line, RAW), b")"], True, True)
    return dict(parsed)


def test_gmail_conversation_id_is_kept_with_the_message() -> None:
    data = response(b"X-GM-THRID 1278455344230334865")[12]
    message = fetched(12, data, size=len(RAW), limit=1000)
    assert message.raw == RAW
    assert message.thread == "x-gm-thrid:1278455344230334865"
    assert not message.truncated


def test_other_servers_give_no_conversation_id() -> None:
    data = response(b"FLAGS (\\Seen)")[12]
    assert fetched(12, data, size=len(RAW), limit=1000).thread == ""


def test_a_garbled_conversation_id_is_ignored_not_fatal() -> None:
    data = response(b'X-GM-THRID "12; DROP"')[12]
    assert fetched(12, data, size=len(RAW), limit=1000).thread == ""


# -- the adapter's own reading of the usual FETCH answers (simple_fetch) ---------------------

BODY = b"From: a@b.example\r\nSubject: hi\r\n\r\n) {3}\r\n* 9 FETCH (UID 99\r\n"


def answer(*heads: bytes) -> list[object]:
    """imaplib's data for a FETCH answer: each message's line up to its literal, the literal,
    then the rest of the line."""
    data: list[object] = []
    for head in heads:
        data += [(head + b" {%d}" % len(BODY), BODY), b")"]
    return data


@pytest.mark.parametrize(
    "heads",
    [
        (b"1 (UID 12 RFC822.SIZE 4711 BODY[]<0>",),
        (b"1 (RFC822.SIZE 4711 UID 12 BODY[]<0>", b"2 (UID 13 RFC822.SIZE 50 BODY[]<0>"),
        (b"3 (X-GM-THRID 1278455344230334865 UID 12 RFC822.SIZE 7 BODY[]<0>",),
        (b"3 (uid 12 rfc822.size 7 BODY[]",),  # names in lower case, a body without <0>
    ],
)
def test_usual_answers_are_read_as_imapclient_reads_them(heads: tuple[bytes, ...]) -> None:
    data = answer(*heads)
    expected = {
        uid: {name: value for name, value in fields.items() if name != b"SEQ"}
        for uid, fields in parse_fetch_response(data, True, True).items()
    }
    assert simple_fetch(data) == expected
    assert all(
        fields[next(k for k in fields if k.startswith(b"BODY"))] == BODY
        for fields in expected.values()
    )


@pytest.mark.parametrize(
    "data",
    [
        [(b"1 (BODY[]<0> {3}", b"abc"), b" UID 12)"],  # items after the body
        [(b"1 (UID 12 BODY[]<0> {3}", b"abc"), b")", b"2 (FLAGS (\\Seen))"],  # unsolicited
        [b'1 (UID 12 BODY[]<0> "abc")'],  # a quoted body
        [b"1 (UID 12 BODY[]<0> NIL)"],
        [(b"1 (FLAGS (\\Seen) UID 12 BODY[]<0> {3}", b"abc"), b")"],  # a list among the items
        [(b"1 (RFC822.SIZE 3 BODY[]<0> {3}", b"abc"), b")"],  # no UID
        [(b"1 (UID 12 BODY[]<0> {3}", b"abc"), b") trailing"],
    ],
)
def test_any_other_answer_is_left_to_imapclient(data: list[object]) -> None:
    assert simple_fetch(data) is None


@pytest.mark.parametrize(
    "heads",
    [
        # Two answers for one UID: imapclient merges them (the first's size is kept).
        (b"1 (UID 12 RFC822.SIZE 4711 X-GM-THRID 77 BODY[]<0>", b"1 (UID 12 BODY[]<0>"),
        (b"1 (UID 12 RFC822.SIZE 7 X-GM-THRID 0123 BODY[]<0>",),  # kept as bytes b"0123"
    ],
)
def test_answers_imapclient_reads_its_own_way_are_left_to_it(heads: tuple[bytes, ...]) -> None:
    assert simple_fetch(answer(*heads)) is None


def test_an_empty_answer_is_no_messages() -> None:
    assert simple_fetch([None]) == {}
