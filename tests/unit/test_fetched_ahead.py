"""fetched_ahead: the sync's fetch runs in a thread one batch ahead of the cycle. What the
cycle sees must not change: the same items in the same order, the same error after the same
items, and nothing touching the connection once the cycle has stopped taking them."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from nextround.daemon.errors import MailboxError
from nextround.daemon.sync import fetched_ahead


class Source:
    """A generator of numbers that says which thread took each and whether it was closed."""

    def __init__(self, count: int, fail_after: int | None = None) -> None:
        self.count, self.fail_after = count, fail_after
        self.threads: set[int] = set()
        self.taken = 0
        self.closed = False

    def __iter__(self) -> Iterator[int]:
        try:
            for number in range(self.count):
                if number == self.fail_after:
                    raise MailboxError("the connection dropped")
                self.threads.add(threading.get_ident())
                self.taken += 1
                yield number
        finally:
            self.closed = True


def fetching_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "nextround-fetch"]


def test_every_item_arrives_in_order_taken_by_another_thread() -> None:
    source = Source(1000)
    assert list(fetched_ahead(iter(source))) == list(range(1000))
    assert source.threads and threading.get_ident() not in source.threads
    assert source.closed
    assert not fetching_threads()


def test_an_error_comes_after_the_items_before_it() -> None:
    source = Source(10, fail_after=3)
    got = []
    with pytest.raises(MailboxError, match="the connection dropped"):
        for item in fetched_ahead(iter(source)):
            got.append(item)
    assert got == [0, 1, 2]
    assert not fetching_threads()


def test_a_caller_that_stops_ends_the_thread_and_closes_the_source() -> None:
    source = Source(1000)
    ahead = fetched_ahead(iter(source))
    assert next(ahead) == 0
    ahead.close()
    # Nothing reads the connection once the caller stops: the thread is gone, the source is
    # closed, and at most one item beyond the queue's was taken (memory stays bounded).
    assert not fetching_threads()
    assert source.closed
    assert source.taken <= 3


def test_an_error_in_the_caller_ends_the_thread_too() -> None:
    source = Source(1000)

    def cycle() -> None:
        for item in fetched_ahead(iter(source)):
            if item == 5:
                raise OSError("the disk is full")

    with pytest.raises(OSError, match="the disk is full"):
        cycle()
    assert not fetching_threads()
    assert source.closed
    assert source.taken <= 8


def test_nothing_to_fetch() -> None:
    source = Source(0)
    assert list(fetched_ahead(iter(source))) == []
    assert source.closed
