"""The adapter reads Gmail's conversation id (X-GM-THRID) from a FETCH response as Gmail
sends it, parsed by imapclient's own response parser."""

from __future__ import annotations

from imapclient.response_parser import parse_fetch_response

from nextround.daemon.imap import fetched

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
