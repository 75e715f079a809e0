"""Which application a later rejection at the same company belongs to (`recent_for_company`):
one for the same role (or either names none) in the last 60 days that still waits for an
answer, was ended by the user, or names the role with a request sent; any other only if
the two rejections came within days (found in review, session 13)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nextround.daemon import applications as apps
from nextround.daemon.engine import ATTACH_WINDOW, NEAR_WINDOW
from nextround.daemon.lifecycle import Event, State
from nextround.daemon.store import Store

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
E = Event
SENT = (E.REQUEST_DRAFTED, E.REQUEST_SENT)


@pytest.mark.parametrize(
    ("first", "events", "role", "days", "joins"),
    [
        ("Data Engineer", SENT, "Data Engineer", 30, True),
        ("Data Engineer", SENT, "data engineer!", 30, True),
        ("Data Engineer", SENT, "ML Engineer", 1, False),
        ("Data Engineer", SENT, None, 10, True),  # awaiting an answer: the ATS's formal notice
        ("Data Engineer", (*SENT, E.REPLY_RECEIVED), None, 2, True),  # the recruiter's own note
        ("Data Engineer", (*SENT, E.REPLY_RECEIVED), None, 21, False),  # after it: another role
        ("Data Engineer", (*SENT, E.REPLY_RECEIVED), "Data Engineer", 21, True),
        (None, (E.REQUEST_DRAFTED,), "Data Engineer", 3, True),
        (None, (E.REQUEST_DRAFTED,), "Data Engineer", 10, False),
        # Never sent: perhaps an invitation read as a rejection, its draft deleted or ignored.
        ("Data Engineer", (E.REQUEST_DRAFTED, E.REQUEST_DRAFT_GONE), "Data Engineer", 30, False),
        ("Data Engineer", (E.REQUEST_DRAFTED, E.REQUEST_DRAFT_GONE), "Data Engineer", 2, True),
        ("Data Engineer", (E.REQUEST_DRAFTED, E.SEND_DEADLINE_PASSED), "Data Engineer", 14, False),
        # The user's own word stands: what they skipped stays skipped.
        ("Data Engineer", (E.REQUEST_DRAFTED, E.USER_SKIPPED), "Data Engineer", 30, True),
        ("Data Engineer", SENT, "Data Engineer", 61, False),  # too long ago
    ],
)
def test_which_application_a_later_rejection_joins(
    tmp_path: Path,
    first: str | None,
    events: tuple[Event, ...],
    role: str | None,
    days: int,
    joins: bool,
) -> None:
    store = Store.open(tmp_path / "state.db")
    with store.transaction():
        number = apps.open_application(
            store, T0, State.NEW, company="Brightloom", company_key="brightloom", role=first,
            rejection_message_id="<first@brightloom.io>", rejection_at=T0,
        )  # fmt: skip
        for event in events:
            app = apps.get(store, number)
            assert app is not None
            sent = {"request_sent_at": T0} if event is E.REQUEST_SENT else {}
            apps.apply_event(store, app, event, T0, "", **sent)
    later = T0 + timedelta(days=days)
    found = apps.recent_for_company(
        store, "brightloom", role, later - ATTACH_WINDOW, later - NEAR_WINDOW
    )
    assert (found is not None and found.id == number) is joins
    assert apps.recent_for_company(store, "globex", role, later - ATTACH_WINDOW, later) is None


@pytest.mark.parametrize("state", [State.CLOSED, State.SKIPPED])
def test_an_application_opened_ended_is_no_users_word(tmp_path: Path, state: State) -> None:
    """Opened ended (a closed position, a stage not asked about, a rejection seen too late):
    nothing the user said, so a rejection weeks later is one of its own (found in the third
    review round, session 13)."""
    store = Store.open(tmp_path / "state.db")
    with store.transaction():
        apps.open_application(
            store, T0, state, company="Brightloom", company_key="brightloom",
            role="Data Engineer", rejection_message_id="<first@brightloom.io>", rejection_at=T0,
        )  # fmt: skip
    later = T0 + timedelta(days=21)
    assert apps.recent_for_company(store, "brightloom", None, later - ATTACH_WINDOW, later) is None
