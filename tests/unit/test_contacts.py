"""The people nextround remembers, and finding the recruiter for a later rejection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from nextround.classifier.extract import domain_key
from nextround.classifier.message import Address
from nextround.daemon.store import Store

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SAM = Address("Sam Lee", "sam.lee@globexhq.com")


def test_a_company_read_from_the_text_is_not_replaced_by_a_domain_guess(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    with store.transaction():
        store.remember_contact(SAM, "globex", "<a@x>", NOW)
        store.remember_contact(SAM, domain_key(SAM), "<b@x>", NOW + timedelta(days=1), guessed=True)
    assert store.earlier_contacts("globex", []) == [SAM]


def test_a_domain_guess_still_finds_the_recruiter_by_prefix(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    with store.transaction():
        store.remember_contact(SAM, domain_key(SAM), "<a@x>", NOW, guessed=True)
    assert domain_key(SAM) == "globexhq"
    assert store.earlier_contacts("globex", []) == [SAM]
    assert store.earlier_contacts("glo", []) == []  # too short to match by prefix
    assert store.earlier_contacts("initech", []) == []


def test_domain_key_ignores_systems_and_free_mail() -> None:
    assert domain_key(Address("", "a@mail.brightloom.co.uk")) == "brightloom"
    assert domain_key(Address("", "a@brightloom.io")) == "brightloom"
    assert domain_key(Address("", "a@gmail.com")) == ""
    assert domain_key(Address("", "no-reply@us.greenhouse-mail.io")) == ""
