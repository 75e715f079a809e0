"""Every lifecycle transition, as a table; and the time-based events derived from the clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from nextround.daemon.lifecycle import (
    OPEN_STATES,
    TRANSITIONS,
    Clock,
    Draft,
    Event,
    InvalidTransition,
    State,
    Timing,
    due_event,
    next_action,
    takes_late_reply,
    transition,
)

S, E, D = State, Event, Draft

TABLE = [
    (S.NEW, E.REQUEST_DRAFTED, S.DRAFTED, D.NOTHING),
    (S.NEW, E.REQUEST_DRAFTED_NO_CONTACT, S.NEEDS_CONTACT, D.NOTHING),
    (S.NEW, E.REQUEST_SENT, S.REQUESTED, D.NOTHING),  # answered by hand before we saw it
    (S.DRAFTED, E.REQUEST_SENT, S.REQUESTED, D.NOTHING),
    (S.NEEDS_CONTACT, E.REQUEST_SENT, S.REQUESTED, D.NOTHING),
    (S.STALE, E.REQUEST_SENT, S.REQUESTED, D.NOTHING),
    # A draft taken for deleted reaches Sent later (the engine checks the vanishing ended it).
    (S.SKIPPED, E.REQUEST_SENT, S.REQUESTED, D.NOTHING),
    (S.CLOSED, E.FOLLOW_UP_SENT, S.FOLLOWED_UP, D.NOTHING),
    (S.DRAFTED, E.REQUEST_DRAFT_GONE, S.SKIPPED, D.NOTHING),
    (S.NEEDS_CONTACT, E.REQUEST_DRAFT_GONE, S.SKIPPED, D.NOTHING),
    (S.STALE, E.REQUEST_DRAFT_GONE, S.SKIPPED, D.NOTHING),
    (S.DRAFTED, E.SEND_DEADLINE_PASSED, S.STALE, D.NOTHING),
    (S.NEEDS_CONTACT, E.SEND_DEADLINE_PASSED, S.STALE, D.NOTHING),
    (S.REQUESTED, E.FOLLOW_UP_DUE, S.FOLLOWED_UP, D.FOLLOW_UP),
    (S.REQUESTED, E.CLOSE_DUE, S.CLOSED, D.NOTHING),  # they give no feedback: no follow-up
    (S.REQUESTED, E.FOLLOW_UP_SENT, S.FOLLOWED_UP, D.NOTHING),
    (S.FOLLOWED_UP, E.FOLLOW_UP_SENT, S.FOLLOWED_UP, D.NOTHING),
    (S.FOLLOWED_UP, E.FOLLOW_UP_DRAFT_GONE, S.CLOSED, D.NOTHING),
    (S.FOLLOWED_UP, E.CLOSE_DUE, S.CLOSED, D.NOTHING),
    (S.REQUESTED, E.REPLY_RECEIVED, S.REPLIED, D.THANK_YOU),
    (S.FOLLOWED_UP, E.REPLY_RECEIVED, S.REPLIED, D.THANK_YOU),
    (S.SKIPPED, E.LATE_REPLY, S.REPLIED, D.THANK_YOU),  # the "deleted" draft was sent
    (S.CLOSED, E.LATE_REPLY, S.REPLIED, D.THANK_YOU),  # they answered after close_after
    # The user ends for good what nextround ended (commands check takes_late_reply first).
    (S.SKIPPED, E.USER_SKIPPED, S.SKIPPED, D.NOTHING),
    (S.SKIPPED, E.USER_CLOSED, S.CLOSED, D.NOTHING),
    (S.CLOSED, E.USER_SKIPPED, S.SKIPPED, D.NOTHING),
    (S.CLOSED, E.USER_CLOSED, S.CLOSED, D.NOTHING),
    *[(state, E.USER_SKIPPED, S.SKIPPED, D.NOTHING) for state in sorted(OPEN_STATES)],
    *[(state, E.USER_CLOSED, S.CLOSED, D.NOTHING) for state in sorted(OPEN_STATES)],
]


@pytest.mark.parametrize(("state", "event", "after", "draft"), TABLE)
def test_transition(state: State, event: Event, after: State, draft: Draft) -> None:
    assert transition(state, event) == (after, draft)


def test_the_table_is_the_whole_machine() -> None:
    assert {(state, event) for state, event, _, _ in TABLE} == set(TRANSITIONS)


@pytest.mark.parametrize("state", [S.REPLIED, S.CLOSED, S.SKIPPED])
@pytest.mark.parametrize("event", list(Event))
def test_terminal_states_accept_nothing_but_a_late_reply_or_copy_or_the_users_end(
    state: State, event: Event
) -> None:
    if state is not S.REPLIED and event in (E.LATE_REPLY, E.USER_SKIPPED, E.USER_CLOSED):
        assert transition(state, event)[0] in (S.REPLIED, S.SKIPPED, S.CLOSED)
        return
    if (state, event) in ((S.SKIPPED, E.REQUEST_SENT), (S.CLOSED, E.FOLLOW_UP_SENT)):
        assert transition(state, event)[0] in (S.REQUESTED, S.FOLLOWED_UP)
        return
    with pytest.raises(InvalidTransition):
        transition(state, event)


@pytest.mark.parametrize(
    ("state", "last_event", "takes"),
    [
        (S.SKIPPED, E.REQUEST_DRAFT_GONE, True),  # the client kept no sent copy
        (S.CLOSED, E.FOLLOW_UP_DRAFT_GONE, True),
        (S.CLOSED, E.CLOSE_DUE, True),  # nobody answered within close_after
        (S.SKIPPED, E.USER_SKIPPED, False),  # what the user ended stays ended
        (S.CLOSED, E.USER_CLOSED, False),
        (S.SKIPPED, None, False),  # opened skipped (too late to ask): nothing was sent
        (S.REPLIED, E.REPLY_RECEIVED, False),  # thanked once
        (S.REQUESTED, E.REQUEST_SENT, False),  # open: an ordinary reply
    ],
)
def test_which_ended_applications_take_a_late_reply(
    state: State, last_event: Event | None, takes: bool
) -> None:
    assert takes_late_reply(state, last_event.value if last_event else None) is takes


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.DRAFTED, E.REPLY_RECEIVED),  # nothing was asked yet
        (S.REQUESTED, E.REQUEST_SENT),  # sent twice
        (S.DRAFTED, E.FOLLOW_UP_DUE),
        (S.STALE, E.FOLLOW_UP_DUE),  # never sent: never followed up
        (S.DRAFTED, E.CLOSE_DUE),
    ],
)
def test_events_that_do_not_apply(state: State, event: Event) -> None:
    with pytest.raises(InvalidTransition):
        transition(state, event)


T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TIMING = Timing(timedelta(days=7), timedelta(days=7), timedelta(days=3))


def clock(**moments: datetime) -> Clock:
    return Clock(
        request_drafted_at=moments.get("request_drafted_at"),
        request_sent_at=moments.get("request_sent_at"),
        follow_up_drafted_at=moments.get("follow_up_drafted_at"),
        follow_up_sent_at=moments.get("follow_up_sent_at"),
    )


@pytest.mark.parametrize(
    ("state", "moments", "now", "expected"),
    [
        (S.DRAFTED, {"request_drafted_at": T0}, T0 + timedelta(days=2), None),
        (S.DRAFTED, {"request_drafted_at": T0}, T0 + timedelta(days=3), E.SEND_DEADLINE_PASSED),
        (
            S.NEEDS_CONTACT,
            {"request_drafted_at": T0},
            T0 + timedelta(days=4),
            E.SEND_DEADLINE_PASSED,
        ),
        (S.REQUESTED, {"request_sent_at": T0}, T0 + timedelta(days=6, hours=23), None),
        (S.REQUESTED, {"request_sent_at": T0}, T0 + timedelta(days=7), E.FOLLOW_UP_DUE),
        # Fell due while the daemon was down: still due at the next cycle, weeks later.
        (S.REQUESTED, {"request_sent_at": T0}, T0 + timedelta(days=40), E.FOLLOW_UP_DUE),
        (S.FOLLOWED_UP, {"follow_up_drafted_at": T0}, T0 + timedelta(days=7), E.CLOSE_DUE),
        (
            S.FOLLOWED_UP,
            {"follow_up_drafted_at": T0, "follow_up_sent_at": T0 + timedelta(days=2)},
            T0 + timedelta(days=8),
            None,
        ),
        (S.STALE, {"request_drafted_at": T0}, T0 + timedelta(days=30), None),
        (S.REPLIED, {"request_sent_at": T0}, T0 + timedelta(days=30), None),
    ],
)
def test_due_events(
    state: State, moments: dict[str, datetime], now: datetime, expected: Event | None
) -> None:
    assert due_event(state, clock(**moments), TIMING, now) is expected


def test_next_action_for_status() -> None:
    action, when = next_action(S.REQUESTED, clock(request_sent_at=T0), TIMING)
    assert action == "draft a follow-up if no reply"
    assert when == T0 + timedelta(days=7)
    assert next_action(S.CLOSED, clock(), TIMING) == ("none", None)


def test_no_follow_up_after_a_mail_that_said_it_gives_no_feedback() -> None:
    """The request told them no reply is needed: no follow-up, but as long to answer as with
    one (follow_up_after + close_after), so a late answer is still thanked."""
    quiet = dataclasses.replace(clock(request_sent_at=T0), follow_up=False)
    assert due_event(S.REQUESTED, quiet, TIMING, T0 + timedelta(days=13)) is None
    assert due_event(S.REQUESTED, quiet, TIMING, T0 + timedelta(days=14)) is E.CLOSE_DUE
    action, when = next_action(S.REQUESTED, quiet, TIMING)
    assert action.startswith("close if no reply") and when == T0 + timedelta(days=14)
