"""The application lifecycle: every state, every transition, in this one place.

new -> drafted | needs_contact           the feedback request is in Drafts
new -> requested                         the user had asked already, by hand
drafted | needs_contact -> requested     the user sent it (a sent copy was seen)
drafted | needs_contact -> skipped       the draft vanished and nothing was sent
drafted | needs_contact -> stale         not sent within [lifecycle] send_within
stale -> requested                       sent after all
skipped -> requested                     a copy of a draft that vanished reaches Sent later
                                         (a scheduled send, an outbox)
closed -> followed_up                    the same for the follow-up
requested -> followed_up                 no reply after [lifecycle] follow_up_after; or the
                                         user followed up by hand (none is drafted)
requested -> closed                      no reply after follow_up_after + close_after, when
                                         the mail said it gives no feedback (no follow-up)
requested | followed_up -> replied       a reply arrived (one thank-you is drafted)
followed_up -> closed                    no reply [lifecycle] close_after after the follow-up
any open state -> skipped | closed       the user said so (`nextround skip` / `close`); so
                                         may an application nextround ended (ENDED_BY_DAEMON),
                                         which then takes no late reply

`new` is internal: an application whose first draft has not been written yet (it lasts from
the moment the rejection is recorded to the end of the same cycle, or until a crash is
recovered). Time is always an argument: nothing here reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class State(StrEnum):
    NEW = "new"
    DRAFTED = "drafted"
    NEEDS_CONTACT = "needs_contact"
    REQUESTED = "requested"
    FOLLOWED_UP = "followed_up"
    REPLIED = "replied"
    CLOSED = "closed"
    SKIPPED = "skipped"
    STALE = "stale"


class Event(StrEnum):
    REQUEST_DRAFTED = "request_drafted"
    REQUEST_DRAFTED_NO_CONTACT = "request_drafted_no_contact"
    REQUEST_SENT = "request_sent"
    REQUEST_DRAFT_GONE = "request_draft_gone"
    SEND_DEADLINE_PASSED = "send_deadline_passed"
    FOLLOW_UP_DUE = "follow_up_due"
    FOLLOW_UP_SENT = "follow_up_sent"
    FOLLOW_UP_DRAFT_GONE = "follow_up_draft_gone"
    REPLY_RECEIVED = "reply_received"
    LATE_REPLY = "late_reply"
    CLOSE_DUE = "close_due"
    USER_SKIPPED = "user_skipped"
    USER_CLOSED = "user_closed"


class Draft(StrEnum):
    """What a transition asks to be drafted."""

    NOTHING = "nothing"
    FOLLOW_UP = "follow_up"
    THANK_YOU = "thank_you"


OPEN_STATES = frozenset(
    {
        State.NEW,
        State.DRAFTED,
        State.NEEDS_CONTACT,
        State.REQUESTED,
        State.FOLLOWED_UP,
        State.STALE,
    }
)
TERMINAL_STATES = frozenset({State.REPLIED, State.CLOSED, State.SKIPPED})
AWAITING_SEND = frozenset({State.DRAFTED, State.NEEDS_CONTACT, State.STALE})
LATE_STATES = (State.SKIPPED, State.CLOSED)  # ended, and may still take a late reply

TRANSITIONS: dict[tuple[State, Event], tuple[State, Draft]] = {
    (State.NEW, Event.REQUEST_DRAFTED): (State.DRAFTED, Draft.NOTHING),
    (State.NEW, Event.REQUEST_DRAFTED_NO_CONTACT): (State.NEEDS_CONTACT, Draft.NOTHING),
    (State.NEW, Event.REQUEST_SENT): (State.REQUESTED, Draft.NOTHING),
    (State.DRAFTED, Event.REQUEST_SENT): (State.REQUESTED, Draft.NOTHING),
    (State.NEEDS_CONTACT, Event.REQUEST_SENT): (State.REQUESTED, Draft.NOTHING),
    (State.STALE, Event.REQUEST_SENT): (State.REQUESTED, Draft.NOTHING),
    # A copy of a draft taken for deleted, sent later after all (the engine checks that the
    # draft's vanishing is what ended it).
    (State.SKIPPED, Event.REQUEST_SENT): (State.REQUESTED, Draft.NOTHING),
    (State.CLOSED, Event.FOLLOW_UP_SENT): (State.FOLLOWED_UP, Draft.NOTHING),
    (State.DRAFTED, Event.REQUEST_DRAFT_GONE): (State.SKIPPED, Draft.NOTHING),
    (State.NEEDS_CONTACT, Event.REQUEST_DRAFT_GONE): (State.SKIPPED, Draft.NOTHING),
    (State.STALE, Event.REQUEST_DRAFT_GONE): (State.SKIPPED, Draft.NOTHING),
    (State.DRAFTED, Event.SEND_DEADLINE_PASSED): (State.STALE, Draft.NOTHING),
    (State.NEEDS_CONTACT, Event.SEND_DEADLINE_PASSED): (State.STALE, Draft.NOTHING),
    (State.REQUESTED, Event.FOLLOW_UP_DUE): (State.FOLLOWED_UP, Draft.FOLLOW_UP),
    (State.REQUESTED, Event.CLOSE_DUE): (State.CLOSED, Draft.NOTHING),
    (State.REQUESTED, Event.FOLLOW_UP_SENT): (State.FOLLOWED_UP, Draft.NOTHING),
    (State.FOLLOWED_UP, Event.FOLLOW_UP_SENT): (State.FOLLOWED_UP, Draft.NOTHING),
    (State.FOLLOWED_UP, Event.FOLLOW_UP_DRAFT_GONE): (State.CLOSED, Draft.NOTHING),
    (State.FOLLOWED_UP, Event.CLOSE_DUE): (State.CLOSED, Draft.NOTHING),
    (State.REQUESTED, Event.REPLY_RECEIVED): (State.REPLIED, Draft.THANK_YOU),
    (State.FOLLOWED_UP, Event.REPLY_RECEIVED): (State.REPLIED, Draft.THANK_YOU),
    **{(state, Event.LATE_REPLY): (State.REPLIED, Draft.THANK_YOU) for state in LATE_STATES},
    **{(state, Event.USER_SKIPPED): (State.SKIPPED, Draft.NOTHING) for state in OPEN_STATES},
    **{(state, Event.USER_CLOSED): (State.CLOSED, Draft.NOTHING) for state in OPEN_STATES},
    # Only when nextround ended it (`takes_late_reply`): the user's word then stands.
    **{(state, Event.USER_SKIPPED): (State.SKIPPED, Draft.NOTHING) for state in LATE_STATES},
    **{(state, Event.USER_CLOSED): (State.CLOSED, Draft.NOTHING) for state in LATE_STATES},
}


# How nextround itself ends an application, on what it infers: a draft gone from Drafts with no
# sent copy (the client may keep none), no reply within close_after (they may answer later).
# A reply that names our draft or the sent copy proves the first wrong and answers the
# second: it is thanked (LATE_REPLY). What the user ended (`skip`, `close`) stays ended.
ENDED_BY_DAEMON = frozenset({Event.REQUEST_DRAFT_GONE, Event.FOLLOW_UP_DRAFT_GONE, Event.CLOSE_DUE})


def takes_late_reply(state: State, last_event: str | None) -> bool:
    """Whether an ended application still takes a reply (LATE_REPLY), or the user's own end
    (`skip`, `close`), given its last event."""
    return state in LATE_STATES and last_event in ENDED_BY_DAEMON


class InvalidTransition(ValueError):
    """The event does not apply in this state (a bug, or a stale command from the user)."""


def transition(state: State, event: Event) -> tuple[State, Draft]:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(
            f"{event.value} does not apply to a {state.value} application"
        ) from None


@dataclass(frozen=True)
class Timing:
    follow_up_after: timedelta
    close_after: timedelta
    send_within: timedelta


@dataclass(frozen=True)
class Clock:
    """The moments a time-based event is measured from (None: not happened)."""

    request_drafted_at: datetime | None
    request_sent_at: datetime | None
    follow_up_drafted_at: datetime | None
    follow_up_sent_at: datetime | None
    # False when the rejection said it gives no individual feedback: the request then told
    # them no reply is needed, and a follow-up would press for one anyway.
    follow_up: bool = True


def due_event(state: State, clock: Clock, timing: Timing, now: datetime) -> Event | None:
    """The time-based event that has fallen due, if any: derived afresh at every cycle, so
    what fell due while the daemon was down happens at the next start."""
    due = next_due(state, clock, timing)
    if due is None or now < due[1]:
        return None
    return due[0]


def next_due(state: State, clock: Clock, timing: Timing) -> tuple[Event, datetime] | None:
    if state in (State.DRAFTED, State.NEEDS_CONTACT) and clock.request_drafted_at:
        return Event.SEND_DEADLINE_PASSED, clock.request_drafted_at + timing.send_within
    if state is State.REQUESTED and clock.request_sent_at:
        if clock.follow_up:
            return Event.FOLLOW_UP_DUE, clock.request_sent_at + timing.follow_up_after
        # No follow-up, but as long to answer as with one: a late reply is still thanked.
        return Event.CLOSE_DUE, clock.request_sent_at + timing.follow_up_after + timing.close_after
    if state is State.FOLLOWED_UP:
        start = clock.follow_up_sent_at or clock.follow_up_drafted_at
        if start:
            return Event.CLOSE_DUE, start + timing.close_after
    return None


NEXT_ACTION = {
    State.NEW: "draft the feedback request",
    State.DRAFTED: "you: review and send the draft",
    State.NEEDS_CONTACT: "you: add a recipient to the draft and send it",
    State.REQUESTED: "draft a follow-up if no reply",
    State.FOLLOWED_UP: "close if no reply",
    State.STALE: "none (not sent in time)",
    State.REPLIED: "none",
    State.CLOSED: "none",
    State.SKIPPED: "none",
}


def next_action(state: State, clock: Clock, timing: Timing) -> tuple[str, datetime | None]:
    """For `status`: what happens next and when (None: waits for the user or nothing)."""
    due = next_due(state, clock, timing)
    action = NEXT_ACTION[state]
    if state is State.REQUESTED and not clock.follow_up:
        action = "close if no reply (no follow-up: they give no feedback)"
    return action, due[1] if due else None
