"""Applications in the state store: reading, opening, and moving them between states.

State changes go through `apply_event`, which asks `lifecycle.transition` and writes the
history row in the same transaction as the change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from nextround.daemon.lifecycle import (
    LATE_STATES,
    Clock,
    Draft,
    Event,
    State,
    takes_late_reply,
    transition,
)
from nextround.daemon.store import Store, storage_errors


@dataclass(frozen=True)
class Application:
    id: int
    state: State
    company: str | None
    company_key: str
    role: str | None
    stage: str | None
    contact_email: str | None
    contact_name: str
    no_feedback: bool
    rejection_message_id: str
    rejection_subject: str
    rejection_references: tuple[str, ...]
    rejection_at: datetime | None
    thread: tuple[str, ...]
    opened_at: datetime
    updated_at: datetime
    request_draft_message_id: str | None
    request_drafted_at: datetime | None
    request_subject: str | None
    request_sent_message_id: str | None
    request_sent_at: datetime | None
    follow_up_draft_message_id: str | None
    follow_up_drafted_at: datetime | None
    follow_up_sent_message_id: str | None
    follow_up_sent_at: datetime | None
    reply_message_id: str | None
    reply_at: datetime | None
    reply_from: str | None
    reply_subject: str | None
    reply_references: tuple[str, ...]
    thank_you_draft_message_id: str | None
    thank_you_drafted_at: datetime | None
    draft_missing_since: datetime | None
    note: str
    pending_step: str | None
    pending_message_id: str | None
    pending_drafts_uidnext: int | None

    @property
    def clock(self) -> Clock:
        return Clock(
            request_drafted_at=self.request_drafted_at,
            request_sent_at=self.request_sent_at,
            follow_up_drafted_at=self.follow_up_drafted_at,
            follow_up_sent_at=self.follow_up_sent_at,
            follow_up=not self.no_feedback,
        )

    @property
    def known_ids(self) -> frozenset[str]:
        """Every Message-ID that belongs to this application's conversation."""
        ids = {self.rejection_message_id, *self.thread}
        for value in (
            self.request_draft_message_id,
            self.request_sent_message_id,
            self.follow_up_draft_message_id,
            self.follow_up_sent_message_id,
        ):
            if value:
                ids.add(value)
        return frozenset(ids)

    @property
    def sent_ids(self) -> frozenset[str]:
        """Message-IDs a reply to the user's request or follow-up would reference."""
        return frozenset(
            value
            for value in (
                self.request_sent_message_id,
                self.request_draft_message_id,
                self.follow_up_sent_message_id,
                self.follow_up_draft_message_id,
            )
            if value
        )


_DATES = {
    field.name
    for field in fields(Application)
    if field.name.endswith("_at") or field.name == "draft_missing_since"
}
_COLUMNS = [field.name for field in fields(Application)]


def _from_row(row: Sequence[Any]) -> Application:
    values: dict[str, Any] = dict(zip(_COLUMNS, row, strict=True))
    for name in _DATES:
        values[name] = datetime.fromisoformat(values[name]) if values[name] else None
    values["state"] = State(values["state"])
    values["no_feedback"] = bool(values["no_feedback"])
    values["thread"] = tuple(json.loads(values["thread"] or "[]"))
    for name in ("rejection_references", "reply_references"):
        values[name] = tuple((values[name] or "").split())
    return Application(**values)


def _select(store: Store, where: str, args: Iterable[Any] = ()) -> list[Application]:
    query = f"SELECT {', '.join(_COLUMNS)} FROM applications {where}"  # noqa: S608 - fixed text
    with storage_errors("reading applications"):
        rows = store.connection.execute(query, tuple(args)).fetchall()
    return [_from_row(row) for row in rows]


def get(store: Store, application_id: int) -> Application | None:
    found = _select(store, "WHERE id = ?", (application_id,))
    return found[0] if found else None


def all_applications(store: Store) -> list[Application]:
    return _select(store, "ORDER BY opened_at, id")


def in_states(store: Store, states: Iterable[State]) -> list[Application]:
    wanted = json.dumps([state.value for state in states])
    return _select(store, "WHERE state IN (SELECT value FROM json_each(?)) ORDER BY id", (wanted,))


def by_thread(store: Store, message_ids: Iterable[str]) -> list[Application]:
    """Applications whose conversation includes any of these Message-IDs."""
    wanted = set(message_ids)
    if not wanted:
        return []
    return [app for app in all_applications(store) if app.known_ids & wanted]


def recent_for_company(
    store: Store, company_key: str, role: str | None, since: datetime, near: datetime
) -> Application | None:
    """The application a rejection at this company belongs to, if any: one for the same
    role (or either names none), opened since `since`, that still waits for an answer, was
    ended by the user's own word, or names the same role with a request sent. Any other
    only if its rejection came since `near`: the ATS's notice and the recruiter's own note
    on one decision come days apart, while weeks later a rejection naming no role after a
    finished exchange may be for another role, and one after mail that only looked like a
    rejection (an invitation, its draft deleted or never sent) is the real one."""
    if not company_key:
        return None
    candidates = _select(
        store,
        "WHERE company_key = ? AND opened_at >= ? ORDER BY opened_at DESC",
        (company_key, since.isoformat()),
    )
    for app in candidates:
        if not same_role(role, app.role):
            continue
        if (
            app.state in (State.REQUESTED, State.FOLLOWED_UP)
            or (bool(role and app.role) and app.request_sent_at is not None)
            or (app.rejection_at or app.opened_at) >= near
            # Last: a query, where the rest reads what is in hand.
            or (app.state in LATE_STATES and _last_event(store, app) in USER_ENDS)
        ):
            return app
    return None


def same_role(first: str | None, second: str | None) -> bool:
    """Whether two roles may be the same: equal but for case and punctuation, or either
    unknown."""
    if not first or not second:
        return True

    def simple(text: str) -> str:
        return " ".join("".join(ch for ch in text.lower() if ch.isalnum() or ch == " ").split())

    return simple(first) == simple(second)


def open_application(store: Store, now: datetime, state: State, **values: Any) -> int:
    values = {**values, "state": state.value, "opened_at": now.isoformat()}
    values["updated_at"] = values["opened_at"]
    names = list(values)
    marks = ", ".join("?" for _ in names)
    query = f"INSERT INTO applications ({', '.join(names)}) VALUES ({marks})"  # noqa: S608
    with storage_errors("opening an application"):
        cursor = store.connection.execute(query, [_db(values[name]) for name in names])
    application_id = int(cursor.lastrowid or 0)
    log(store, application_id, now, "opened", None, state, values.get("note", ""))
    return application_id


def update(store: Store, application_id: int, now: datetime, **values: Any) -> None:
    values["updated_at"] = now
    assignments = ", ".join(f"{name} = ?" for name in values)
    query = f"UPDATE applications SET {assignments} WHERE id = ?"  # noqa: S608 - column names
    with storage_errors("updating an application"):
        store.connection.execute(
            query, [*(_db(value) for value in values.values()), application_id]
        )


def apply_event(
    store: Store, app: Application, event: Event, now: datetime, detail: str = "", **values: Any
) -> tuple[State, Draft]:
    """Move `app` by `event` (raises InvalidTransition), storing `values` with the change."""
    new_state, draft = transition(app.state, event)
    update(store, app.id, now, state=new_state, **values)
    log(store, app.id, now, event.value, app.state, new_state, detail)
    return new_state, draft


def log(
    store: Store,
    application_id: int,
    now: datetime,
    event: str,
    from_state: State | None,
    to_state: State,
    detail: str = "",
) -> None:
    with storage_errors("recording history"):
        store.connection.execute(
            "INSERT INTO application_events "
            "(application_id, at, event, from_state, to_state, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (
                application_id,
                now.isoformat(),
                event,
                from_state.value if from_state else None,
                to_state.value,
                detail,
            ),
        )


def history(store: Store, application_id: int) -> list[tuple[str, str, str | None, str, str]]:
    with storage_errors("reading history"):
        rows = store.connection.execute(
            "SELECT at, event, from_state, to_state, detail FROM application_events "
            "WHERE application_id = ? ORDER BY id",
            (application_id,),
        ).fetchall()
    return [tuple(row) for row in rows]


def ended_by_daemon(store: Store, app: Application) -> bool:
    """Whether nextround, not the user, ended `app` (its last event: `takes_late_reply`):
    a late reply may still reopen it, and the user may still end it for good."""
    if app.state not in LATE_STATES:
        return False  # open, replied, or never begun: no history to read
    return takes_late_reply(app.state, _last_event(store, app))


def vanished_step(store: Store, app: Application) -> str | None:
    """The draft ("request", "follow_up") whose leaving Drafts with no copy in Sent ended
    `app`, if that is how it ended: a copy may still come (a scheduled send, an outbox)."""
    if app.state not in LATE_STATES:
        return None
    return _VANISHED.get(_last_event(store, app) or "")


_VANISHED = {Event.REQUEST_DRAFT_GONE: "request", Event.FOLLOW_UP_DRAFT_GONE: "follow_up"}


# The user's own word (`skip`, `close`). An application opened ended (a closed position, a
# stage not asked about, a rejection seen too late) has no such event.
USER_ENDS = (Event.USER_SKIPPED, Event.USER_CLOSED)


def _last_event(store: Store, app: Application) -> str | None:
    with storage_errors("reading history"):
        row = store.connection.execute(
            "SELECT event FROM application_events WHERE application_id = ? "
            "ORDER BY id DESC LIMIT 1",
            (app.id,),
        ).fetchone()
    return row[0] if row else None


def add_to_thread(
    store: Store, app: Application, message_ids: Iterable[str], now: datetime
) -> None:
    merged = list(dict.fromkeys([*app.thread, *message_ids]))
    update(store, app.id, now, thread=json.dumps(merged[-200:]))


def _db(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, State):
        return value.value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, tuple | list):
        return " ".join(value)
    return value
