"""Which application a later rejection at the same company belongs to (`recent_for_company`):
one for the same role in the last 60 days; when either names no role, or the first ended
with no request sent, only one whose rejection came within days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nextround.daemon import applications as apps
from nextround.daemon.engine import ATTACH_WINDOW, NEAR_WINDOW
from nextround.daemon.lifecycle import State
from nextround.daemon.store import Store

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("first", "state", "sent", "role", "days", "joins"),
    [
        ("Data Engineer", State.REQUESTED, True, "Data Engineer", 30, True),
        ("Data Engineer", State.REQUESTED, True, "data engineer!", 30, True),
        ("Data Engineer", State.REQUESTED, True, "ML Engineer", 1, False),
        ("Data Engineer", State.REPLIED, True, None, 2, True),  # the recruiter's own note
        ("Data Engineer", State.REPLIED, True, None, 21, False),  # found in review, session 13
        (None, State.DRAFTED, False, "Data Engineer", 3, True),
        (None, State.DRAFTED, False, "Data Engineer", 10, False),
        # Its draft deleted, nothing sent: perhaps an acknowledgement read as a rejection.
        ("Data Engineer", State.SKIPPED, False, "Data Engineer", 30, False),
        ("Data Engineer", State.SKIPPED, False, "Data Engineer", 2, True),
        ("Data Engineer", State.SKIPPED, True, "Data Engineer", 30, True),  # skipped when asked
        ("Data Engineer", State.REQUESTED, True, "Data Engineer", 61, False),  # too long ago
    ],
)
def test_which_application_a_later_rejection_joins(
    tmp_path: Path,
    first: str | None,
    state: State,
    sent: bool,
    role: str | None,
    days: int,
    joins: bool,
) -> None:
    store = Store.open(tmp_path / "state.db")
    with store.transaction():
        number = apps.open_application(
            store, T0, state, company="Brightloom", company_key="brightloom", role=first,
            rejection_message_id="<first@brightloom.io>", rejection_at=T0,
        )  # fmt: skip
        if sent:
            apps.update(store, number, T0, request_sent_at=T0 + timedelta(hours=1))
    later = T0 + timedelta(days=days)
    found = apps.recent_for_company(
        store, "brightloom", role, later - ATTACH_WINDOW, later - NEAR_WINDOW
    )
    assert (found is not None and found.id == number) is joins
    assert apps.recent_for_company(store, "globex", role, later - ATTACH_WINDOW, later) is None
