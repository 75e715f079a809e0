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


def test_a_domain_guess_finds_the_recruiter_by_a_word_their_domain_adds(tmp_path: Path) -> None:
    """globexhq.com is Globex's; metabase.com is not Meta's (found in review, session 13: a
    request for a no-reply rejection from Meta went to a friend at Metabase)."""
    dana = Address("Dana Whitfield", "dana.whitfield@metabase.com")
    store = Store.open(tmp_path / "state.db")
    with store.transaction():
        store.remember_contact(SAM, domain_key(SAM), "<a@x>", NOW, guessed=True)
        store.remember_contact(dana, domain_key(dana), "<b@x>", NOW, guessed=True)
    assert domain_key(SAM) == "globexhq"
    assert store.earlier_contacts("globex", []) == [SAM]
    assert store.earlier_contacts("glo", []) == []
    assert store.earlier_contacts("initech", []) == []
    assert store.earlier_contacts("meta", []) == []
    assert store.earlier_contacts("metabase", []) == [dana]
    assert store.earlier_contacts("", []) == []


def test_domain_key_ignores_systems_and_free_mail() -> None:
    assert domain_key(Address("", "a@mail.brightloom.co.uk")) == "brightloom"
    assert domain_key(Address("", "a@brightloom.io")) == "brightloom"
    assert domain_key(Address("", "a@gmail.com")) == ""
    assert domain_key(Address("", "no-reply@us.greenhouse-mail.io")) == ""
